#!/usr/bin/env python3
"""linearize.py [--lagging] [--timeout S] [--quiet] HISTORY...

A linearizability checker for histories of kstatefs operations, in the
manner of Knossos and Porcupine: the search of Wing & Gong, as improved by
Lowe, over a recorded history, with memoization of (operations linearized,
model state) and P-compositionality.

A history is JSON lines, from any number of files (one per process is
usual).  A line with "init" gives the initial states:

    {"init": {"s0": [0, ""], "s1": [0, ""]}}

every other line is one operation:

    {"p": 3, "host": "a", "op": OP, ..., "t0": NS, "t1": NS|null, "res": RES}

t0 and t1 are the times of invocation and completion (time.monotonic_ns of
one host); t1 null means the completion was never seen.  RES is "ok",
"fail" (the operation certainly took no effect: EAGAIN at a commit) or
"unknown" (an error that may hide an applied commit: the daemon killed
under it, ETIMEDOUT or EIO from etcd); t1 is then taken as infinite.  OP:

    read   "key", "val" (the page read), "ver" (the version that page had,
           or null when not known)
    cas    "key", "old", "new": a transaction file begun when the page was
           OLD, written NEW, committed by rename onto data: ok iff the page
           was still OLD at the commit (no commit since its base), EAGAIN
           otherwise
    write  "key", "new": a blind write (open O_TRUNC, write, close)
    txn    "keys": {KEY: [OLD, NEW or null], ...}: a .txn commit over
           several states, each member begun at OLD, written NEW (null: only
           read); ok iff every member is still at its OLD, all or nothing

Every page written must be unique in the history (a process id and a
counter), so that a page read names the commit that wrote it; version v
holds the page of the v-th commit.

The model: per state a version and a page.  A read must see the version
and page current at some instant between its t0 and t1 (strictly); a
cas or txn that succeeded found every OLD current and installed the NEWs,
each version + 1; one that failed found some OLD not current; a blind write
installs NEW, version + 1; an unknown commit did either.  The history is
linearizable if one total order of all operations, respecting real time,
obeys this model.  States that no operation links (a txn links its
members) are checked separately.

--lagging is the rule for several hosts on --etcd (kstatefs(1), MANY
HOSTS): commits are linearizable across hosts exactly as above, but a host
serves reads from its own copy of the states, which may lag.  So a read (a
line with "host") is not required to see the current page, only:
  - a page that some commit installed at or before the read's instant, and
    if "ver" is given, at exactly that version;
  - not older than any commit acknowledged on the same host for that state
    before the read was invoked, nor than any read on that host that
    completed before it was invoked (a host's copy never goes back).
Reads of a transaction's base (the OLD of a cas or txn) are reads too.

Exit status: 0 linearizable, 1 not (with the operations that could not be
placed, the model state, and the history around them), 2 bad input or the
search ran out of time.
"""
import argparse
import bisect
import json
import sys
import time

INF = float("inf")


class BadHistory(Exception):
    pass


class Op:
    __slots__ = ("id", "p", "host", "kind", "key", "keys", "val", "ver",
                 "old", "new", "members", "t0", "t1", "res", "preds",
                 "line", "src")

    def __init__(self):
        self.preds = ()
        self.ver = None
        self.members = None

    def describe(self):
        t1 = "inf" if self.t1 == INF else "%d" % self.t1
        if self.kind == "read":
            what = "read %s -> %r%s" % (self.key, self.val,
                                        "" if self.ver is None
                                        else " @v%d" % self.ver)
        elif self.kind == "cas":
            what = "cas %s %r -> %r" % (self.key, self.old, self.new)
        elif self.kind == "write":
            what = "write %s %r" % (self.key, self.new)
        else:
            what = "txn " + ", ".join(
                "%s %r -> %r" % (k, o, n) for k, (o, n) in
                sorted(self.members.items()))
        return "p%s%s [%d, %s] %s: %s" % (
            self.p, "@" + self.host if self.host else "", self.t0, t1, what,
            self.res)


def parse(lines_by_src):
    init = {}
    ops = []
    for src, lines in lines_by_src:
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
            except ValueError as e:
                raise BadHistory("%s:%d: not JSON: %s" % (src, n, e))
            if "init" in d:
                for k, (v, val) in d["init"].items():
                    if k in init and init[k] != (v, val):
                        raise BadHistory("%s:%d: two initial states for %s"
                                         % (src, n, k))
                    init[k] = (int(v), val)
                continue
            o = Op()
            o.src = src
            o.line = n
            try:
                o.p = d.get("p")
                o.host = d.get("host") or ""
                o.kind = d["op"]
                o.t0 = int(d["t0"])
                o.res = d["res"]
                o.t1 = INF if d.get("t1") is None or o.res == "unknown" \
                    else int(d["t1"])
                if o.kind == "read":
                    o.key = d["key"]
                    o.val = d["val"]
                    o.ver = d.get("ver")
                    if o.res != "ok":
                        continue        # a read that failed tells nothing
                elif o.kind in ("cas", "write"):
                    o.key = d["key"]
                    o.old = d.get("old")
                    o.new = d["new"]
                    if o.kind == "cas":
                        o.members = {o.key: (o.old, o.new)}
                elif o.kind == "txn":
                    o.members = {k: (v[0], v[1]) for k, v in
                                 d["keys"].items()}
                    o.key = None
                else:
                    raise BadHistory("%s:%d: unknown op %r" % (src, n, o.kind))
            except (KeyError, TypeError, ValueError) as e:
                raise BadHistory("%s:%d: bad operation (%s): %s"
                                 % (src, n, e, line))
            if o.res not in ("ok", "fail", "unknown"):
                raise BadHistory("%s:%d: bad result %r" % (src, n, o.res))
            if o.t1 < o.t0:
                raise BadHistory("%s:%d: completes before it begins"
                                 % (src, n))
            if o.kind == "write" and o.res == "fail":
                continue                # certainly not applied: no effect
            ops.append(o)
    return init, ops


def op_keys(o):
    if o.kind == "txn":
        return list(o.members)
    return [o.key]


def written(o):
    """{key: new page} of a commit."""
    if o.kind == "write":
        return {o.key: o.new}
    if o.kind in ("cas", "txn"):
        return {k: n for k, (_, n) in o.members.items() if n is not None}
    return {}


def validate(init, ops):
    """Pages written must be unique; every key must have an initial state."""
    writer = {}
    for o in ops:
        for k in op_keys(o):
            if k not in init:
                raise BadHistory("%s:%d: state %s has no initial state"
                                 % (o.src, o.line, k))
        for k, n in written(o).items():
            if (k, n) in writer or n == init[k][1]:
                raise BadHistory("%s:%d: page %r of %s written twice"
                                 % (o.src, o.line, n, k))
            writer[(k, n)] = o
    return writer


def components(init, ops):
    """Partition by connected components of states (union-find)."""
    parent = {k: k for k in init}

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for o in ops:
        ks = op_keys(o)
        for k in ks[1:]:
            a, b = find(ks[0]), find(k)
            if a != b:
                parent[a] = b
    groups = {}
    for o in ops:
        groups.setdefault(find(op_keys(o)[0]), []).append(o)
    out = []
    for root, group in groups.items():
        keys = sorted(k for k in init if find(k) == root)
        out.append((keys, group))
    return out


def lagging_preds(ops):
    """For each read: the operations of its host on its state that were
    acknowledged before it was invoked and are maximal in real time (no
    other such one begins after they end).  By induction the newest
    version among all earlier ones is among these."""
    by = {}
    for o in ops:
        if o.res != "ok":
            continue
        if o.kind == "read" or o.kind == "write":
            by.setdefault((o.host, o.key), []).append(o)
        else:
            for k in written(o):
                by.setdefault((o.host, k), []).append(o)
    index = {}
    for hk, lst in by.items():
        lst.sort(key=lambda o: o.t1)
        t1s = [o.t1 for o in lst]
        pref = []
        m = -1
        for o in lst:
            m = max(m, o.t0)
            pref.append(m)
        index[hk] = (lst, t1s, pref)
    for o in ops:
        if o.kind != "read":
            continue
        ent = index.get((o.host, o.key))
        if not ent:
            continue
        lst, t1s, pref = ent
        i = bisect.bisect_left(t1s, o.t0)   # strictly before t0
        if i == 0:
            continue
        m = pref[i - 1]
        j = bisect.bisect_left(t1s, m, 0, i)
        o.preds = tuple(p for p in lst[j:i] if p is not o)


class Model:
    """Per state (version, page); in lagging mode also the version of
    every page committed so far (pages are unique), kept with undo."""

    def __init__(self, init, keys, lagging):
        self.keys = keys
        self.pos = {k: i for i, k in enumerate(keys)}
        self.lagging = lagging
        # in lagging mode each state also carries a hash of its pages in
        # order, so that two orders of the same commits are not confused
        # by the memo
        if lagging:
            self.start = tuple((init[k][0], init[k][1], 0) for k in keys)
        else:
            self.start = tuple((init[k][0], init[k][1]) for k in keys)
        # page -> version per state, for lagging reads
        self.hist = {k: {init[k][1]: init[k][0]} for k in keys}

    def candidates(self, st, o):
        """The states after O from ST: a list, empty if O cannot happen
        now.  Each is (state, undo) where undo lists pages added to hist."""
        if o.kind == "read":
            if self.lagging and o.host:
                h = self.hist[o.key]
                v = h.get(o.val)
                if v is None or (o.ver is not None and o.ver != v):
                    return []
                for p in o.preds:
                    if p.kind == "read":
                        pv = h.get(p.val)
                    else:
                        pv = h.get(written(p)[o.key])
                    if pv is None or pv > v:
                        return []
                return [(st, ())]
            ver, val = st[self.pos[o.key]][:2]
            if val != o.val or (o.ver is not None and o.ver != ver):
                return []
            return [(st, ())]
        if o.kind == "write":
            applied = self._apply(st, {o.key: o.new})
            if o.res == "unknown":
                return [applied, (st, ())]
            return [applied]
        # cas, txn
        match = all(st[self.pos[k]][1] == old
                    for k, (old, _) in o.members.items())
        if o.res == "ok":
            return [self._apply(st, written(o))] if match else []
        if o.res == "fail":
            return [] if match else [(st, ())]
        if match:
            return [self._apply(st, written(o)), (st, ())]
        return [(st, ())]

    def _apply(self, st, w):
        s = list(st)
        undo = []
        for k, new in w.items():
            i = self.pos[k]
            ver = s[i][0] + 1
            if self.lagging:
                s[i] = (ver, new, hash((s[i][2], new)))
                self.hist[k][new] = ver
                undo.append((k, new))
            else:
                s[i] = (ver, new)
        return tuple(s), tuple(undo)

    def undo(self, undo):
        for k, new in undo:
            del self.hist[k][new]


class Entry:
    __slots__ = ("op", "is_call", "match", "prev", "next", "time")


def check_component(init, keys, ops, lagging, deadline):
    """Returns (True, None) or (False, report) or (None, 'timeout')."""
    model = Model(init, keys, lagging)
    n = len(ops)
    events = []
    for i, o in enumerate(ops):
        o.id = i
        events.append((o.t0, 0, i))
        events.append((o.t1, 1, i))
    # at equal times calls come first: such operations overlap
    events.sort(key=lambda e: (e[0], e[1]))
    head = Entry()
    head.prev = None
    prev = head
    calls = {}
    for t, kind, i in events:
        e = Entry()
        e.op = ops[i]
        e.is_call = kind == 0
        e.time = t
        e.prev = prev
        e.next = None
        prev.next = e
        prev = e
        if e.is_call:
            calls[i] = e
        else:
            e.match = None
            calls[i].match = e

    def lift(e):
        e.prev.next = e.next
        if e.next:
            e.next.prev = e.prev
        m = e.match
        m.prev.next = m.next
        if m.next:
            m.next.prev = m.prev

    def unlift(e):
        m = e.match
        m.prev.next = m
        if m.next:
            m.next.prev = m
        e.prev.next = e
        if e.next:
            e.next.prev = e

    cache = set()
    stack = []   # (entry, state before, remaining candidates, undo)
    state = model.start
    linearized = 0
    entry = head.next
    best = (-1, None, None)
    steps = 0
    depth = 0
    while head.next is not None:
        steps += 1
        if steps & 0xFFF == 0 and time.monotonic() > deadline:
            return None, "timeout after %d steps" % steps
        if entry.is_call:
            cands = model.candidates(state, entry.op)
            placed = False
            while cands:
                nst, undo = cands.pop(0)
                nl = linearized | (1 << entry.op.id)
                key = (nl, nst)
                if key in cache:
                    model.undo(undo)
                    continue
                cache.add(key)
                stack.append((entry, state, cands, undo))
                state = nst
                linearized = nl
                lift(entry)
                depth += 1
                entry = head.next
                placed = True
                break
            if not placed:
                entry = entry.next
        else:
            # a return whose call is not placed: nothing before it can be
            # placed either; record how far we got, then back up
            if depth > best[0]:
                pend = []
                e = head.next
                while e is not None and len(pend) < 16:
                    if e.is_call:
                        pend.append(e.op)
                    e = e.next
                best = (depth, state, (entry.op, pend))
            while True:
                if not stack:
                    return False, (best, model)
                e, st, cands, undo = stack.pop()
                model.undo(undo)
                linearized &= ~(1 << e.op.id)
                unlift(e)
                depth -= 1
                state = st
                placed = False
                while cands:
                    nst, undo2 = cands.pop(0)
                    nl = linearized | (1 << e.op.id)
                    key = (nl, nst)
                    if key in cache:
                        model.undo(undo2)
                        continue
                    cache.add(key)
                    stack.append((e, state, cands, undo2))
                    state = nst
                    linearized = nl
                    lift(e)
                    depth += 1
                    placed = True
                    break
                if placed:
                    entry = head.next
                else:
                    entry = e.next
                break
    return True, {"steps": steps, "ops": n}


def report(keys, best, model, allops):
    depth, state, (blocker, pending) = best
    out = []
    out.append("states %s: no linearization; the longest placed %d "
               "operations, then none of these could go next:"
               % (",".join(keys), depth))
    for o in pending:
        out.append("    " + o.describe() + "   (%s:%d)" % (o.src, o.line))
    out.append("  while %s had to complete by then:" % blocker.describe())
    out.append("  model state there: " + ", ".join(
        "%s=v%d %r" % (k, s[0], s[1]) for k, s in zip(keys, state)))
    # the history around the blocker, for a human
    t = blocker.t1
    near = sorted((o for o in allops if o.t0 <= t and
                   (o.t1 >= pending[0].t0 if pending else True)),
                  key=lambda o: o.t0)
    if len(near) > 40:
        near = near[-40:]
    out.append("  operations overlapping that window (%d):" % len(near))
    for o in near:
        out.append("    " + o.describe())
    return "\n".join(out)


def check(init, ops, lagging=False, timeout=300.0):
    """Returns (status, text): status True, False or None (timed out)."""
    validate(init, ops)
    # reads of pages nobody wrote are violations on their own; say so
    wrote = {(k, init[k][1]) for k in init}
    for o in ops:
        for k, n in written(o).items():
            wrote.add((k, n))
    for o in ops:
        if o.kind == "read" and (o.key, o.val) not in wrote:
            return False, ("read of a page no commit wrote: %s (%s:%d)"
                           % (o.describe(), o.src, o.line))
        if o.kind in ("cas", "txn") and o.res == "ok":
            for k, (old, _) in o.members.items():
                if (k, old) not in wrote:
                    return False, ("a transaction based on a page no commit "
                                   "wrote: %s" % o.describe())
    if lagging:
        lagging_preds(ops)
    deadline = time.monotonic() + timeout
    lines = []
    ok = True
    comps = components(init, ops)
    for keys, group in comps:
        res, info = check_component(init, keys, group, lagging, deadline)
        if res is None:
            return None, "states %s: %s" % (",".join(keys), info)
        if res is False:
            best, model = info
            lines.append(report(keys, best, model, group))
            ok = False
        else:
            lines.append("states %s: %d operations linearizable (%d steps)"
                         % (",".join(keys), info["ops"], info["steps"]))
    return ok, "\n".join(lines)


def summary(ops):
    c = {}
    for o in ops:
        c[(o.kind, o.res)] = c.get((o.kind, o.res), 0) + 1
    return " ".join("%s:%s=%d" % (k, r, n) for (k, r), n in sorted(c.items()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lagging", action="store_true",
                    help="reads on each host may lag (the --etcd rule)")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args(argv)
    srcs = []
    for f in a.files:
        if f == "-":
            srcs.append(("-", sys.stdin.read().splitlines()))
        else:
            with open(f) as fh:
                srcs.append((f, fh.read().splitlines()))
    try:
        init, ops = parse(srcs)
        if not init:
            raise BadHistory("no initial states (an \"init\" line)")
        t = time.monotonic()
        ok, text = check(init, ops, a.lagging, a.timeout)
    except BadHistory as e:
        print("linearize: bad history: %s" % e, file=sys.stderr)
        return 2
    took = time.monotonic() - t
    if ok is None:
        print("linearize: gave up: %s" % text)
        return 2
    if not a.quiet or not ok:
        print(text)
    print("%s: %d operations (%s), %s, checked in %.1f s"
          % ("linearizable" if ok else "NOT LINEARIZABLE", len(ops),
             summary(ops), "lagging reads" if a.lagging else "strict",
             took))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
