#!/usr/bin/env python3
"""linwork.py: a workload that records a history for the linearizability
checker (tests/tools/linearize.py).

    linwork.py setup MNT OUT STATE...
        creates the states (mkdir) and writes the history's "init" line to
        OUT: every state at version 0 with an empty page
    linwork.py run MNT OUT --proc N [--host H] [--seconds S] [--stop FILE]
                   [--pause MS] STATE...
        process N: for S seconds (or until FILE exists) random operations
        on the states, one JSON line each in OUT (linearize.py's format),
        invocation and completion times from time.monotonic_ns():
          read   version, data, version again: the page, and its version
                 when the two reads of version agree
          cas    a transaction file (open O_RDWR|O_CREAT: a copy of data),
                 its content read (a read of the base too), a new page
                 written, mv T data: ok, or fail on EAGAIN
          write  echo NEW > data: open O_WRONLY|O_TRUNC, write, close
          txn    mkdir .txn/T, read two states (a pair: 1st and 2nd, 3rd and
                 4th, ...), write both or one, mv .txn/T .commit/: ok, or
                 fail on EAGAIN
        Every page written is unique ("pN.COUNT..."), so a read names its
        writer.  An error before the commit step means the operation did
        nothing (it is counted, not recorded); at the commit step EAGAIN is
        "fail" and any other error "unknown" (the daemon may have applied
        it: it was killed, or etcd timed out).  Errors that mean the mount
        is gone (the daemon killed, not yet remounted) make the process
        wait 20 ms and go on, so it rides through a remount.
        Prints "done p=N ops=... ok=... fail=... unknown=... aborted=...
        errors=ERRNO:COUNT,..." at the end.
"""
import errno
import json
import os
import random
import shutil
import sys
import time

now = time.monotonic_ns

# the daemon killed (ENOTCONN...), or the mount point bare before the
# remount (ENOENT)
GONE = (errno.ENOTCONN, errno.ECONNABORTED, errno.ENODEV, errno.ENOENT)


class Aborted(Exception):
    """An error before the commit step: the operation did nothing."""

    def __init__(self, err):
        super().__init__(err)
        self.errno = err


def read_all(fd):
    out = b""
    off = 0
    while True:
        b = os.pread(fd, 65536, off)
        if not b:
            return out
        out += b
        off += len(b)


def read_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_all(fd)
    finally:
        os.close(fd)


def step(fn, *args):
    """A step before the commit: any OSError aborts the operation."""
    try:
        return fn(*args)
    except OSError as e:
        raise Aborted(e.errno)


class Worker:
    def __init__(self, mnt, out, proc, host, states, rng):
        self.mnt = mnt
        self.out = out
        self.proc = proc
        self.host = host
        self.states = states
        self.pairs = [(states[i], states[i + 1])
                      for i in range(0, len(states) - 1, 2)]
        self.rng = rng
        self.n = 0
        self.counts = {}
        self.errors = {}

    def page(self):
        self.n += 1
        return "p%d.%d" % (self.proc, self.n)

    def record(self, d):
        d["p"] = self.proc
        d["host"] = self.host
        self.out.write(json.dumps(d, separators=(",", ":")) + "\n")
        self.out.flush()
        if d["op"] != "read" or "base" not in d:
            k = (d["op"], d["res"])
            self.counts[k] = self.counts.get(k, 0) + 1

    def error(self, e):
        name = errno.errorcode.get(e, str(e))
        self.errors[name] = self.errors.get(name, 0) + 1

    def commit_result(self, e):
        if e is None:
            return "ok"
        self.error(e.errno)
        return "fail" if e.errno == errno.EAGAIN else "unknown"

    # --- the operations ---------------------------------------------------

    def op_read(self, s):
        d = os.path.join(self.mnt, s)
        t0 = now()
        v1 = step(read_path, d + "/version")
        val = step(read_path, d + "/data")
        v2 = step(read_path, d + "/version")
        t1 = now()
        ver = int(v1) if v1 == v2 and v1.strip().isdigit() else None
        self.record({"op": "read", "key": s, "val": val.decode(),
                     "ver": ver, "t0": t0, "t1": t1, "res": "ok"})

    def op_cas(self, s):
        t = os.path.join(self.mnt, s, "lw.%d.%d" % (self.proc, self.n))
        new = self.page()
        t0 = now()
        try:
            fd = step(os.open, t, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                old = step(read_all, fd).decode()
                tb = now()
                step(os.ftruncate, fd, 0)
                step(os.pwrite, fd, new.encode(), 0)
            finally:
                try:
                    os.close(fd)
                except OSError:
                    pass
        except Aborted:
            self.cleanup_file(t)
            raise
        self.record({"op": "read", "key": s, "val": old, "ver": None,
                     "t0": t0, "t1": tb, "res": "ok", "base": 1})
        err = None
        try:
            os.rename(t, os.path.join(self.mnt, s, "data"))
        except OSError as e:
            err = e
        t1 = now()
        res = self.commit_result(err)
        self.record({"op": "cas", "key": s, "old": old, "new": new,
                     "t0": t0, "t1": None if res == "unknown" else t1,
                     "res": res})
        if err is not None:
            self.cleanup_file(t)

    def op_write(self, s):
        new = self.page()
        t0 = now()
        fd = step(os.open, os.path.join(self.mnt, s, "data"),
                  os.O_WRONLY | os.O_TRUNC)
        err = None
        try:
            os.write(fd, new.encode())
        except OSError as e:
            err = e
        try:
            os.close(fd)
        except OSError as e:
            err = err or e
        t1 = now()
        res = self.commit_result(err)
        self.record({"op": "write", "key": s, "new": new, "t0": t0,
                     "t1": None if res == "unknown" else t1, "res": res})

    def op_txn(self, pair):
        name = "lw.%d.%d" % (self.proc, self.n)
        tdir = os.path.join(self.mnt, ".txn", name)
        base = self.page()
        a, b = pair
        if self.rng.random() < 0.5:
            a, b = b, a            # join order varies
        writes = {a: base + "a", b: base + "b"}
        if self.rng.random() < 0.3:
            writes[self.rng.choice(pair)] = None    # one member only read
        t0 = now()
        members = {}
        try:
            step(os.mkdir, tdir)
            for s in (a, b):
                old = step(read_path, os.path.join(tdir, s)).decode()
                members[s] = (old, now())
            for s in (b, a):
                if writes[s] is not None:
                    fd = step(os.open, os.path.join(tdir, s),
                              os.O_WRONLY | os.O_TRUNC)
                    try:
                        step(os.write, fd, writes[s].encode())
                    finally:
                        try:
                            os.close(fd)
                        except OSError as e:
                            raise Aborted(e.errno)
        except Aborted:
            self.cleanup_dir(tdir)
            raise
        for s, (old, tb) in members.items():
            self.record({"op": "read", "key": s, "val": old, "ver": None,
                         "t0": t0, "t1": tb, "res": "ok", "base": 1})
        err = None
        try:
            os.rename(tdir, os.path.join(self.mnt, ".commit", name))
        except OSError as e:
            err = e
        t1 = now()
        res = self.commit_result(err)
        self.record({"op": "txn",
                     "keys": {s: [members[s][0], writes[s]] for s in (a, b)},
                     "t0": t0, "t1": None if res == "unknown" else t1,
                     "res": res})
        if err is not None:
            self.cleanup_dir(tdir)

    def cleanup_file(self, t):
        try:
            os.unlink(t)
        except OSError:
            pass

    def cleanup_dir(self, d):
        try:
            shutil.rmtree(d)
        except OSError:
            pass

    def one(self):
        r = self.rng.random()
        s = self.rng.choice(self.states)
        if r < 0.3:
            self.op_read(s)
        elif r < 0.55:
            self.op_cas(s)
        elif r < 0.7:
            self.op_write(s)
        else:
            self.op_txn(self.rng.choice(self.pairs))


def setup(mnt, out, states):
    for s in states:
        os.mkdir(os.path.join(mnt, s))
    with open(out, "a") as f:
        f.write(json.dumps({"init": {s: [0, ""] for s in states}}) + "\n")


def main():
    args = sys.argv[1:]
    if len(args) >= 3 and args[0] == "setup":
        setup(args[1], args[2], args[3:])
        return 0
    if len(args) < 3 or args[0] != "run":
        sys.stderr.write(__doc__)
        return 1
    mnt, outpath = args[1], args[2]
    proc, host, seconds, stop, pause = None, "", 10.0, None, 0.0
    states = []
    i = 3
    while i < len(args):
        a = args[i]
        if a in ("--proc", "--host", "--seconds", "--stop", "--pause"):
            v = args[i + 1]
            i += 2
            if a == "--proc":
                proc = int(v)
            elif a == "--host":
                host = v
            elif a == "--seconds":
                seconds = float(v)
            elif a == "--stop":
                stop = v
            else:
                pause = float(v) / 1000
            continue
        states.append(a)
        i += 1
    if proc is None or len(states) < 2:
        sys.stderr.write("linwork.py run: --proc N and two states at least\n")
        return 1
    rng = random.Random(proc * 7919 + os.getpid())
    aborted = 0
    end = time.monotonic() + seconds
    with open(outpath, "a") as out:
        w = Worker(mnt, out, proc, host, states, rng)
        while time.monotonic() < end:
            if stop and os.path.exists(stop):
                break
            try:
                w.one()
            except Aborted as e:
                aborted += 1
                w.error(e.errno)
                if e.errno in GONE or e.errno == errno.EIO:
                    time.sleep(0.02)
            if pause:
                time.sleep(pause * rng.random())
    c = w.counts
    tot = lambda res: sum(n for (op, r), n in c.items() if r == res)  # noqa
    print("done p=%d ops=%d ok=%d fail=%d unknown=%d aborted=%d errors=%s "
          "%s" % (proc, sum(c.values()), tot("ok"), tot("fail"),
                  tot("unknown"), aborted,
                  ",".join("%s:%d" % kv for kv in sorted(w.errors.items()))
                  or "-",
                  " ".join("%s.%s=%d" % (op, r, n)
                           for (op, r), n in sorted(c.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
