"""Helpers for the end-to-end tests of a whole mount: throttled views,
transactions over several states (.txn/, .commit/), .events and .stats.  The
programs of workloads/ (bank transfers, bursts, increments, paced writers)
are built on it.

A bats test runs a Python body with all of it imported by

    ks_py -m ksmount ARGS... <<-'EOF'
        ...
    EOF

(tests/bats/helpers.bash, tests/tools/kspy.py); a program imports it from
tests/tools.  WORKLOADS is the directory of those programs.

Everything goes through the files of the mount, as a user would.
"""
import errno
import os
import select
import shutil
import subprocess
import sys
import time

__all__ = ["errno", "os", "select", "shutil", "subprocess", "sys", "time",
           "fail", "check", "Disconnected", "Conflict", "DISCONNECTED",
           "MultiTxn", "read_file", "write_file", "version", "stats",
           "EventReader", "wait_until", "WORKLOADS"]

# The directory of the workload programs (bank.py, burst.py, incr.py,
# writer.py), to run with sys.executable.
WORKLOADS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "workloads")

# What a file operation fails with once the daemon is gone (kill -9).
DISCONNECTED = (errno.ENOTCONN, errno.ECONNABORTED, errno.ENODEV, errno.EIO)


def fail(msg):
    sys.stderr.write("FAIL: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Disconnected(Exception):
    """The mount went away under us (the daemon was killed)."""


class Conflict(Exception):
    """A commit failed with EAGAIN."""


def _guard(fn, *args):
    try:
        return fn(*args)
    except OSError as e:
        if e.errno in DISCONNECTED:
            raise Disconnected(str(e))
        raise


def read_file(path):
    def rd():
        fd = os.open(path, os.O_RDONLY)
        try:
            out = b""
            while True:
                b = os.read(fd, 65536)
                if not b:
                    return out
                out += b
        finally:
            os.close(fd)
    return _guard(rd)


def write_file(path, content):
    """open(O_WRONLY|O_TRUNC), write, close; close errors are reported."""
    if isinstance(content, str):
        content = content.encode()

    def wr():
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(content)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise
        os.close(fd)
    _guard(wr)


def version(state):
    raw = read_file(os.path.join(state, "version"))
    check(raw.endswith(b"\n") and raw[:-1].isdigit(),
          "%s/version holds %r" % (state, raw))
    return int(raw)


def stats(mnt):
    """The .stats file as a dict of key -> int (every value must be a
    number)."""
    raw = read_file(os.path.join(mnt, ".stats")).decode()
    out = {}
    for line in raw.splitlines():
        parts = line.split()
        check(len(parts) == 2, ".stats line is not 'key value': %r" % line)
        try:
            out[parts[0]] = int(parts[1])
        except ValueError:
            fail(".stats value is not a number: %r" % line)
    return out


class MultiTxn:
    """A transaction over several states: mkdir MNT/.txn/NAME; members are
    MNT/.txn/NAME/STATE; commit is rename(.txn/NAME, .commit/NAME)."""

    def __init__(self, mnt, name):
        self.mnt = mnt
        self.name = name
        self.dir = os.path.join(mnt, ".txn", name)
        _guard(os.mkdir, self.dir)

    def path(self, state):
        return os.path.join(self.dir, state)

    def read(self, state):
        return read_file(self.path(state))

    def write(self, state, content):
        write_file(self.path(state), content)

    def commit(self):
        """Returns normally on success, raises Conflict on EAGAIN."""
        try:
            _guard(os.rename, self.dir, os.path.join(self.mnt, ".commit",
                                                     self.name))
        except OSError as e:
            if e.errno == errno.EAGAIN:
                raise Conflict()
            raise

    def abort(self):
        """rm -r .txn/NAME (whatever is left of it)."""
        try:
            _guard(shutil.rmtree, self.dir)
        except FileNotFoundError:
            pass


def wait_until(cond, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    fail("timed out after %gs waiting for %s" % (timeout, what))


class EventReader:
    """An open .events file (blocking), read line by line by a thread, so
    that a test can wait for a line with a timeout whatever poll does."""

    def __init__(self, mnt, start=True):
        import queue
        self.fd = os.open(os.path.join(mnt, ".events"), os.O_RDONLY)
        self.q = queue.Queue()
        if start:
            self.start()

    def start(self):
        """Begins reading (a reader opened with start=False reads nothing
        until then: a reader that does not keep up)."""
        import threading
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError as e:
                self.q.put(("error", e))
                return
            if not chunk:
                self.q.put(("eof", None))
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.q.put(("line", line.decode()))

    def line(self, timeout=20.0, what=""):
        """The next line (without the newline); fails the test after
        TIMEOUT seconds without one (saying WHAT was awaited)."""
        import queue
        try:
            kind, val = self.q.get(timeout=timeout)
        except queue.Empty:
            fail("no .events line within %gs%s" % (timeout, what and ": " + what))
        if kind == "error":
            fail("read(.events) failed: %s" % val)
        if kind == "eof":
            fail("read(.events) returned end of file")
        return val

    def lines(self, n, timeout=20.0):
        return [self.line(timeout) for _ in range(n)]

    def quiet(self, seconds):
        """True if no line arrives for SECONDS; otherwise fails, naming it."""
        import queue
        try:
            kind, val = self.q.get(timeout=seconds)
        except queue.Empty:
            return True
        fail("unexpected .events %s: %r" % (kind, val))
