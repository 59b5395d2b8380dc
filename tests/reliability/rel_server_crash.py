"""Reliability row 2 — server crash. Three laptops record and push continuously while
the server is killed with kill -9 at random moments, K times (quick K=50, soak K=500),
and restarted on its port.

The test's ledger holds every id `add` printed and every acknowledgement the laptops
got: a `fieldsync sync` that exited 0 (the server holds all the laptop had when it
began) and each signed receipt (`status --json` server_have_seq). After every kill,
with the server down, its database shows: nothing acknowledged is missing, no partial
batch (each feed holds exactly seq 1..have_seq, and the committed pushes of the audit
log tile that range), and `fieldsync-server check` passes. At the end, after every
laptop has synced, a coordinator's pull and export equals the ledger: every record once,
with its text.

One line of figures: `kill9-server K=... saved=... acked=... lost=0 partial=0 dup=0 ...`."""

import collections
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relenv  # noqa: E402
from relenv import (TempTestCase, enrolled_device, export_records, feed_of,  # noqa: E402
                    figures_line, partial_batches, set_settings, sized, start_on_port,
                    sync_until_ok)

K = sized(50, 500)
DEVICES = 3
# The server lives this long (seconds, uniform) between a restart and the next kill.
LIFE = (0.05, 0.8)


class Laptop(threading.Thread):
    """Records one to four interviews, pushes, reads its receipt; again, until told."""

    def __init__(self, dev, ledger, lock, stop, rng):
        super().__init__(daemon=True)
        self.dev = dev
        self.ledger = ledger
        self.lock = lock
        self.stop = stop
        self.rng = rng
        self.ids = []      # in seq order: add i is entry i + 1 of this feed
        self.acked = 0     # entries acknowledged by the server, by exit 0 or receipt
        self.syncs = collections.Counter()
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                for _ in range(self.rng.randint(1, 4)):
                    note = "%s record %d" % (self.dev.name, len(self.ids) + 1)
                    rid = self.dev.add("interview", "--note", note)
                    with self.lock:
                        self.ledger.add(op="add", dev=self.dev.name, id=rid, note=note)
                        self.ids.append(rid)
                before = len(self.ids)
                p = self.dev.run("sync", "--quiet")
                self.syncs[p.returncode] += 1
                if p.returncode not in (0, 69, 75):
                    raise AssertionError("%s: sync exited %d: %s" %
                                         (self.dev.name, p.returncode, p.err))
                receipt = self.dev.status()["server_have_seq"]
                ack = max(receipt, before if p.returncode == 0 else 0)
                with self.lock:
                    if ack > self.acked:
                        self.ledger.add(op="ack", dev=self.dev.name, upto=ack,
                                        how="exit 0" if ack == before else "receipt")
                        self.acked = ack
        except BaseException as e:  # reported by the main thread
            self.error = e


class ServerCrashTest(TempTestCase):
    def test_kill9_server_under_pushes(self):
        t0 = time.monotonic()
        rng, server, sdb = relenv.row_start(self)
        co = enrolled_device(self.tmp, server, name="coordinator", role="coordinator")
        ledger = relenv.row_ledger(self)
        lock = threading.Lock()
        stop = threading.Event()
        laptops = []
        for i in range(DEVICES):
            dev = enrolled_device(self.tmp, server, name="laptop%d" % i)
            set_settings(dev, connect_timeout_ms=1000, request_timeout_ms=10000,
                         backoff_base_ms=20, backoff_max_ms=200, batch_max_entries=3)
            laptops.append(Laptop(dev, ledger, lock, stop, relenv.random.Random(rng.random())))
        feeds = {lp.dev.name: feed_of(lp.dev) for lp in laptops}
        for lp in laptops:
            lp.start()
        self.addCleanup(lambda: [stop.set()] + [lp.join(120) for lp in laptops])
        lost = partial = 0
        problems = []
        for k in range(K):
            time.sleep(rng.uniform(*LIFE))  # the random kill moment
            server.kill9()
            # Every acknowledgement so far came from a server that has now died.
            with lock:
                acked = {lp.dev.name: lp.acked for lp in laptops}
            for name, feed in feeds.items():
                shape = sdb.feed_shape(feed)
                if shape[0] < acked[name]:
                    lost += acked[name] - shape[0]
                    problems.append("kill %d: %s acknowledged %d, the server holds %d" %
                                    (k, name, acked[name], shape[0]))
                bad = partial_batches(shape)
                if bad:
                    partial += 1
                    problems.append("kill %d: %s: %s" % (k, name, "; ".join(bad)))
            check = server.admin("check", check=False)
            if check.returncode != 0:
                problems.append("kill %d: check: %s" % (k, check.err.strip()))
            for lp in laptops:
                if lp.error:
                    raise lp.error
            start_on_port(server)
            self.assertEqual(problems, [], "\n".join(problems))
        relenv.join_workers(self, laptops, stop)
        # Convergence: every laptop syncs once more, then the merged view.
        t_last = time.monotonic()
        runs = [sync_until_ok(lp.dev) for lp in laptops]
        converge = time.monotonic() - t_last
        log = ledger.read()
        saved = [r for r in log if r["op"] == "add"]
        exported = export_records(co)
        counts = collections.Counter(r["id"] for r in exported)
        got = {r["id"]: (r["feed"], r.get("note")) for r in exported}
        want = {r["id"]: (feeds[r["dev"]], r["note"]) for r in saved}
        dup = sum(c - 1 for c in counts.values())
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        differ = sorted(i for i in want if i in got and got[i] != want[i])
        acks = collections.Counter(r["how"] for r in log if r["op"] == "ack")
        for lp in laptops:
            st = lp.dev.status()
            self.assertEqual(st["local_seq"], len(lp.ids))
            self.assertEqual(sdb.have(feeds[lp.dev.name]), len(lp.ids))
            self.assertEqual(st["server_have_seq"], len(lp.ids))
        check = server.admin("check").out
        syncs = sum((lp.syncs for lp in laptops), collections.Counter())
        figures_line("kill9-server", K=K, devices=DEVICES, saved=len(saved),
                     acked=sum(lp.acked for lp in laptops),
                     acks="exit0:%d/receipt:%d" % (acks["exit 0"], acks["receipt"]),
                     syncs="/".join("%d:%d" % kv for kv in sorted(syncs.items())),
                     lost=lost + len(missing), partial=partial, dup=dup,
                     merged="equal" if not (missing or extra or differ) else "DIFFERENT",
                     converge_s="%.1f" % converge, final_runs=max(runs),
                     runtime_s="%.0f" % (time.monotonic() - t0))
        self.assertEqual(missing, [], "saved records missing from the merged view")
        self.assertEqual(extra, [], "records in the merged view no laptop reported")
        self.assertEqual(differ, [], "records whose text or feed differ")
        self.assertEqual(dup, 0)
        self.assertIn("ok: %d entries" % (len(saved)), check)


if __name__ == "__main__":
    unittest.main(verbosity=2)
