#!/usr/bin/env python3
"""writer.py STATE SECONDS INTERVAL_MS

Commits STATE (data opened with O_TRUNC) every INTERVAL_MS milliseconds for
SECONDS seconds.  Each page is the decimal version it will have, so a reader
can match a page with its version.  Prints the number of commits and the last
version.  The only writer of STATE while it runs.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # ksmount
from ksmount import version, write_file  # noqa: E402


def main():
    state, seconds, interval = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]) / 1000
    v = version(state)
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        v += 1
        write_file(os.path.join(state, "data"), str(v))
        n += 1
        time.sleep(interval)
    last = version(state)
    if last != v:
        sys.stderr.write("writer: version %d after %d commits, expected %d\n"
                         % (last, n, v))
        return 1
    print(n, last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
