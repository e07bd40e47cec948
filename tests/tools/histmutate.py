#!/usr/bin/env python3
"""histmutate.py KIND IN... OUT: copies a recorded history (linearize.py's
format, from one or more files) into OUT with one operation made wrong in
a way no linearizable store can produce, so that the checker must refuse
it.  Says on standard output which operation it changed.  KIND:

    stale-read    a read made to return a page that an acknowledged commit
                  had already replaced (from that very page: a cas or a
                  .txn member) before the read began
    future-read   a read made to return a page whose commit began only
                  after the read had returned
    lost-update   an EAGAIN cas made "ok" although another acknowledged
                  commit had replaced the same base page: two commits
                  from one base

Exit status 1 if the history has no operation to change that way.
"""
import json
import sys


def load(paths):
    init, ops = [], []
    for p in paths:
        with open(p) as f:
            for line in f:
                if not line.strip():
                    continue
                d = json.loads(line)
                (init if "init" in d else ops).append(d)
    return init, ops


def replaced(ops):
    """(key, old page) -> the earliest completion time of an acknowledged
    commit that replaced exactly that page."""
    out = {}
    for o in ops:
        if o.get("res") != "ok" or o["op"] not in ("cas", "txn"):
            continue
        if o["op"] == "cas":
            members = {o["key"]: (o["old"], o["new"])}
        else:
            members = {k: tuple(v) for k, v in o["keys"].items()}
        for k, (old, new) in members.items():
            if new is None:
                continue
            t = o["t1"]
            if (k, old) not in out or t < out[(k, old)][0]:
                out[(k, old)] = (t, o)
    return out


def main():
    if len(sys.argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    kind, ins, outp = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
    init, ops = load(ins)
    target = None
    if kind == "stale-read":
        rep = replaced(ops)
        # pages of a state, and when each was read
        for r in ops:
            if r["op"] != "read" or r.get("res") != "ok" or "base" in r:
                continue
            for (k, old), (t, o) in rep.items():
                if k == r["key"] and t < r["t0"] and old != r["val"]:
                    target = r
                    was = r["val"]
                    r["val"], r["ver"] = old, None
                    break
            if target:
                break
    elif kind == "future-read":
        for r in ops:
            if r["op"] != "read" or r.get("res") != "ok":
                continue
            for w in ops:
                if w["op"] == "write" and w["key"] == r["key"] and \
                        w["t0"] > r["t1"]:
                    target = r
                    was = r["val"]
                    r["val"], r["ver"] = w["new"], None
                    break
            if target:
                break
    elif kind == "lost-update":
        rep = replaced(ops)
        for c in ops:
            if c["op"] == "cas" and c.get("res") == "fail" and \
                    (c["key"], c["old"]) in rep:
                target = c
                was = "fail"
                c["res"] = "ok"
                break
    else:
        sys.stderr.write("histmutate.py: unknown kind %r\n" % kind)
        return 2
    if target is None:
        print("histmutate.py: no operation to change for %s" % kind)
        return 1
    with open(outp, "w") as f:
        for d in init + ops:
            f.write(json.dumps(d, separators=(",", ":")) + "\n")
    print("%s: changed p%s %s %s (was %r): %s" % (
        kind, target.get("p"), target["op"], target.get("key", ""), was,
        json.dumps(target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
