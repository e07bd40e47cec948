#!/usr/bin/env python3
"""Tests of the linearizability checker (linearize.py) on small hand-made
histories, and on random histories of a simulated atomic store: those
pass, and each with one read altered to a page from its future fails.

    python3 tests/tools/test_linearize.py [-v]
"""
import json
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import linearize  # noqa: E402


def run(ops, init=None, lagging=False):
    init = init or {"a": [0, ""], "b": [0, ""]}
    lines = [json.dumps({"init": init})] + [json.dumps(o) for o in ops]
    i, parsed = linearize.parse([("test", lines)])
    ok, text = linearize.check(i, parsed, lagging, timeout=60)
    return ok, text


def rd(p, key, val, t0, t1, ver=None, host=""):
    return {"p": p, "host": host, "op": "read", "key": key, "val": val,
            "ver": ver, "t0": t0, "t1": t1, "res": "ok"}


def wr(p, key, new, t0, t1, res="ok", host=""):
    return {"p": p, "host": host, "op": "write", "key": key, "new": new,
            "t0": t0, "t1": t1, "res": res}


def cas(p, key, old, new, t0, t1, res="ok", host=""):
    return {"p": p, "host": host, "op": "cas", "key": key, "old": old,
            "new": new, "t0": t0, "t1": t1, "res": res}


def txn(p, members, t0, t1, res="ok", host=""):
    return {"p": p, "host": host, "op": "txn",
            "keys": {k: list(v) for k, v in members.items()},
            "t0": t0, "t1": t1, "res": res}


class HandMade(unittest.TestCase):
    def ok(self, ops, **kw):
        ok, text = run(ops, **kw)
        self.assertTrue(ok, text)

    def bad(self, ops, **kw):
        ok, text = run(ops, **kw)
        self.assertIs(ok, False, text)
        return text

    def test_sequential(self):
        self.ok([wr(1, "a", "x", 0, 1), rd(2, "a", "x", 2, 3, ver=1),
                 cas(1, "a", "x", "y", 4, 5), rd(2, "a", "y", 6, 7, ver=2)])

    def test_concurrent_read_sees_either(self):
        self.ok([wr(1, "a", "x", 0, 10), rd(2, "a", "", 1, 2),
                 rd(3, "a", "x", 3, 4), rd(2, "a", "x", 11, 12)])

    def test_read_back_in_time_fails(self):
        # once some read saw x, a later read cannot see the page before it
        self.bad([wr(1, "a", "x", 0, 10), rd(2, "a", "x", 1, 2),
                  rd(3, "a", "", 3, 4)])

    def test_stale_read(self):
        self.bad([wr(1, "a", "x", 0, 1), rd(2, "a", "", 2, 3)])

    def test_wrong_version(self):
        self.bad([wr(1, "a", "x", 0, 1), rd(2, "a", "x", 2, 3, ver=2)])

    def test_lost_update(self):
        # two commits from the same base both acknowledged
        self.bad([cas(1, "a", "", "x", 0, 10), cas(2, "a", "", "y", 1, 11),
                  rd(3, "a", "y", 12, 13)])

    def test_lost_update_even_overlapping(self):
        self.bad([cas(1, "a", "", "x", 0, 10), cas(2, "a", "", "y", 0, 10)])

    def test_conflict_resolved(self):
        self.ok([cas(1, "a", "", "x", 0, 10),
                 cas(2, "a", "", "y", 1, 11, res="fail"),
                 rd(3, "a", "x", 12, 13)])

    def test_eagain_without_a_commit_fails(self):
        self.bad([cas(1, "a", "", "x", 0, 10, res="fail")])

    def test_eagain_needs_a_commit_in_time(self):
        # the only other commit began after the EAGAIN was returned
        self.bad([cas(1, "a", "", "x", 0, 10, res="fail"),
                  wr(2, "a", "y", 11, 12)])
        self.ok([cas(1, "a", "", "x", 0, 10, res="fail"),
                 wr(2, "a", "y", 9, 12)])

    def test_torn_txn(self):
        self.bad([txn(1, {"a": ("", "a1"), "b": ("", "b1")}, 0, 1),
                  rd(2, "a", "a1", 2, 3), rd(2, "b", "", 4, 5)])

    def test_txn_all_or_nothing_visible_during(self):
        self.ok([txn(1, {"a": ("", "a1"), "b": ("", "b1")}, 0, 10),
                 rd(2, "b", "", 1, 2), rd(2, "a", "a1", 3, 4),
                 rd(2, "b", "b1", 5, 6)])
        # seeing a's new page, then b's old one, is torn
        self.bad([txn(1, {"a": ("", "a1"), "b": ("", "b1")}, 0, 10),
                  rd(2, "a", "a1", 3, 4), rd(2, "b", "", 5, 6)])

    def test_txn_read_member_checked(self):
        # b only read at "" but b was committed before: it must fail
        self.bad([wr(2, "b", "b1", 0, 1),
                  txn(1, {"a": ("", "a1"), "b": ("", None)}, 2, 3)])
        self.ok([wr(2, "b", "b1", 0, 1),
                 txn(1, {"a": ("", "a1"), "b": ("", None)}, 2, 3,
                     res="fail"),
                 rd(3, "a", "", 4, 5)])

    def test_txn_eagain_with_all_current_fails(self):
        self.bad([txn(1, {"a": ("", "a1"), "b": ("", "b1")}, 0, 3,
                      res="fail")])

    def test_unknown_may_have_happened(self):
        self.ok([cas(1, "a", "", "x", 0, None, res="unknown"),
                 rd(2, "a", "x", 20, 21)])
        self.ok([cas(1, "a", "", "x", 0, None, res="unknown"),
                 rd(2, "a", "", 20, 21)])
        self.ok([wr(1, "a", "x", 0, None, res="unknown"),
                 rd(2, "a", "", 20, 21), rd(2, "a", "", 30, 31)])

    def test_unknown_happens_once(self):
        # seen, then gone: the commit vanished
        self.bad([wr(1, "a", "x", 0, None, res="unknown"),
                  rd(2, "a", "x", 20, 21), rd(2, "a", "", 30, 31)])

    def test_acknowledged_commit_vanished(self):
        # the daemon died (an op in flight) and the remount lost an
        # acknowledged commit
        self.bad([cas(1, "a", "", "x", 0, 5),
                  cas(2, "a", "x", "y", 6, None, res="unknown"),
                  rd(3, "a", "", 40, 41)])
        self.ok([cas(1, "a", "", "x", 0, 5),
                 cas(2, "a", "x", "y", 6, None, res="unknown"),
                 rd(3, "a", "x", 40, 41)])

    def test_read_of_unwritten_page(self):
        text = self.bad([wr(1, "a", "x", 0, 1), rd(2, "a", "zz", 2, 3)])
        self.assertIn("no commit wrote", text)

    def test_independent_states(self):
        ok, text = run([wr(1, "a", "x", 0, 1), wr(2, "b", "y", 0, 1),
                        rd(1, "a", "x", 2, 3), rd(2, "b", "y", 2, 3)])
        self.assertTrue(ok, text)
        self.assertEqual(text.count("linearizable"), 2, text)

    def test_lagging_read_allowed_only_lagging(self):
        h = [wr(1, "a", "x", 0, 1, host="A"), rd(2, "a", "", 2, 3, host="B")]
        self.bad(h)
        self.ok(h, lagging=True)

    def test_lagging_not_older_than_own_commit(self):
        self.bad([wr(1, "a", "x", 0, 1, host="A"),
                  wr(2, "a", "y", 2, 3, host="B"),
                  rd(2, "a", "x", 4, 5, host="B")], lagging=True)
        self.ok([wr(1, "a", "x", 0, 1, host="A"),
                 wr(2, "a", "y", 2, 3, host="B"),
                 rd(3, "a", "x", 4, 5, host="A")], lagging=True)

    def test_lagging_monotonic(self):
        self.bad([wr(1, "a", "x", 0, 1, host="A"),
                  wr(1, "a", "y", 2, 3, host="A"),
                  rd(2, "a", "y", 4, 5, host="B"),
                  rd(3, "a", "x", 6, 7, host="B")], lagging=True)
        self.ok([wr(1, "a", "x", 0, 1, host="A"),
                 wr(1, "a", "y", 2, 3, host="A"),
                 rd(2, "a", "x", 4, 5, host="B"),
                 rd(3, "a", "y", 6, 7, host="B")], lagging=True)

    def test_lagging_no_read_from_the_future(self):
        self.bad([rd(2, "a", "x", 0, 1, host="B"),
                  wr(1, "a", "x", 2, 3, host="A")], lagging=True)

    def test_lagging_version_must_match(self):
        self.bad([wr(1, "a", "x", 0, 1, host="A"),
                  rd(2, "a", "x", 4, 5, ver=2, host="B")], lagging=True)

    def test_lagging_commits_still_linearizable(self):
        self.bad([cas(1, "a", "", "x", 0, 10, host="A"),
                  cas(2, "a", "", "y", 1, 11, host="B")], lagging=True)

    def test_bad_history(self):
        with self.assertRaises(linearize.BadHistory):
            run([wr(1, "a", "x", 0, 1), wr(2, "a", "x", 2, 3)])


def simulate(rng, nproc=4, nops=400, keys=("a", "b", "c", "d"), hosts=None):
    """A history of an atomic store: each operation takes effect at one
    random instant inside its interval; processes overlap."""
    state = {k: (0, "") for k in keys}
    pairs = [("a", "b"), ("c", "d")]
    t = 0
    pending = []     # (effect time, proc, op dict, thunk)
    ops = []
    busy = {p: 0 for p in range(nproc)}
    serial = 0
    events = []
    for p in range(nproc):
        for _ in range(nops // nproc):
            t0 = busy[p] + rng.randint(1, 5)
            eff = t0 + rng.randint(0, 20)
            t1 = eff + rng.randint(0, 20)
            busy[p] = t1
            events.append((eff, p, t0, t1))
    events.sort()
    for eff, p, t0, t1 in events:
        serial += 1
        new = "p%d.%d" % (p, serial)
        host = hosts[p % len(hosts)] if hosts else ""
        r = rng.random()
        k = rng.choice(keys)
        if r < 0.4:
            v, val = state[k]
            ops.append(rd(p, k, val, t0, t1, ver=v, host=host))
        elif r < 0.55:
            state[k] = (state[k][0] + 1, new)
            ops.append(wr(p, k, new, t0, t1, host=host))
        elif r < 0.8:
            # base read earlier: sometimes stale
            old = state[k][1] if rng.random() < 0.7 else \
                rng.choice([o.get("new") for o in ops
                            if o.get("key") == k and o["op"] == "write"]
                           or [""])
            if old == state[k][1]:
                state[k] = (state[k][0] + 1, new)
                ops.append(cas(p, k, old, new, t0, t1, host=host))
            else:
                ops.append(cas(p, k, old, new, t0, t1, res="fail",
                               host=host))
        else:
            a, b = rng.choice(pairs)
            na, nb = new + "a", new + "b"
            olds = {a: state[a][1], b: state[b][1]}
            if rng.random() < 0.2:
                olds[b] = "stale"
            if olds[a] == state[a][1] and olds[b] == state[b][1]:
                state[a] = (state[a][0] + 1, na)
                state[b] = (state[b][0] + 1, nb)
                ops.append(txn(p, {a: (olds[a], na), b: (olds[b], nb)},
                               t0, t1, host=host))
            else:
                ops.append(txn(p, {a: (olds[a], na), b: (olds[b], nb)},
                               t0, t1, res="fail", host=host))
    return ops


class Simulated(unittest.TestCase):
    def test_random_linearizable_and_one_read_altered(self):
        rng = random.Random(42)
        init = {k: [0, ""] for k in "abcd"}
        for trial in range(20):
            ops = [o for o in simulate(rng)
                   if not (o["op"] == "cas" and o["old"] == "stale")]
            ops = [o for o in ops if not (o["op"] == "txn" and any(
                v[0] == "stale" for v in o["keys"].values()))]
            ok, text = run(ops, init)
            self.assertTrue(ok, "trial %d: %s" % (trial, text))
            # a read altered to a page written only after it returned
            reads = [o for o in ops if o["op"] == "read"]
            rng.shuffle(reads)
            for r in reads:
                later = [o for o in ops if o["op"] == "write"
                         and o["key"] == r["key"] and o["t0"] > r["t1"]]
                if later:
                    r["val"] = later[0]["new"]
                    r["ver"] = None
                    break
            ok, text = run(ops, init)
            self.assertIs(ok, False, "trial %d: altered read passed" % trial)

    def test_big_history_is_quick(self):
        import time
        rng = random.Random(7)
        ops = simulate(rng, nproc=6, nops=6000)
        ops = [o for o in ops if not (o["op"] == "cas" and
                                      o["old"] == "stale")]
        ops = [o for o in ops if not (o["op"] == "txn" and any(
            v[0] == "stale" for v in o["keys"].values()))]
        t = time.monotonic()
        ok, text = run(ops, {k: [0, ""] for k in "abcd"})
        self.assertTrue(ok, text)
        self.assertLess(time.monotonic() - t, 60)

    def test_lagging_accepts_strict_histories(self):
        rng = random.Random(3)
        ops = simulate(rng, hosts=["A", "B"])
        ops = [o for o in ops if not (o["op"] == "cas" and
                                      o["old"] == "stale")]
        ops = [o for o in ops if not (o["op"] == "txn" and any(
            v[0] == "stale" for v in o["keys"].values()))]
        ok, text = run(ops, {k: [0, ""] for k in "abcd"}, lagging=True)
        self.assertTrue(ok, text)


if __name__ == "__main__":
    unittest.main()
