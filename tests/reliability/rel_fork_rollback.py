"""Reliability row 10 — fork and rollback.

Fork: a store is copied to a second laptop (key and all) at a random point; the first
laptop records and syncs; the second records and syncs. The second push is refused as
a fork (exit 76, one line that says what to do) and so is the same divergent branch
carried as a raw batch (the server's own check, not only the agent's); the server
flags the feed with the seq of the fork; entries up to the fork stay merged, nothing of
the first laptop is lost (it keeps syncing), nothing of the copy's branch gets in.
Rounds: quick 6, soak 60.

Rollback: three laptops record and sync while the server is backed up now and then
and later restored from a random older backup. On the next sync each laptop whose
signed receipt is above what the restored server holds warns (WARNING ... backup) and
pushes again; the others do not warn; afterwards the server holds everything.
Rounds: quick 5, soak 50.

Figures: `fork ... refused=... carrier_refused=... lost=0 leaked=0` and
`rollback ... warned=... missed_warnings=0 lost=0 dup=0`."""

import collections
import json
import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relenv  # noqa: E402
from relenv import (FSTOOL, Device, TempTestCase, enrolled_device, export_records,  # noqa: E402
                    feed_of, figures_line, sized)

FORK_ROUNDS = sized(6, 60)
ROLLBACK_ROUNDS = sized(5, 50)


def add_many(dev, n, ledger, tag):
    ids = []
    for i in range(n):
        note = "%s %s %d" % (dev.name, tag, i)
        rid = dev.add("interview", "--note", note)
        ledger.add(op="add", dev=dev.name, id=rid, note=note)
        ids.append(rid)
    return ids


def one_line_error(p):
    lines = [l for l in p.err.splitlines() if l.strip()]
    return len(lines) == 1 and lines[0].startswith("fieldsync: ")


class ForkTest(TempTestCase):
    def test_copied_store_is_refused_as_a_fork(self):
        t0 = time.monotonic()
        rng, server, sdb = relenv.row_start(self)
        co = enrolled_device(self.tmp, server, name="coordinator", role="coordinator")
        ledger = relenv.row_ledger(self)
        first_ids, second_ids, shared_ids = {}, {}, {}
        refused = carrier_refused = 0
        for r in range(FORK_ROUNDS):
            first = enrolled_device(self.tmp, server, name="first%d" % r)
            feed = feed_of(first)
            # Records before the copy; some of them perhaps not yet synced.
            shared = add_many(first, rng.randint(1, 25), ledger, "before")
            first.ok("sync")
            if rng.random() < 0.5:
                shared += add_many(first, rng.randint(1, 10), ledger, "unsynced-before")
            copy_seq = first.status()["local_seq"]
            second = Device(self.tmp, "second%d" % r)
            shutil.copytree(first.home, second.home)
            # The first laptop goes on and syncs first.
            mine = add_many(first, rng.randint(1, 20), ledger, "after")
            first.ok("sync")
            theirs = []
            for i in range(rng.randint(1, 20)):
                theirs.append(second.add("interview", "--note", "second %d %d" % (r, i)))
            before = sdb.have(feed)
            p = second.run("sync")
            self.assertEqual(p.returncode, 76, p.err)
            self.assertTrue(one_line_error(p), p.err)
            self.assertIn("new key", p.err)
            refused += 1
            self.assertEqual(sdb.have(feed), before, "the fork changed the server")
            # The same branch carried as a batch by anyone: the server refuses it itself.
            local2 = second.status()["local_seq"]
            frm = copy_seq + 1 if rng.random() < 0.5 or local2 <= before else before + 1
            batch = os.path.join(self.tmp, "fork%d.bin" % r)
            subprocess.run([FSTOOL, second.home, str(frm), str(local2), batch], check=True)
            with open(batch, "rb") as f:
                status, ans = server.request("POST", "/v1/feeds/%s/entries" % feed, f.read())
            self.assertEqual(status, 409, ans)
            self.assertEqual(json.loads(ans)["error"], "fork", ans)
            carrier_refused += 1
            row = [d for d in server.devices() if d["feed"] == feed][0]
            self.assertTrue(row["fork"], row)
            self.assertEqual(row["fork_seq"], max(frm, copy_seq + 1),
                             "copy at %d, carried %d..%d, server had %d: %s" %
                             (copy_seq, frm, local2, before, row))
            self.assertEqual(row["have_seq"], before)
            # The first laptop keeps syncing; the copy stays refused.
            mine += add_many(first, rng.randint(1, 5), ledger, "later")
            first.ok("sync")
            self.assertEqual(sdb.have(feed), first.status()["local_seq"])
            self.assertEqual(second.run("sync").returncode, 76)
            first_ids[r] = mine
            second_ids[r] = theirs
            shared_ids[r] = shared
            self.assertEqual(first.run("verify").returncode, 0)
        exported = export_records(co)
        counts = collections.Counter(x["id"] for x in exported)
        notes = {x["id"]: x.get("note") for x in exported}
        saved = [x for x in ledger.read() if x["op"] == "add"]
        lost = [x["id"] for x in saved if x["id"] not in counts]
        wrong = [x["id"] for x in saved if x["id"] in notes and notes[x["id"]] != x["note"]]
        leaked = [i for ids in second_ids.values() for i in ids if i in counts]
        dup = sum(c - 1 for c in counts.values())
        check = server.admin("check")
        figures_line("fork", rounds=FORK_ROUNDS, refused=refused, carrier_refused=carrier_refused,
                     first_saved=len(saved), copy_records=sum(map(len, second_ids.values())),
                     lost=len(lost), leaked=len(leaked), dup=dup,
                     runtime_s="%.0f" % (time.monotonic() - t0))
        self.assertEqual(lost, [], "records of the first laptop (or before the fork) lost")
        self.assertEqual(wrong, [])
        self.assertEqual(leaked, [], "records of the copy's branch reached the merged view")
        self.assertEqual(dup, 0)
        self.assertEqual(check.returncode, 0, check.err)


class RollbackTest(TempTestCase):
    def test_server_restored_from_an_older_backup(self):
        t0 = time.monotonic()
        rng, server, sdb = relenv.row_start(self)
        co = enrolled_device(self.tmp, server, name="coordinator", role="coordinator")
        ledger = relenv.row_ledger(self)
        devs = [enrolled_device(self.tmp, server, name="laptop%d" % i) for i in range(3)]
        feeds = {d.name: feed_of(d) for d in devs}
        backups = []
        warned = quiet = missed = spurious = 0
        rolled_back_entries = 0

        def work(tag):
            for d in devs:
                add_many(d, rng.randint(0, 12), ledger, tag)
                if rng.random() < 0.7:
                    d.ok("sync")

        for r in range(ROLLBACK_ROUNDS):
            work("round%d" % r)
            # A backup: the data folder copied while the server is stopped.
            server.stop()
            b = os.path.join(self.tmp, "backup%d" % r)
            shutil.copytree(server.data, b)
            backups.append(b)
            server.start()
            work("after-backup%d" % r)
            # Disaster: the server comes back from a random older backup.
            server.stop()
            shutil.rmtree(server.data)
            shutil.copytree(rng.choice(backups), server.data)
            server.start()
            for d in devs:
                receipt = d.status()["server_have_seq"]
                have = sdb.have(feeds[d.name])
                p = d.run("sync")
                self.assertEqual(p.returncode, 0, p.err)
                warns = "WARNING" in p.err and "backup" in p.err
                if receipt > have:
                    rolled_back_entries += receipt - have
                    warned += warns
                    missed += not warns
                else:
                    quiet += not warns
                    spurious += warns
                self.assertEqual(sdb.have(feeds[d.name]), d.status()["local_seq"])
        exported = export_records(co)
        counts = collections.Counter(x["id"] for x in exported)
        notes = {x["id"]: (x["feed"], x.get("note")) for x in exported}
        saved = [x for x in ledger.read() if x["op"] == "add"]
        lost = [x["id"] for x in saved if x["id"] not in counts]
        wrong = [x["id"] for x in saved
                 if x["id"] in notes and notes[x["id"]] != (feeds[x["dev"]], x["note"])]
        dup = sum(c - 1 for c in counts.values())
        check = server.admin("check")
        figures_line("rollback", rounds=ROLLBACK_ROUNDS, devices=len(devs), saved=len(saved),
                     resent_entries=rolled_back_entries, warned=warned, quiet=quiet,
                     missed_warnings=missed, spurious_warnings=spurious, lost=len(lost), dup=dup,
                     runtime_s="%.0f" % (time.monotonic() - t0))
        self.assertEqual(missed, 0, "a laptop above its receipt did not warn")
        self.assertGreater(warned, 0, "no restore fell below a receipt: the case was not run")
        self.assertEqual(spurious, 0, "a laptop warned with no receipt above the server")
        self.assertEqual(lost, [], "saved records missing after the restores")
        self.assertEqual(wrong, [])
        self.assertEqual(dup, 0)
        self.assertEqual(set(counts), {x["id"] for x in saved})
        self.assertEqual(check.returncode, 0, check.err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
