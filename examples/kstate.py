#!/usr/bin/env python3
"""Using kstatefs states from Python, with nothing but the files.

    kstate.py incr STATE           add 1 to the count in STATE, safely from
                                   any number of processes; print the count
    kstate.py watch STATE [N]      print the page now and after each change;
                                   stop after N changes (default: never)
    kstate.py snapshot STATE...    print the pages of several states of one
                                   mount as they all were at one instant

STATE is the path of a state's directory, such as /mnt/state/hits.
"""
import errno
import os
import select
import sys
import time


def incr(state):
    """The commit loop: a transaction file is a private copy of data;
    renaming it onto data commits, or fails with EAGAIN if another commit
    came first, and then we read again and retry."""
    txn = os.path.join(state, "txn.%d" % os.getpid())
    delay = 0.001
    while True:
        # Creating the file begins the transaction (not O_TRUNC or O_EXCL:
        # those start it empty, as cp and sed -i want).
        fd = os.open(txn, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            text = os.pread(fd, 4096, 0)
            count = int(text or b"0") + 1
            os.ftruncate(fd, 0)
            os.pwrite(fd, b"%d\n" % count, 0)
        finally:
            os.close(fd)
        try:
            os.rename(txn, os.path.join(state, "data"))  # the commit
            return count
        except OSError as e:
            if e.errno != errno.EAGAIN:
                raise
            os.unlink(txn)  # abort; back off a little, and try again
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def watch(state, changes=None):
    """The sysfs idiom on version: read it, poll for POLLPRI, seek back to
    0, read again.  A read at offset 0 of data takes the latest page."""
    vfd = os.open(os.path.join(state, "version"), os.O_RDONLY)
    dfd = os.open(os.path.join(state, "data"), os.O_RDONLY)
    p = select.poll()
    p.register(vfd, select.POLLPRI)
    seen = 0
    try:
        while True:
            os.lseek(vfd, 0, os.SEEK_SET)
            version = int(os.read(vfd, 32))  # re-arms poll: read first
            page = os.pread(dfd, 1 << 20, 0)
            print("version %d: %s" % (version, page.decode(errors="replace").rstrip("\n")),
                  flush=True)
            if changes is not None and seen >= changes:
                return
            p.poll()  # sleeps until a commit newer than what we read
            seen += 1
    finally:
        os.close(vfd)
        os.close(dfd)


def snapshot(states):
    """mkdir .txn/T fixes an instant; .txn/T/NAME is NAME as it was then,
    however late it is read; committing a T that wrote nothing always
    succeeds and removes it."""
    mount = os.path.dirname(os.path.abspath(states[0]))
    t = "py.%d" % os.getpid()
    os.mkdir(os.path.join(mount, ".txn", t))
    try:
        pages = []
        for s in states:
            with open(os.path.join(mount, ".txn", t, os.path.basename(s)), "rb") as f:
                pages.append(f.read())
    except BaseException:
        for s in states:
            try:
                os.unlink(os.path.join(mount, ".txn", t, os.path.basename(s)))
            except OSError:
                pass
        os.rmdir(os.path.join(mount, ".txn", t))
        raise
    os.rename(os.path.join(mount, ".txn", t), os.path.join(mount, ".commit", t))
    for s, page in zip(states, pages):
        print("%s: %s" % (s, page.decode(errors="replace").rstrip("\n")))


def main(argv):
    if len(argv) >= 3 and argv[1] == "incr":
        print(incr(argv[2]))
    elif len(argv) in (3, 4) and argv[1] == "watch":
        watch(argv[2], int(argv[3]) if len(argv) == 4 else None)
    elif len(argv) >= 3 and argv[1] == "snapshot":
        snapshot(argv[2:])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        sys.exit(130)
