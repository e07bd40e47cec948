#!/usr/bin/env python3
"""Runs the Python body of an end-to-end test, read from standard input,
with a helper module's names already imported:

    kspy.py MODULE [ARGS...] <BODY

is `python3 - ARGS... <BODY` (sys.argv is ["-", ARGS...]) where BODY
starts with `from MODULE import *`, MODULE being kstest (states, commits by
another process) or ksmount (a whole mount: .txn/, views, .events, .stats).
Both give os, sys, errno, select, subprocess, time, fail and check.  A bats
test calls it through ks_py (tests/bats/helpers.bash).

Tracebacks name the body's lines as "<test body>", line numbers counted from
its first line.
"""
import importlib
import linecache
import os
import sys

NAME = "<test body>"


def main():
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    module, args = sys.argv[1], sys.argv[2:]
    body = sys.stdin.read()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.argv = ["-"] + args
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    mod = importlib.import_module(module)
    for name in getattr(mod, "__all__",
                        [n for n in vars(mod) if not n.startswith("_")]):
        ns[name] = getattr(mod, name)
    linecache.cache[NAME] = (len(body), None, body.splitlines(True), NAME)
    exec(compile(body, NAME, "exec"), ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
