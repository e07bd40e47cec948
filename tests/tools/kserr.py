#!/usr/bin/env python3
"""Makes one file-system call and prints its outcome: OK, or the errno name
(ENOTSUP, EAGAIN, ...).  The exit status is 0 either way, so that a test can
compare the printed word with the errno the specification names.

    kserr.py OP ARGS...

OPs:
    mkdir PATH [MODE]        rmdir PATH          unlink PATH
    rename OLD NEW           exchange A B        noreplace OLD NEW
    link OLD NEW             symlink TARGET PATH
    mknod PATH fifo|chr|blk|sock|reg
    create PATH              (open O_CREAT|O_WRONLY|O_EXCL, close)
    open PATH FLAGS          (FLAGS: r w rw wt wa rwt cwt; open then close)
    write PATH FLAGS NBYTES [OFFSET]
                             open, write NBYTES bytes of 'x' (at OFFSET),
                             close; prints OK or STEP:ERRNO (open: write:
                             close:)
    truncate PATH LEN        chmod PATH MODE     chown PATH UID GID
    setxattr PATH            getxattr PATH       listxattr PATH
    removexattr PATH         stat PATH
"""
import ctypes
import errno
import os
import stat
import sys

FLAGS = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY,
    "rw": os.O_RDWR,
    "wt": os.O_WRONLY | os.O_TRUNC,
    "rwt": os.O_RDWR | os.O_TRUNC,
    "wa": os.O_WRONLY | os.O_APPEND,
    "cwt": os.O_CREAT | os.O_WRONLY | os.O_TRUNC,
}

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def name(err):
    if err == errno.ENOTSUP:
        return "ENOTSUP"
    return errno.errorcode.get(err, str(err))


def renameat2(old, new, flags):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD,
                      os.fsencode(new), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def mknod(path, kind):
    kinds = {
        "fifo": (stat.S_IFIFO, 0),
        "chr": (stat.S_IFCHR, os.makedev(1, 3)),
        "blk": (stat.S_IFBLK, os.makedev(7, 0)),
        "sock": (stat.S_IFSOCK, 0),
        "reg": (stat.S_IFREG, 0),
    }
    mode, dev = kinds[kind]
    os.mknod(path, mode | 0o644, dev)


def open_close(path, flags):
    os.close(os.open(path, FLAGS[flags]))


def write(path, flags, nbytes, offset=None):
    try:
        fd = os.open(path, FLAGS[flags])
    except OSError as e:
        return "open:" + name(e.errno)
    result = "OK"
    try:
        if offset is not None:
            os.lseek(fd, int(offset), os.SEEK_SET)
        left = int(nbytes)
        while left > 0:
            left -= os.write(fd, b"x" * min(left, 1 << 16))
    except OSError as e:
        result = "write:" + name(e.errno)
    try:
        os.close(fd)
    except OSError as e:
        if result == "OK":
            result = "close:" + name(e.errno)
        else:
            result += " close:" + name(e.errno)
    return result


def none(_):
    return None


def create(path):
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))


OPS = {
    "mkdir": lambda p, mode="755": os.mkdir(p, int(mode, 8)),
    "rmdir": os.rmdir,
    "unlink": os.unlink,
    "rename": os.rename,
    "exchange": lambda a, b: renameat2(a, b, RENAME_EXCHANGE),
    "noreplace": lambda a, b: renameat2(a, b, RENAME_NOREPLACE),
    "link": os.link,
    "symlink": os.symlink,
    "mknod": mknod,
    "create": create,
    "open": open_close,
    "write": write,
    "truncate": lambda p, n: os.truncate(p, int(n)),
    "chmod": lambda p, m: os.chmod(p, int(m, 8)),
    "chown": lambda p, u, g: os.chown(p, int(u), int(g)),
    "setxattr": lambda p: os.setxattr(p, "user.kstatefs", b"1"),
    "getxattr": lambda p: none(os.getxattr(p, "user.kstatefs")),
    "listxattr": lambda p: none(os.listxattr(p)),
    "removexattr": lambda p: os.removexattr(p, "user.kstatefs"),
    "stat": lambda p: none(os.stat(p)),
}


def main(argv):
    if len(argv) < 2 or argv[1] not in OPS:
        sys.stderr.write(__doc__)
        return 2
    try:
        out = OPS[argv[1]](*argv[2:])
    except OSError as e:
        print(name(e.errno))
        return 0
    print("OK" if out is None else out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
