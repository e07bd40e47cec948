#!/usr/bin/env python3
"""pack_store.py [--fix] STORE_DIR OUT: writes the log and snapshot files of a
kstatefs store directory as one input of tests/fuzz/fuzz_store_recover.c
(chunks: a byte naming the file, a 16-bit little-endian length, the
bytes).  The target knows segments 1 to 4 and snapshots 1 to 3, the
numbers of a young store (the records name their segment, so the numbers
are kept as they are).  --fix sets the chunks' bit that makes the
target put the right checksums in (so mutations of the records themselves
get past the checksums)."""
import os
import re
import struct
import sys

LOG_SLOT = {1: 0, 2: 1, 3: 2, 4: 6}
SNAP_SLOT = {1: 3, 2: 4, 3: 5}


def main():
    args = sys.argv[1:]
    fix = 0
    if args and args[0] == "--fix":
        fix = 8
        args = args[1:]
    src, out = args
    files = []
    for name in os.listdir(src):
        m = re.fullmatch(r"(log|snap)\.([0-9a-f]{16})", name)
        if m:
            files.append((m.group(1), int(m.group(2), 16), name))
    rank = {n: n for _, n, _ in files}
    blob = b""
    for kind, n, name in sorted(files, key=lambda f: (f[1], f[0])):
        slots = LOG_SLOT if kind == "log" else SNAP_SLOT
        if rank[n] not in slots:
            sys.exit("pack_store.py: %s: no slot for %s" % (src, name))
        with open(os.path.join(src, name), "rb") as f:
            data = f.read()
        for off in range(0, max(len(data), 1), 65535):
            part = data[off:off + 65535]
            blob += struct.pack("<BH", slots[rank[n]] | fix,
                                len(part)) + part
    with open(out, "wb") as f:
        f.write(blob)


if __name__ == "__main__":
    main()
