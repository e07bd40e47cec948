#!/usr/bin/env python3
"""Torn-read checker for kstatefs.

    torn.py STATE COMMITS READER...

A writer commits COMMITS versions of STATE (more if a reader has not yet
made 50 reads); version k's page is one byte
repeated, BYTE(k) = "abc...z"[k % 26], LENGTH(BYTE) bytes long, so that
consecutive versions differ in both byte and length.  Meanwhile each READER
runs in its own process, in a loop, and checks every page it reads: one byte
repeated, with that byte's length.  Any other page is a torn read (a mix of
two versions) and fails the run.

READERs:
    cat      `cat data`
    dd       `dd bs=4096` (many small reads)
    dd1000   `dd bs=1000` (reads not aligned to pages)
    head     `head -c MAX`
    open     open, read in 3000-byte pieces, close
    pread    keep data open; lseek(0) and read in 5000-byte pieces
    txn      begin a transaction (touch T), read T, abort it (rm T)

The writer alternates between `data` opened with O_TRUNC and a transaction
committed with rename.  Needs a mount with -o max_size >= 262144.
"""
import os
import subprocess
import sys
import time

LETTERS = b"abcdefghijklmnopqrstuvwxyz"
ENOUGH = 50       # reads each reader should make while the writer writes
WRITE_FOR = 120   # seconds the writer may go on to let them


def length(byte):
    """Short pages and long ones alternate: a shrinking page is as likely to
    be torn as a growing one."""
    k = byte - LETTERS[0]
    if k % 2:
        return 150000 + 4000 * k + k   # 154k .. 250k, not page aligned
    return 1 + 397 * k                 # 1 .. 9530


def page(v):
    byte = LETTERS[v % 26]
    return bytes([byte]) * length(byte)


def check_page(buf, how):
    if not buf:
        return "empty page"
    byte = buf[0]
    if byte not in LETTERS:
        return "unexpected first byte %r" % bytes([byte])
    bad = len(buf) - buf.count(bytes([byte]))
    if bad or len(buf) != length(byte):
        counts = {chr(b): buf.count(bytes([b])) for b in set(buf)}
        return ("torn read (%s): %d bytes, expected %d of %r; byte counts %r"
                % (how, len(buf), length(byte), chr(byte), counts))
    return None


def read_fd(fd, piece):
    out = []
    while True:
        chunk = os.read(fd, piece)
        if not chunk:
            return b"".join(out)
        out.append(chunk)


def reader(state, mode, stop, ready):
    dataf = os.path.join(state, "data")
    maxlen = max(length(b) for b in LETTERS)
    keep = os.open(dataf, os.O_RDONLY) if mode == "pread" else None
    txn = os.path.join(state, "r%d" % os.getpid())
    reads = 0
    while True:
        stopping = os.path.exists(stop)
        if mode == "cat":
            buf = subprocess.run(["cat", dataf], check=True,
                                 stdout=subprocess.PIPE).stdout
        elif mode in ("dd", "dd1000"):
            bs = "4096" if mode == "dd" else "1000"
            buf = subprocess.run(["dd", "if=" + dataf, "bs=" + bs,
                                  "status=none"], check=True,
                                 stdout=subprocess.PIPE).stdout
        elif mode == "head":
            buf = subprocess.run(["head", "-c", str(maxlen), dataf],
                                 check=True, stdout=subprocess.PIPE).stdout
        elif mode == "open":
            fd = os.open(dataf, os.O_RDONLY)
            buf = read_fd(fd, 3000)
            os.close(fd)
        elif mode == "pread":
            os.lseek(keep, 0, os.SEEK_SET)
            buf = read_fd(keep, 5000)
        elif mode == "txn":
            fd = os.open(txn, os.O_CREAT | os.O_RDWR, 0o644)
            buf = read_fd(fd, 8192)
            os.close(fd)
            os.unlink(txn)
        else:
            sys.exit("unknown reader " + mode)
        err = check_page(buf, mode)
        if err:
            sys.stderr.write("FAIL: %s after %d good reads\n" % (err, reads))
            sys.exit(1)
        reads += 1
        if reads == 1:
            open(ready, "w").close()
        if reads == ENOUGH:
            open(ready + ".enough", "w").close()
        if stopping:
            break
    print("%s: %d reads" % (mode, reads))


def writer(state, commits, readies):
    """Commits at least COMMITS versions, and goes on until every reader has
    read ENOUGH pages (or for at most WRITE_FOR seconds).  Returns the
    number of commits."""
    dataf = os.path.join(state, "data")
    txn = os.path.join(state, "w")
    until = time.monotonic() + WRITE_FOR
    v = 0
    while (v < commits or
           (time.monotonic() < until and
            not all(os.path.exists(r + ".enough") for r in readies))):
        v += 1
        if v % 2:
            fd = os.open(dataf, os.O_WRONLY | os.O_TRUNC)
            os.write(fd, page(v))
            os.close(fd)
        else:
            fd = os.open(txn, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            os.write(fd, page(v))
            os.close(fd)
            os.rename(txn, dataf)
    return v


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "--reader":
        reader(*sys.argv[2:6])
        return 0
    if len(sys.argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    state, commits, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    tmp = os.environ.get("BATS_TEST_TMPDIR") or "/tmp"
    stop = os.path.join(tmp, "torn.stop.%d" % os.getpid())
    with open(os.path.join(state, "version")) as f:
        start = int(f.read())
    # Version 0 is empty; start from a real page.
    writer_v0 = os.open(os.path.join(state, "data"),
                        os.O_WRONLY | os.O_TRUNC)
    os.write(writer_v0, page(0))
    os.close(writer_v0)
    procs = []
    for i, mode in enumerate(modes):
        ready = "%s.ready%d" % (stop, i)
        procs.append((mode, ready, subprocess.Popen(
            [sys.executable, __file__, "--reader", state, mode, stop, ready],
            stdout=subprocess.PIPE)))
    deadline = time.monotonic() + 60
    for mode, ready, p in procs:
        while not os.path.exists(ready):
            if p.poll() is not None or time.monotonic() > deadline:
                open(stop, "w").close()
                sys.stderr.write("FAIL: reader %s did not start\n" % mode)
                return 1
            time.sleep(0.01)
    commits = writer(state, commits, [r for _, r, _ in procs])
    open(stop, "w").close()
    failed = 0
    for mode, ready, p in procs:
        out, _ = p.communicate()
        sys.stdout.write(out.decode())
        if p.returncode != 0:
            failed = 1
    final = open(os.path.join(state, "data"), "rb").read()
    if final != page(commits):
        sys.stderr.write("FAIL: final page: %s\n"
                         % (check_page(final, "final") or "wrong version"))
        failed = 1
    with open(os.path.join(state, "version")) as f:
        v = int(f.read())
    if v != start + commits + 1:
        sys.stderr.write("FAIL: version %d, expected %d\n"
                         % (v, start + commits + 1))
        failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
