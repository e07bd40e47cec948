"""Small helpers for the Python parts of the kstatefs end-to-end tests.

A bats test runs a Python body with all of it imported by

    ks_py ARGS... <<-'EOF'
        ...
    EOF

(tests/bats/helpers.bash, tests/tools/kspy.py).  tests/tools/ksmount.py is
its counterpart for tests of a whole mount (.txn/, views, .events, .stats).

Commits "by another process" really are made by another process (a shell
started at import, before the test opens anything), so that the daemon sees
a different pid and the kernel a different file.
"""
import errno
import os
import select
import shlex
import subprocess
import sys
import time

__all__ = ["errno", "os", "select", "subprocess", "sys", "time",
           "fail", "check", "sh", "commit", "version", "data",
           "read_at0", "expect_oserror", "wait_until"]


def fail(msg):
    sys.stderr.write("FAIL: %s\n" % msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class _Shell:
    """A shell started before the test opens any file, that runs commands
    for it.  Spawning a process from a process that holds a file of the
    mount open would close that file in the child (close-on-exec), and every
    close is a FUSE flush: for a write to data, a commit.  A process started
    earlier has none of the test's files."""

    def __init__(self):
        self.proc = subprocess.Popen(["sh"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        tmp = os.environ.get("BATS_TEST_TMPDIR") or "/tmp"
        self.out = os.path.join(tmp, "kstest.%d.out" % os.getpid())
        self.err = self.out[:-4] + ".err"

    def run(self, cmd, args, timeout):
        line = "set -- %s; (%s) >%s 2>%s </dev/null; echo $?\n" % (
            " ".join(shlex.quote(str(a)) for a in args), cmd,
            shlex.quote(self.out), shlex.quote(self.err))
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            fail("%r did not finish within %gs" % (cmd, timeout))
        status = int(self.proc.stdout.readline())
        with open(self.out, "rb") as f:
            out = f.read()
        with open(self.err, "rb") as f:
            err = f.read()
        return status, out, err


_shell = _Shell()


def sh(cmd, *args, timeout=60):
    """Runs a shell command in another process (one that holds none of this
    process's files); fails the test if it fails.  Returns its stdout."""
    status, out, err = _shell.run(cmd, args, timeout)
    if status != 0:
        fail("%r exited %d: %s" % (cmd, status, err.decode(errors="replace")))
    return out


def commit(state, text):
    """Commits TEXT as the new page of STATE, from another process."""
    sh('printf %s "$2" > "$1/data"', state, text)


def version(state):
    with open(os.path.join(state, "version"), "rb") as f:
        raw = f.read()
    check(raw.endswith(b"\n") and raw[:-1].isdigit(),
          "version file holds %r" % raw)
    return int(raw)


def data(state):
    with open(os.path.join(state, "data"), "rb") as f:
        return f.read()


def read_at0(fd, n=65536):
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, n)


def expect_oserror(err, fn, *args):
    """Calls fn(*args) and fails unless it raises OSError with errno ERR."""
    try:
        fn(*args)
    except OSError as e:
        check(e.errno == err, "%s: expected %s, got %s" % (
            getattr(fn, "__name__", fn), errno.errorcode[err],
            errno.errorcode.get(e.errno, e.errno)))
        return
    fail("%s: expected %s, got success" % (getattr(fn, "__name__", fn),
                                           errno.errorcode[err]))


def wait_until(cond, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    fail("timed out after %gs waiting for %s" % (timeout, what))
