#!/usr/bin/env python3
"""burst.py STATE N: commits STATE N times, as fast as it can (data opened
with O_TRUNC, the page being the version it will have).  Prints the last
version."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # ksmount
from ksmount import version, write_file  # noqa: E402

state, n = sys.argv[1], int(sys.argv[2])
v = version(state)
for _ in range(n):
    v += 1
    write_file(os.path.join(state, "data"), str(v))
print(version(state))
