"""Small helpers for the Python parts of the kstatefs end-to-end tests.

A test imports it with

    import os, sys; sys.path.insert(0, os.environ["KS_TOOLS"])
    from kstest import *

Commits "by another process" really are made by another process (a shell),
so that the daemon sees a different pid and the kernel a different file.
"""
import errno
import os
import select
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


def sh(cmd, *args):
    """Runs a shell command in another process; fails the test if it fails."""
    r = subprocess.run(["sh", "-c", cmd, "sh"] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if r.returncode != 0:
        fail("%r exited %d: %s" % (cmd, r.returncode,
                                   r.stderr.decode(errors="replace")))
    return r.stdout


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
