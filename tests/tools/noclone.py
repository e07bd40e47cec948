"""Runs a command with open_tree(2) refused with EPERM, as it is for a
daemon without CAP_SYS_ADMIN (one a user mounted through fusermount3):
a seccomp filter, which its children and their execs inherit.

    python3 noclone.py COMMAND [ARGS...]

Root needs no PR_SET_NO_NEW_PRIVS to install a filter; it is not set, so
that the command could still run set-user-ID programs.
"""
import ctypes
import os
import struct
import sys

SYS_OPEN_TREE = 428            # x86_64
AUDIT_ARCH_X86_64 = 0xC000003E
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
EPERM = 1
LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06

# struct sock_filter: code, jt, jf, k.  seccomp_data: nr at 0, arch at 4.
PROGRAM = [
    (LD_W_ABS, 0, 0, 4),                      # arch
    (JEQ_K, 0, 3, AUDIT_ARCH_X86_64),         # another: allow
    (LD_W_ABS, 0, 0, 0),                      # nr
    (JEQ_K, 0, 1, SYS_OPEN_TREE),
    (RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM),
    (RET_K, 0, 0, SECCOMP_RET_ALLOW),
]


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: noclone.py COMMAND [ARGS...]")
    code = b"".join(struct.pack("=HBBI", *op) for op in PROGRAM)
    filt = ctypes.create_string_buffer(code, len(code))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Fprog(len(PROGRAM), ctypes.addressof(filt))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
                  ctypes.byref(prog), 0, 0) != 0:
        sys.exit("noclone.py: prctl: " + os.strerror(ctypes.get_errno()))
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
