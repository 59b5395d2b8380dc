"""Reliability row 1 — agent crash. kill -9 of `fieldsync add`, `import`, `sync` and of
fieldsyncd at random moments, K times (quick K=200, soak K=2000). The test keeps its
own ledger, written and fsynced before it goes on: every id `add` printed, every
import that said "imported N records". Then: every record reported saved is present, none is
duplicated, no import is half stored, `fieldsync verify` and PRAGMA integrity_check
pass; after one last clean sync the server holds every saved record exactly once
(a coordinator's pull and export, the server's counters and its own check).

One line of figures: `kill9-agent K=... saved=... lost=0 dup=0 integrity=ok ...`."""

import collections
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relenv  # noqa: E402
from relenv import (Proc, TempTestCase, binary, enrolled_device, export_records,  # noqa: E402
                    fieldsync_argv, figures_line, no_sanitizer_report, set_settings, sized)

K = sized(200, 2000)
# Kill moments are drawn uniformly below a bound per command (seconds). The bound
# starts near the time the command takes on the sanitized build and adapts: longer
# after a kill, shorter after a run that finished, so that about half the runs are
# killed — before, during and after their commits — however loaded the machine is.
DELAY = {"add": 0.07, "import": 0.15, "sync": 0.35, "daemon": 0.8}
ADAPT = 1.1
WEIGHTS = (("add", 45), ("import", 15), ("sync", 20), ("daemon", 20))
HAVE_DAEMON = os.path.exists(binary("fieldsyncd"))


def pick(rng, weights):
    total = sum(w for _, w in weights)
    x = rng.uniform(0, total)
    for name, w in weights:
        x -= w
        if x <= 0:
            return name
    return weights[-1][0]


class AgentCrashTest(TempTestCase):
    def test_kill9_agent(self):
        t0 = time.monotonic()
        rng, server, _ = relenv.row_start(self)
        dev = enrolled_device(self.tmp, server, name="laptop")
        co = enrolled_device(self.tmp, server, name="coordinator", role="coordinator")
        # Short timeouts and backoff, and small batches: many requests, many moments.
        set_settings(dev, connect_timeout_ms=2000, request_timeout_ms=10000, backoff_base_ms=20,
                     backoff_max_ms=200, batch_max_entries=40)
        weights = WEIGHTS if HAVE_DAEMON else tuple(w for w in WEIGHTS if w[0] != "daemon")
        if not HAVE_DAEMON:
            print("SKIP daemon part: %s is absent (not built yet); add, import and sync only"
                  % binary("fieldsyncd"), flush=True)
        ledger = relenv.row_ledger(self)
        kills = collections.Counter()
        runs = collections.Counter()
        retry_import = None  # a killed import, run again next time (as a person would)
        bound = dict(DELAY)
        rounds = 0
        while sum(kills.values()) < K:
            rounds += 1
            self.assertLess(rounds, 50 * K, "kills never land: the commands finish too fast")
            what = pick(rng, weights)
            tag = "r%d" % rounds
            if what == "add":
                note = "crash round %d" % rounds
                argv = fieldsync_argv(dev, "add", "interview", "--note", note,
                                      "--field", "round=%d" % rounds)
            elif what == "import":
                if retry_import:
                    itag, n, path = retry_import
                else:
                    itag, n = tag, rng.randint(20, 150)
                    path = os.path.join(self.tmp, itag + ".jsonl")
                    with open(path, "w", encoding="utf-8") as f:
                        f.write("\n".join(relenv.jsonl_rows(n, rng, itag)) + "\n")
                    ledger.add(op="import-try", tag=itag, n=n)
                argv = fieldsync_argv(dev, "import", path)
            elif what == "sync":
                argv = fieldsync_argv(dev, "sync", "--quiet")
            else:
                argv = [binary("fieldsyncd"), "--home", dev.home]
            p = Proc(self.tmp, argv, "p")
            if what == "daemon" and rng.random() < 0.5:
                # A record written while the daemon runs: its inotify trigger.
                note = "under daemon %d" % rounds
                q = dev.run("add", "interview", "--note", note, "--field", "round=%d" % rounds)
                self.assertEqual(q.returncode, 0, q.err)
                ledger.add(op="add", id=q.out.strip(), note=note)
            if what == "daemon":
                # The daemon never ends by itself: it is always killed.
                time.sleep(rng.uniform(0, DELAY["daemon"]))  # the random kill moment
                rc = p.kill9()
                self.assertTrue(p.killed, "fieldsyncd ended by itself (%d): %s" % (rc, p.err))
            else:
                rc = p.wait_or_kill(rng.uniform(0, bound[what]))
                step = ADAPT if p.killed else 1 / ADAPT
                bound[what] = min(10.0, max(0.01, bound[what] * step))
            err = p.err
            self.assertIsNone(no_sanitizer_report(err), err)
            if p.killed:
                kills[what] += 1
                self.assertEqual(rc, -9, err)
            else:
                runs[what] += 1
                if what == "import" and rc == 65 and "--again" in err and retry_import:
                    rc = 0  # the killed run had committed: the file is refused, not stored twice
                self.assertEqual(rc, 0, "%s exited %d: %s" % (what, rc, err))
            # Reported saved: an id line printed by add, or import's "imported N records",
            # whether or not the process lived on to exit.
            out = p.out
            if what == "add" and out.endswith("\n") and len(out.strip()) == 36:
                ledger.add(op="add", id=out.strip(), note=note)
            elif what == "import" and (rc == 0 or "imported %d records" % n in err):
                ledger.add(op="import", tag=itag, n=n)
            if what == "import":
                retry_import = (itag, n, path) if p.killed else None
            p.cleanup()
        # The last clean sync, with no daemon running.
        final = dev.run("sync")
        self.assertEqual(final.returncode, 0, final.err)
        self.check(server, dev, co, ledger, kills, runs, t0)

    def check(self, server, dev, co, ledger, kills, runs, t0):
        log = ledger.read()
        saved = [r for r in log if r["op"] == "add"]
        imported = {r["tag"]: r["n"] for r in log if r["op"] == "import"}
        tried = {r["tag"]: r["n"] for r in log if r["op"] == "import-try"}
        recs = dev.records()
        ids = [r["id"] for r in recs]
        counts = collections.Counter(ids)
        dup = sum(c - 1 for c in counts.values())
        notes = {r["id"]: r.get("note") for r in recs}
        lost = [r["id"] for r in saved if r["id"] not in counts]
        wrong = [r["id"] for r in saved if r["id"] in notes and notes[r["id"]] != r["note"]]
        by_tag = collections.Counter(r.get("fields", {}).get("batch") for r in recs)
        half = {t: by_tag.get(t, 0) for t, n in tried.items() if by_tag.get(t, 0) not in (0, n)}
        lost_imports = {t: by_tag.get(t, 0) for t, n in imported.items() if by_tag.get(t, 0) != n}
        v = dev.run("verify")
        db = dev.db()
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        db.close()
        st = dev.status()
        # The server: every record of this laptop exactly once, nothing else.
        feed = st["feed"]
        exported = [r for r in export_records(co) if r["feed"] == feed]
        ecounts = collections.Counter(r["id"] for r in exported)
        srv_dup = sum(c - 1 for c in ecounts.values())
        srv_missing = sorted(set(counts) - set(ecounts))
        srv_extra = sorted(set(ecounts) - set(counts))
        row = [d for d in server.devices() if d["feed"] == feed][0]
        stored = server.metrics()["fieldsync_entries_stored_total"]
        check = server.admin("check").out
        n_saved = len(saved) + sum(imported.values())
        figures_line("kill9-agent", K=sum(kills.values()),
                     kills="/".join("%s:%d" % (k, kills[k]) for k in ("add", "import", "sync",
                                                                       "daemon")),
                     finished=sum(runs.values()), saved=n_saved, records=len(ids),
                     lost=len(lost) + sum(n - by_tag.get(t, 0) for t, n in lost_imports.items()),
                     dup=dup + srv_dup, half_imports=len(half),
                     integrity="ok" if integrity == "ok" and v.returncode == 0 else "FAIL",
                     server_entries=row["have_seq"], stored_once=stored == row["have_seq"],
                     runtime_s="%.0f" % (time.monotonic() - t0))
        self.assertEqual(lost, [], "records reported saved are missing")
        self.assertEqual(wrong, [], "records reported saved have other content")
        self.assertEqual(lost_imports, {}, "imports reported done are missing records")
        self.assertEqual(half, {}, "imports half stored")
        self.assertEqual(dup, 0, "duplicated records in the store")
        self.assertEqual(v.returncode, 0, v.err)
        self.assertEqual(integrity, "ok")
        self.assertEqual(st["pending_entries"], 0)
        self.assertEqual(srv_dup, 0, "records twice on the server")
        self.assertEqual(srv_missing, [], "saved records the server lacks after the last sync")
        self.assertEqual(srv_extra, [], "records on the server this laptop does not hold")
        self.assertEqual(row["have_seq"], st["local_seq"])
        self.assertEqual(stored, st["local_seq"], "the server stored entries more than once")
        self.assertIn("ok: %d entries" % st["local_seq"], check)
        for r in saved:
            self.assertIn(r["id"], ecounts)


if __name__ == "__main__":
    unittest.main(verbosity=2)
