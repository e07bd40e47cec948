#!/usr/bin/env python3
"""The bank-transfer test: accounts are states acct0..acctN-1 holding a
decimal balance; transfers and audits are transactions over several states
(.txn/T, commit with rename to .commit/).

    bank.py setup MNT NACC BALANCE
        creates the accounts, each committed once with BALANCE (version 1)
    bank.py transfer MNT NACC COUNT LOG
        makes COUNT successful transfers: a random amount between two
        random accounts (read both, write both, commit, retry on EAGAIN).
        Before each commit LOG gets "try SERIAL FROM TO AMOUNT", after it
        "ok SERIAL" or "conflict SERIAL".  Exit status 0 when done, 3 if the
        mount went away (the daemon was killed), 1 on any other failure.
    bank.py audit MNT NACC TOTAL STOPFILE LOG
        takes read-only snapshots of all accounts until STOPFILE exists,
        then one more that must succeed; every successful snapshot must sum
        to TOTAL.  LOG gets "audits OK CONFLICTS".  Exit status as above.
    bank.py check MNT NACC BALANCE LOG...
        the accounts must be exactly what the transfers in the LOGs make of
        them: each balance BALANCE plus the amounts moved, each version 1
        plus the number of transfers it took part in.  A transfer that was
        tried but neither acknowledged nor refused (in flight when the daemon
        was killed) may or may not have happened: some choice of those must
        explain the accounts.
"""
import itertools
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # ksmount
from ksmount import (Conflict, Disconnected, MultiTxn, fail,  # noqa: E402
                     read_file, version, write_file)


def acct(i):
    return "acct%d" % i


class Log:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def __call__(self, line):
        os.write(self.fd, (line + "\n").encode())


def balance(raw, what):
    try:
        return int(raw)
    except ValueError:
        fail("%s holds %r, not a balance" % (what, raw))


def setup(mnt, nacc, bal):
    for i in range(nacc):
        os.mkdir(os.path.join(mnt, acct(i)))
        write_file(os.path.join(mnt, acct(i), "data"), "%d\n" % bal)


def transfer(mnt, nacc, count, logpath):
    log = Log(logpath)
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    done = conflicts = serial = 0
    tag = "x%d" % os.getpid()
    try:
        while done < count:
            serial += 1
            src, dst = rng.sample(range(nacc), 2)
            t = MultiTxn(mnt, "%s.%d" % (tag, serial))
            a = balance(t.read(acct(src)), "%s in %s" % (acct(src), t.name))
            b = balance(t.read(acct(dst)), "%s in %s" % (acct(dst), t.name))
            if a < 0 or b < 0:
                fail("negative balance in a transaction: %d %d" % (a, b))
            amount = rng.randint(1, a) if a > 0 else 0
            t.write(acct(src), "%d\n" % (a - amount))
            t.write(acct(dst), "%d\n" % (b + amount))
            log("try %d %d %d %d" % (serial, src, dst, amount))
            try:
                t.commit()
            except Conflict:
                log("conflict %d" % serial)
                conflicts += 1
                t.abort()
                time.sleep(rng.random() * 0.002)
                continue
            log("ok %d" % serial)
            done += 1
    except Disconnected as e:
        log("disconnected %s" % e)
        print("transfers %d conflicts %d, then disconnected" % (done, conflicts))
        return 3
    print("transfers %d conflicts %d" % (done, conflicts))
    return 0


def audit(mnt, nacc, total, stopfile, logpath):
    log = Log(logpath)
    ok = conflicts = serial = 0
    final = False
    try:
        while True:
            if not final and os.path.exists(stopfile):
                final = True
            serial += 1
            t = MultiTxn(mnt, "a%d.%d" % (os.getpid(), serial))
            order = list(range(nacc))
            random.shuffle(order)
            vals = {}
            for i in order:
                vals[i] = balance(t.read(acct(i)), "%s in %s" % (acct(i), t.name))
            try:
                t.commit()
            except Conflict:
                conflicts += 1
                t.abort()
                if final and conflicts > 100000:
                    fail("the final audit keeps conflicting with no writer")
                continue
            ok += 1
            s = sum(vals.values())
            if s != total or min(vals.values()) < 0:
                fail("snapshot %d sums to %d, expected %d: %r"
                     % (serial, s, total, [vals[i] for i in range(nacc)]))
            if final:
                break
    except Disconnected as e:
        log("audits %d %d disconnected %s" % (ok, conflicts, e))
        print("audits %d conflicts %d, then disconnected" % (ok, conflicts))
        return 3
    log("audits %d %d" % (ok, conflicts))
    print("audits %d conflicts %d" % (ok, conflicts))
    return 0


def check(mnt, nacc, bal, logs):
    done, unknown = [], []
    for path in logs:
        tries, outcome = {}, {}
        with open(path) as f:
            for line in f:
                w = line.split()
                if not w:
                    continue
                if w[0] == "try":
                    tries[w[1]] = (int(w[2]), int(w[3]), int(w[4]))
                elif w[0] in ("ok", "conflict"):
                    outcome[w[1]] = w[0]
        for serial, tr in tries.items():
            o = outcome.get(serial)
            if o == "ok":
                done.append(tr)
            elif o is None:
                unknown.append(tr)
    if len(unknown) > 16:
        fail("%d transfers in flight: one per process expected" % len(unknown))
    bals = [balance(read_file(os.path.join(mnt, acct(i), "data")), acct(i))
            for i in range(nacc)]
    vers = [version(os.path.join(mnt, acct(i))) for i in range(nacc)]
    total = nacc * bal
    if sum(bals) != total:
        fail("the accounts sum to %d, expected %d: %r" % (sum(bals), total, bals))

    def expected(transfers):
        b, v = [bal] * nacc, [1] * nacc
        for src, dst, amount in transfers:
            b[src] -= amount
            b[dst] += amount
            v[src] += 1
            v[dst] += 1
        return b, v

    for k in range(len(unknown) + 1):
        for extra in itertools.combinations(unknown, k):
            b, v = expected(done + list(extra))
            if b == bals and v == vers:
                print("accounts %r, versions %r: %d transfers acknowledged, "
                      "%d of %d in flight happened" % (bals, vers, len(done), k,
                                                      len(unknown)))
                return 0
    b, v = expected(done)
    fail("the accounts do not match the transfers: balances %r versions %r; "
         "the %d acknowledged transfers make balances %r versions %r; "
         "%d more were in flight: %r" % (bals, vers, len(done), b, v,
                                         len(unknown), unknown))


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    cmd, mnt, nacc = argv[1], argv[2], int(argv[3])
    if cmd == "setup":
        setup(mnt, nacc, int(argv[4]))
        return 0
    if cmd == "transfer":
        return transfer(mnt, nacc, int(argv[4]), argv[5])
    if cmd == "audit":
        return audit(mnt, nacc, int(argv[4]), argv[5], argv[6])
    if cmd == "check":
        return check(mnt, nacc, int(argv[4]), argv[5:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
