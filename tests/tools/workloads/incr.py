#!/usr/bin/env python3
"""incr.py MNT COUNT STATE...

Adds 1 to every STATE (a decimal page), COUNT times, each time in one
transaction over all of them: mkdir MNT/.txn/T, read the members in the order
given, write them in the reverse order, mv T to .commit/; on EAGAIN abort
(rm -r) and retry after a short random pause.  Prints "done COUNT
conflicts N".  Any error other than EAGAIN fails (status 1).
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # ksmount
from ksmount import Conflict, MultiTxn, fail  # noqa: E402


def main():
    mnt, count, states = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    rng = random.Random(os.getpid())
    conflicts = 0
    done = 0
    serial = 0
    while done < count:
        serial += 1
        t = MultiTxn(mnt, "incr.%d.%d" % (os.getpid(), serial))
        vals = {}
        for s in states:
            raw = t.read(s)
            try:
                vals[s] = int(raw)
            except ValueError:
                fail("%s in a transaction holds %r" % (s, raw))
        for s in reversed(states):
            t.write(s, "%d\n" % (vals[s] + 1))
        try:
            t.commit()
        except Conflict:
            conflicts += 1
            t.abort()
            if conflicts > 200000:
                fail("more than 200000 conflicts for %d commits" % done)
            import time
            time.sleep(rng.random() * 0.002)
            continue
        done += 1
        if os.path.exists(t.dir):
            fail("%s still exists after its commit" % t.dir)
    print("done %d conflicts %d" % (done, conflicts))


if __name__ == "__main__":
    main()
