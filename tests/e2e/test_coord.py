"""Core 3 end to end: coordinators pull the project per feed, verify it
themselves, correct and resolve, researchers see corrections, exports agree
everywhere and round-trip; authorisation holds."""

import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from fsenv import (BIN, RECORDS_1K, Device, Server, TempTestCase,  # noqa: E402
                   enrolled_device, feed_of, load_jsonl)

FSTOOL = os.path.join(BIN, "tests", "tools", "fstool")
META = ("id", "state", "gen", "feed", "synced", "conflicts")


def content_of(rec):
    return {k: v for k, v in rec.items() if k not in META}


def jsonl(text):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


class CoordTest(TempTestCase):
    def setUp(self):
        super().setUp()
        self.server = Server(self.tmp).start()
        self.rng = random.Random(int(os.environ.get("FS_SEED", "2026")))

    def tearDown(self):
        self.server.stop()
        super().tearDown()

    def server_export(self, coord, fmt="jsonl", query=""):
        target = "/v1/projects/demo/records.%s%s" % (fmt, query)
        auth = os.path.join(self.tmp, "auth.txt")
        subprocess.run([FSTOOL, coord.home, "0", "0", auth, "auth", self.server.key, target],
                       check=True)
        with open(auth) as f:
            header = f.read()
        status, body = self.server.request("GET", target, headers={"Authorization": header})
        self.assertEqual(status, 200, body[:200])
        return body.decode()

    def sync_all(self, devs):
        order = list(devs)
        self.rng.shuffle(order)
        for d in order:
            d.ok("config", "set", "batch_max_entries", str(self.rng.choice([1, 7, 50, 400, 5000])))
            d.ok("sync")

    def test_pull_correct_resolve_export(self):
        src = load_jsonl(RECORDS_1K)
        # Notes that test every CSV and JSON corner.
        for i, o in enumerate(src[:30]):
            o["note"] = ['comma, "quote" and\nnewline', "=SUM(A1:A9) 宝坻区", "tab\there\r\nCRLF",
                         "  leading and trailing  ", "@mention +plus -minus"][i % 5] + " #%d" % i
        researchers = []
        ledger = {}
        for n in range(3):
            dev = enrolled_device(self.tmp, self.server, name="r%d" % n)
            path = os.path.join(self.tmp, "r%d.jsonl" % n)
            with open(path, "w", encoding="utf-8") as f:
                for o in src[n * 300:(n + 1) * 300]:
                    f.write(json.dumps(o, ensure_ascii=False) + "\n")
            dev.ok("import", path)
            for r in dev.records():
                ledger[r["id"]] = content_of(r)
            researchers.append(dev)
        c1 = enrolled_device(self.tmp, self.server, name="c1", role="coordinator")
        c2 = enrolled_device(self.tmp, self.server, name="c2", role="coordinator")
        c1.ok("config", "set", "pull_page", "50")
        c2.ok("config", "set", "pull_page", "1000")
        # Researchers edit and delete a few of their own.
        for dev in researchers:
            recs = dev.records()
            for r in self.rng.sample(recs, 5):
                note = "edited by owner: %s, \"again\"" % r["id"][-4:]
                dev.ok("edit", r["id"], "--note", note)
                ledger[r["id"]]["note"] = note
            for r in self.rng.sample(recs, 3):
                if r["id"] in ledger and ledger[r["id"]]["note"].startswith("edited"):
                    continue
                dev.ok("rm", r["id"])
                del ledger[r["id"]]
        self.sync_all(researchers)
        c2.ok("pull")  # an early, partial view
        c1.ok("pull")
        r0, r1, r2 = researchers
        x = r0.records()[10]["id"]
        y = r1.records()[20]["id"]
        z = r2.records()[30]["id"]
        # A concurrent researcher/coordinator edit of X.
        r0.ok("edit", x, "--note", "owner's version")
        c1.ok("edit", x, "--note", "coordinator's version")
        # A delete racing an edit of Y.
        r1.ok("rm", y)
        c1.ok("edit", y, "--note", "kept by the coordinator")
        # A correction of Z that its owner will see.
        c1.ok("edit", z, "--field", "topic=corrected topic")
        self.sync_all(researchers + [c1])
        c1.ok("pull")
        shown = json.loads(c1.ok("show", x, "--json").out)
        self.assertEqual(shown["conflicts"], 1)
        mine = [rv for rv in shown["revisions"]
                if rv["feed"] == feed_of(c1) and rv["state"] in ("winner", "conflict")]
        self.assertEqual(len(mine), 1)
        self.assertIn(x[:8], c1.ok("list", "--conflicts").out)
        c1.ok("resolve", x, "--keep", mine[0]["rev"][:12])
        ledger[x]["note"] = "coordinator's version"
        ledger[y]["note"] = "kept by the coordinator"
        c1.ok("sync")
        # The owner of Z syncs, sees the correction, edits on top: no conflict.
        r2.ok("sync")
        self.assertEqual(r2.records()[30]["fields"]["topic"], "corrected topic")
        r2.ok("edit", z, "--note", "owner after the correction")
        ledger[z]["fields"]["topic"] = "corrected topic"
        ledger[z]["note"] = "owner after the correction"
        self.sync_all(researchers)
        c1.ok("pull")
        c2.ok("pull")
        e1 = c1.ok("export", "--format", "jsonl").out
        e2 = c2.ok("export", "--format", "jsonl").out
        es = self.server_export(c1)
        self.assertEqual(e1, e2, "two coordinators disagree")
        self.assertEqual(e1, es, "the server's merged view disagrees with a coordinator's")
        got = {r["id"]: r for r in jsonl(e1)}
        self.assertEqual(set(got), set(ledger))
        for rid, want in ledger.items():
            rec = got[rid]
            self.assertEqual(rec["conflicts"], [], rid)
            self.assertEqual({k: v for k, v in rec.items() if k not in ("id", "gen", "feed",
                                                                         "conflicts")}, want)
        self.assertIn("ok:", c1.ok("verify").out)
        self.assertIn("ok:", r2.ok("verify").out)
        # CSV read back by a CSV reader round-trips every value.
        text = c1.ok("export", "--format", "csv").stdout.decode("utf-8")
        self.assertFalse(text.startswith("\ufeff"))
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        self.assertEqual(len(rows), len(ledger))
        for row in rows:
            want = ledger[row["id"]]
            self.assertEqual(row["note"], want.get("note", ""))
            self.assertEqual(row["kind"], want["kind"])
            self.assertEqual(row["region"], want["site"]["region"])
            self.assertEqual(float(row["lat"]), want["site"]["lat"])
            self.assertEqual(float(row["lon"]), want["site"]["lon"])
            for k, v in want.get("fields", {}).items():
                self.assertEqual(row["field:" + k], v)
        formula = [r for r in rows if r["note"].startswith("=")]
        self.assertTrue(formula)
        xl = c1.ok("export", "--format", "csv", "--excel").stdout.decode("utf-8")
        self.assertTrue(xl.startswith("\ufeff"))
        xrows = {r["id"]: r for r in csv.DictReader(io.StringIO(xl[1:], newline=""))}
        for r in formula:
            self.assertEqual(xrows[r["id"]]["note"], "'" + r["note"])
        geo = json.loads(c1.ok("export", "--format", "geojson").out)
        self.assertEqual(len(geo["features"]), len(ledger))
        f0 = geo["features"][0]
        self.assertEqual(f0["geometry"]["coordinates"],
                         [ledger[f0["id"]]["site"]["lon"], ledger[f0["id"]]["site"]["lat"]])

    def test_interrupted_pull_resumes_to_the_same_store(self):
        devs = []
        for n in range(2):
            dev = enrolled_device(self.tmp, self.server, name="r%d" % n)
            dev.ok("import", RECORDS_1K)
            dev.ok("sync")
            devs.append(dev)
        ref = enrolled_device(self.tmp, self.server, name="ref", role="coordinator")
        ref.ok("pull")
        cut = enrolled_device(self.tmp, self.server, name="cut", role="coordinator")
        cut.ok("config", "set", "pull_page", "20")
        kills = 0
        for _ in range(15):
            p = subprocess.Popen([os.path.join(BIN, "fieldsync"), "--home", cut.home, "pull",
                                  "--quiet"], stderr=subprocess.DEVNULL)
            try:
                p.wait(timeout=self.rng.uniform(0.05, 0.4))
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
        self.assertGreater(kills, 0)
        cut.ok("pull")
        self.assertEqual(cut.ok("export", "--format", "jsonl").out,
                         ref.ok("export", "--format", "jsonl").out)
        self.assertIn("ok: 2000 entries", cut.ok("verify").out)

    def test_tampered_entry_is_refused_and_named(self):
        dev = enrolled_device(self.tmp, self.server, name="r0")
        for i in range(40):
            dev.add("interview", "--note", "n%d" % i)
        dev.ok("sync")
        self.server.stop()
        import sqlite3
        db = sqlite3.connect(os.path.join(self.server.data, "server.db"))
        content = bytearray(db.execute("SELECT content FROM entries WHERE seq = 17").fetchone()[0])
        content[-4] ^= 0x01
        db.execute("UPDATE entries SET content = ? WHERE seq = 17", (bytes(content),))
        db.commit()
        db.close()
        self.server.start()
        co = enrolled_device(self.tmp, self.server, name="co", role="coordinator")
        p = co.run("pull")
        self.assertOneLineError(p, 76)
        self.assertIn(feed_of(dev)[:16], p.err)
        self.assertIn("17", p.err)
        # Nothing of the refused batch was kept.
        db = co.db()
        n = db.execute("SELECT count(*) FROM entries WHERE feed = ?",
                       (bytes.fromhex(feed_of(dev)),)).fetchone()[0]
        db.close()
        self.assertLess(n, 17)

    def test_authorisation(self):
        r = enrolled_device(self.tmp, self.server, name="r0")
        r.add("interview", "--note", "x")
        r.ok("sync")
        for args in (["pull"], ["devices"], ["token", "create", "--role", "researcher"],
                     ["device", "revoke", feed_of(r)]):
            p = r.run(*args)
            self.assertOneLineError(p, 77)
        other = enrolled_device(self.tmp, self.server, name="o", project="other",
                                role="coordinator")
        # Its own project is empty of demo's devices; demo's data stays closed.
        other.ok("pull")
        self.assertEqual(other.records(), [])
        p = other.run("device", "revoke", feed_of(r))
        self.assertEqual(p.returncode, 65, p.err)
        for target in ("/v1/projects/demo/feeds", "/v1/feeds/%s/entries?from=1" % feed_of(r),
                       "/v1/projects/demo/records.csv", "/v1/feeds/%s/corrections" % feed_of(r)):
            auth = os.path.join(self.tmp, "auth.txt")
            subprocess.run([FSTOOL, other.home, "0", "0", auth, "auth", self.server.key, target],
                           check=True)
            with open(auth) as f:
                header = f.read()
            status, _ = self.server.request("GET", target, headers={"Authorization": header})
            self.assertEqual(status, 403, target)
        # A coordinator's researcher token works; a revoked device stops.
        co = enrolled_device(self.tmp, self.server, name="co", role="coordinator")
        tok = co.ok("token", "create", "--role", "researcher", "--name", "new").out.strip()
        new = Device(self.tmp, "new")
        new.init()
        new.ok("enroll", self.server.url, "--token-file", "-", input=tok)
        co.ok("device", "revoke", feed_of(new))
        new.add("interview", "--note", "y")
        self.assertOneLineError(new.run("sync"), 77)
        devs = json.loads(co.ok("devices", "--json").out)
        self.assertEqual({d["name"] for d in devs}, {"r0", "co", "new"})
        self.assertTrue([d for d in devs if d["name"] == "new"][0]["revoked"])



class ServerTestCase(TempTestCase):
    """A started server for each test."""

    def setUp(self):
        super().setUp()
        self.server = Server(self.tmp).start()

    def tearDown(self):
        self.server.stop()
        super().tearDown()


class HeartbeatTest(ServerTestCase):
    """A laptop's signed line about what it holds, carried by other means;
    the completeness report shows what the server still lacks."""

    def post(self, body):
        status, data = self.server.request("POST", "/v1/heartbeats", body=body)
        return status, json.loads(data)

    def report(self):
        return json.loads(self.server.admin("completeness", "--json").out)

    def line(self, dev):
        p = dev.ok("heartbeat")
        self.assertEqual(p.out.count("\n"), 1)
        line = p.out.strip()
        self.assertEqual(len(line), 194)
        return line

    def test_heartbeat_and_completeness(self):
        r = enrolled_device(self.tmp, self.server, name="r1")
        for i in range(3):
            r.add("interview", "--note", "n%d" % i)
        r.ok("sync")
        rep = self.report()
        self.assertTrue(rep["complete"])
        self.assertEqual(rep["feeds"][0]["attested_seq"], 0)
        self.assertIsNone(rep["feeds"][0]["attested_at"])
        at3 = self.line(r)
        r.add("interview", "--note", "n3")
        r.add("interview", "--note", "n4")
        at5 = self.line(r)
        # Carried to the server by anyone: no Authorization header.
        status, body = self.post(at5.encode() + b"\r\n")
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {"feed": feed_of(r), "attested_seq": 5})
        rep = self.report()
        self.assertFalse(rep["complete"])
        self.assertEqual((rep["devices"], rep["incomplete"], rep["lacking"]), (1, 1, 2))
        f = rep["feeds"][0]
        self.assertEqual((f["have_seq"], f["attested_seq"], f["lacking"]), (3, 5, 2))
        self.assertTrue(f["attested_at"].startswith("20"))
        text = self.server.admin("completeness").out
        self.assertIn("lacks=2", text)
        self.assertIn("incomplete: 1 of 1 device; 2 entries", text)
        # The coordinator sees it in the signed listing too.
        co = enrolled_device(self.tmp, self.server, name="co", role="coordinator")
        devs = {d["name"]: d for d in json.loads(co.ok("devices", "--json").out)}
        self.assertEqual(devs["r1"]["attested_seq"], 5)
        self.assertIn("lacks=2", co.ok("devices").out)
        # An older line, or the same one again, lowers nothing.
        for old in (at3, at5):
            status, _ = self.post(old.encode())
            self.assertEqual(status, 200)
        self.assertEqual([f["attested_seq"] for f in self.report()["feeds"] if f["name"] == "r1"],
                         [5])
        # By hand, as an argument or on stdin.
        p = self.server.admin("heartbeat", at5)
        self.assertIn("holds 5 entries; the server has 3, 2 to come", p.out)
        p = subprocess.run([os.path.join(BIN, "fieldsync-server"), "heartbeat", "-", "--data",
                            self.server.data], input=(at5 + "\n").encode(), capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        r.ok("sync")
        rep = self.report()
        self.assertTrue(rep["complete"])
        self.assertIn("complete: 2 devices", self.server.admin("completeness").out)
        self.assertEqual(len(rep["feeds"]), 2)

    def test_what_is_refused_changes_nothing(self):
        r = enrolled_device(self.tmp, self.server, name="r1")
        r.add("interview", "--note", "n0")
        r.ok("sync")
        good = self.line(r)
        before = self.report()
        flipped = good[:50] + ("A" if good[50] != "A" else "B") + good[51:]
        cases = [
            (flipped, 400, ("malformed", "bad_signature"), 65),
            (good + "A", 400, ("malformed",), 65),
            (good[:-1], 400, ("malformed",), 65),
            (good[:20] + "+" + good[21:], 400, ("malformed",), 65),
        ]
        for body, status, codes, exit_code in cases:
            st, ans = self.post(body.encode())
            self.assertEqual(st, status, body)
            self.assertIn(ans["error"], codes)
            p = self.server.admin("heartbeat", body, check=False)
            self.assertEqual(p.returncode, exit_code, p.err)
            self.assertEqual(len([l for l in p.err.splitlines() if l.strip()]), 1, p.err)
        # A device that never enrolled here; a revoked one.
        stranger = Device(self.tmp, "stranger")
        stranger.init()
        stranger.add("interview", "--note", "s")
        st, ans = self.post(self.line(stranger).encode())
        self.assertEqual((st, ans["error"]), (403, "unknown_feed"))
        self.assertEqual(self.server.admin("heartbeat", self.line(stranger),
                                           check=False).returncode, 65)
        lost = enrolled_device(self.tmp, self.server, name="lost")
        lost.add("interview", "--note", "l")
        lost.ok("sync")
        self.server.admin("device", "revoke", feed_of(lost))
        lost.add("interview", "--note", "l2")
        st, ans = self.post(self.line(lost).encode())
        self.assertEqual((st, ans["error"]), (403, "revoked"))
        self.assertEqual(self.server.admin("heartbeat", self.line(lost), check=False).returncode,
                         77)
        after = self.report()
        self.assertEqual([f for f in after["feeds"] if f["name"] == "r1"], before["feeds"])
        self.assertEqual([f["attested_seq"] for f in after["feeds"]], [0, 0])
        # Other methods are not served.
        st, _ = self.server.request("GET", "/v1/heartbeats")
        self.assertIn(st, (404, 405))

    def test_a_copied_store_is_flagged_as_a_fork(self):
        r = enrolled_device(self.tmp, self.server, name="r1")
        r.add("interview", "--note", "n0")
        r.ok("sync")
        clone = Device(self.tmp, "clone")
        shutil.copytree(r.home, clone.home)
        r.add("interview", "--note", "original")
        r.ok("sync")
        clone.add("interview", "--note", "copy")
        st, ans = self.post(self.line(clone).encode())
        self.assertEqual((st, ans["error"], ans["seq"]), (409, "fork", 2))
        f = self.report()["feeds"][0]
        self.assertTrue(f["fork"])
        self.assertEqual(f["fork_seq"], 2)
        self.assertEqual(f["attested_seq"], 0)
        self.assertEqual(self.server.admin("heartbeat", self.line(clone), check=False).returncode,
                         65)

    def test_a_damaged_head_is_not_attested(self):
        r = Device(self.tmp, "r1")
        r.init()
        for i in range(2):
            r.add("interview", "--note", "n%d" % i)
        db = r.db()
        db.execute("UPDATE feeds SET head = zeroblob(32) WHERE is_self = 1")
        db.commit()
        db.close()
        p = r.run("heartbeat")
        self.assertOneLineError(p, 65)
        self.assertIn("damaged", p.err)
        self.assertEqual(p.out, "")


class BundleTest(ServerTestCase):
    """A laptop that never meets a link: its entries go on a USB stick, sealed,
    and reach the server through another laptop or the admin, exactly once."""

    MARK = "FIELD-NOTE-MARK-7"

    def have(self, dev):
        return [d["have_seq"] for d in self.server.devices() if d["feed"] == feed_of(dev)][0]

    def test_bundle_relay_import(self):
        far = enrolled_device(self.tmp, self.server, name="far")
        near = enrolled_device(self.tmp, self.server, name="near")
        far.ok("config", "set", "batch_max_entries", "7")
        for i in range(30):
            far.add("interview", "--note", "%s %d" % (self.MARK, i), "--site", "宝坻区")
        f1 = os.path.join(self.tmp, "usb", "far-1.fsb")
        os.makedirs(os.path.dirname(f1))
        p = far.ok("bundle", f1)
        self.assertIn("bundled entries 1 to 30", p.err)
        self.assertEqual(os.stat(f1).st_mode & 0o777, 0o600)
        with open(f1, "rb") as f:
            data = f.read()
        self.assertEqual(data.count(b"FSB1"), 5)  # 30 entries, 7 a batch
        self.assertNotIn(self.MARK.encode(), data)
        self.assertNotIn("宝坻区".encode(), data)
        # Carried by another researcher; again; the server holds each entry once.
        for _ in range(2):
            p = near.ok("relay", f1)
            self.assertIn("the server holds 30 entries", p.err)
        self.assertEqual(self.have(far), 30)
        self.assertIn("ok: 30 entries", self.server.admin("check").out)
        # The far laptop, when it does meet the link, sends nothing and is synced.
        p = far.ok("sync")
        self.assertIn("0 entries sent", p.err)
        st = far.status()
        self.assertEqual((st["server_have_seq"], st["pending_entries"]), (30, 0))
        self.assertEqual(far.records("--unsynced"), [])
        p = far.ok("bundle", os.path.join(self.tmp, "none.fsb"))
        self.assertIn("nothing to bundle", p.err)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "none.fsb")))
        # Two more, imported by the admin while the server is down; twice.
        far.add("interview", "--note", "31")
        far.add("interview", "--note", "32")
        f2 = os.path.join(self.tmp, "far-2.fsb")
        self.assertIn("bundled entries 31 to 32", far.ok("bundle", f2).err)
        self.server.stop()
        for _ in range(2):
            p = self.server.admin("import", f2)
            self.assertIn("the server holds 32 of its entries", p.out)
        self.server.start()
        self.assertEqual(self.have(far), 32)
        # --all: everything again, still once.
        fall = os.path.join(self.tmp, "far-all.fsb")
        self.assertIn("bundled entries 1 to 32", far.ok("bundle", fall, "--all").err)
        near.ok("relay", fall)
        self.assertEqual(self.have(far), 32)
        self.assertIn("ok: 32 entries", self.server.admin("check").out)

    def test_what_is_refused_changes_nothing(self):
        far = enrolled_device(self.tmp, self.server, name="far")
        near = enrolled_device(self.tmp, self.server, name="near")
        far.add("interview", "--note", "one")
        far.add("interview", "--note", "two")
        good = os.path.join(self.tmp, "good.fsb")
        far.ok("bundle", good)
        with open(good, "rb") as f:
            data = f.read()
        bad = {
            "flipped": data[:200] + bytes([data[200] ^ 1]) + data[201:],
            "truncated": data[:-10],
            "garbage": b"not a bundle at all\n",
            "empty": b"",
            "trailing": data + b"x",
        }
        for name, body in bad.items():
            path = os.path.join(self.tmp, name + ".fsb")
            with open(path, "wb") as f:
                f.write(body)
            p = near.run("relay", path)
            self.assertOneLineError(p, 65)
            p = self.server.admin("import", path, check=False)
            self.assertEqual(p.returncode, 65, (name, p.err))
            self.assertEqual(len([l for l in p.err.splitlines() if l.strip()]), 1, p.err)
            self.assertEqual(self.have(far), 0, name)
        # A device the server does not know (never enrolled there).
        other = Server(self.tmp, name="server2").start()
        try:
            stranger = enrolled_device(self.tmp, other, name="stranger")
            stranger.add("interview", "--note", "x")
            sb = os.path.join(self.tmp, "stranger.fsb")
            stranger.ok("bundle", sb)
        finally:
            other.stop()
        self.assertEqual(self.server.admin("import", sb, check=False).returncode, 77)
        self.assertOneLineError(near.run("relay", sb), 77)
        # A revoked device's bundle.
        self.server.admin("device", "revoke", feed_of(far))
        self.assertOneLineError(near.run("relay", good), 77)
        self.assertEqual(self.server.admin("import", good, check=False).returncode, 77)
        self.assertEqual(self.have(far), 0)
        # Not enrolled: nothing to seal to.
        alone = Device(self.tmp, "alone")
        alone.init()
        alone.add("interview", "--note", "x")
        self.assertOneLineError(alone.run("bundle", os.path.join(self.tmp, "a.fsb")), 77)
        self.assertIn("ok:", self.server.admin("check").out)

if __name__ == "__main__":
    unittest.main(verbosity=2)
