"""Core 1 end to end: init, add, import, list, show, edit, rm, verify, bad input,
and kill -9 at random moments — with the real fieldsync binary."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from fsenv import RECORDS_1K, Device, TempTestCase, binary, load_jsonl  # noqa: E402


def content_of(rec):
    """The content keys of a `list --json` record."""
    return {k: v for k, v in rec.items()
            if k not in ("id", "state", "gen", "feed", "synced", "conflicts")}


class CoreTest(TempTestCase):
    def setUp(self):
        super().setUp()
        self.dev = Device(self.tmp)
        self.dev.init()

    def test_import_edit_delete_verify(self):
        src = load_jsonl(RECORDS_1K)
        self.dev.ok("import", RECORDS_1K)
        recs = self.dev.records()
        self.assertEqual(len(recs), 1000)
        # Every imported record is there, byte for byte as content (order of
        # creation is the order of the file).
        for want, got in zip(src, recs):
            self.assertEqual(want, content_of(got))
        # Edit some, delete some; the ledger says what must remain.
        ledger = {r["id"]: content_of(r) for r in recs}
        rng = random.Random(7)
        ids = list(ledger)
        for rid in rng.sample(ids, 25):
            note = "edited %s 修改 \"quoted\", comma" % rid[-6:]
            self.dev.ok("edit", rid, "--note", note, "--field", "topic=revised")
            ledger[rid]["note"] = note
            ledger[rid]["fields"]["topic"] = "revised"
        for rid in rng.sample(ids, 20):
            if rid in ledger:
                self.dev.ok("rm", rid[:18])
                del ledger[rid]
        now = {r["id"]: content_of(r) for r in self.dev.records()}
        self.assertEqual(now, ledger)
        p = self.dev.ok("verify")
        self.assertIn("ok:", p.out)
        st = self.dev.status()
        self.assertEqual(st["local_seq"], 1000 + 25 + 20)
        self.assertEqual(st["pending_entries"], st["local_seq"])

    def test_import_twice_stores_nothing(self):
        self.dev.ok("import", RECORDS_1K)
        before = self.dev.status()["local_seq"]
        p = self.dev.run("import", RECORDS_1K)
        self.assertOneLineError(p, 65)
        self.assertIn("--again", p.err)
        self.assertEqual(self.dev.status()["local_seq"], before)
        # A file whose rows carry ids already stored with the same content:
        # every row is skipped, even with --again.
        recs = self.dev.records()[:10]
        path = os.path.join(self.tmp, "with-ids.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for r in recs:
                row = content_of(r)
                row["id"] = r["id"]
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        p = self.dev.ok("import", path)
        self.assertIn("skipped 10", p.err)
        self.assertEqual(self.dev.status()["local_seq"], before)
        self.dev.ok("import", "--again", path)
        self.assertEqual(self.dev.status()["local_seq"], before)
        # The same id with other content is refused, and nothing is stored.
        with open(path, "a", encoding="utf-8") as f:
            row = content_of(recs[0])
            row["id"] = recs[0]["id"]
            row["note"] = "different"
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        p = self.dev.run("import", path)
        self.assertOneLineError(p, 65)
        self.assertIn("line 11", p.err)
        self.assertEqual(self.dev.status()["local_seq"], before)

    def test_flipped_byte_is_named_by_verify(self):
        self.dev.ok("import", RECORDS_1K)
        db = self.dev.db()
        feed = db.execute("SELECT feed FROM feeds WHERE is_self = 1").fetchone()[0]
        entry = bytearray(db.execute("SELECT entry FROM entries WHERE feed = ? AND seq = 500",
                                     (feed,)).fetchone()[0])
        entry[40] ^= 0x01
        db.execute("UPDATE entries SET entry = ? WHERE feed = ? AND seq = 500",
                   (bytes(entry), feed))
        db.commit()
        db.close()
        p = self.dev.run("verify")
        self.assertEqual(p.returncode, 65, p.err)
        self.assertIn("seq 500", p.err)
        self.assertNotIn("seq 499:", p.err)

    def test_flipped_content_is_named_by_verify(self):
        self.dev.ok("import", RECORDS_1K)
        db = self.dev.db()
        content = bytearray(db.execute("SELECT content FROM entries WHERE seq = 321").fetchone()[0])
        content[-3] ^= 0x20
        db.execute("UPDATE entries SET content = ? WHERE seq = 321", (bytes(content),))
        db.commit()
        db.close()
        p = self.dev.run("verify")
        self.assertEqual(p.returncode, 65)
        self.assertIn("seq 321", p.err)

    def test_damaged_view_is_named_by_verify(self):
        ids = [self.dev.add("observation", "--note", "n%d" % i) for i in range(4)]
        self.dev.ok("edit", ids[1], "--note", "changed")
        self.dev.ok("add", "interview", "--note", "later")
        self.dev.ok("verify")
        # Each column of a records row, damaged in turn (last_own_seq both ways: a
        # lowered one would make list and status call an unsent change synced).
        for col, value in (("state", 2), ("winner_seq", 1), ("gen", 5), ("kind", "x"),
                           ("n_conflicts", 1), ("last_own_seq", 1), ("last_own_seq", 9),
                           ("last_own_seq", 0)):
            db = self.dev.db()
            before = db.execute("SELECT %s FROM records WHERE id = ?" % col,
                                (ids[1],)).fetchone()[0]
            db.execute("UPDATE records SET %s = ? WHERE id = ?" % col, (value, ids[1]))
            db.commit()
            p = self.dev.run("verify")
            self.assertEqual(p.returncode, 65, "%s=%r: %s" % (col, value, p.err))
            self.assertIn("record %s: the records view differs" % ids[1], p.err)
            self.assertNotIn(ids[0], p.err)
            db.execute("UPDATE records SET %s = ? WHERE id = ?" % col, (before, ids[1]))
            db.commit()
            db.close()
        self.dev.ok("verify")

    def test_key_of_another_store_is_refused(self):
        rid = self.dev.add("observation", "--note", "kept")
        other = Device(self.tmp, "other")
        other.init()
        with open(os.path.join(self.dev.home, "key"), "rb") as f:
            mine = f.read()
        with open(os.path.join(other.home, "key"), "rb") as f:
            theirs = f.read()
        db_before = open(os.path.join(self.dev.home, "store.db"), "rb").read()
        with open(os.path.join(self.dev.home, "key"), "wb") as f:
            f.write(theirs)
        for args in (("verify",), ("add", "observation", "--note", "x"), ("list",)):
            p = self.dev.run(*args)
            self.assertOneLineError(p, 65)
            self.assertIn("does not belong to its store", p.err)
            self.assertIn("nothing was changed", p.err)
        self.assertEqual(open(os.path.join(self.dev.home, "store.db"), "rb").read(), db_before)
        with open(os.path.join(self.dev.home, "key"), "wb") as f:
            f.write(mine)
        self.dev.ok("verify")
        self.assertEqual([r["id"] for r in self.dev.records()], [rid])

    def test_text_and_numbers_round_trip(self):
        note = "Officials in 宝坻区 and 雄安新区 said: \"move\", then\nnew line\ttab ∑ 🙂"
        rid = self.dev.add("interview", "--site", "Xiongan New Area, Rongcheng",
                           "--region", "河北省/雄安新区", "--gps", "39.717,117.309,8",
                           "--note", "-", input=note)
        shown = json.loads(self.dev.ok("show", rid, "--json").out)
        self.assertEqual(shown["content"]["note"], note)
        self.assertEqual(shown["content"]["site"]["region"], "河北省/雄安新区")
        # Numbers come back as the shortest decimal: the stored bytes say 39.717.
        raw = self.dev.db().execute("SELECT content FROM entries").fetchone()[0].decode()
        self.assertIn('"lat":39.717,"lon":117.309,"acc_m":8', raw)
        self.assertIn("宝坻区", raw)

    def test_prefix_ids_and_show(self):
        a = self.dev.add("observation", "--note", "first")
        p = self.dev.run("show", a[:3])
        self.assertOneLineError(p, 64)
        self.assertIn(a, self.dev.ok("show", a[:20]).out)
        p = self.dev.run("show", "ffffffff")
        self.assertOneLineError(p, 65)

    def test_bad_input_is_refused_and_nothing_stored(self):
        secret = "NOTE-MARKER-7f3a"
        cases = [
            (["add", "interview", "--gps", "91,200", "--note", secret], 65, "latitude"),
            (["add", "site visit", "--note", secret], 65, "kind"),
            (["add", "Interview", "--note", secret], 65, "kind"),
            (["add", "interview", "--gps", "abc", "--note", secret], 65, "--gps"),
            (["add", "interview", "--at", "yesterday", "--note", secret], 65, "--at"),
            (["add", "interview", "--field", "9bad=" + secret], 65, "field"),
            (["add", "interview", "--bogus"], 64, "unknown option"),
        ]
        for args, code, word in cases:
            p = self.dev.run(*args)
            self.assertOneLineError(p, code)
            self.assertIn(word, p.err)
            self.assertNotIn(secret, p.err + p.out)
        # A note over the limit: the limit is stated.
        p = self.dev.run("add", "interview", "--note", "-", input="x" * (65536 + 1))
        self.assertOneLineError(p, 65)
        self.assertIn("65536", p.err)
        # Invalid UTF-8.
        p = self.dev.run("add", "interview", "--note", "-", input=b"bad \xff\xfe bytes")
        self.assertOneLineError(p, 65)
        self.assertIn("UTF-8", p.err)
        self.assertEqual(self.dev.status()["local_seq"], 0)
        # A malformed import line is named, and nothing from the file is stored.
        path = os.path.join(self.tmp, "bad.jsonl")
        lines = open(RECORDS_1K, encoding="utf-8").read().splitlines()[:5]
        lines[2] = lines[2].replace('"kind": "', '"kind": "' + secret + ' ')
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        p = self.dev.run("import", path)
        self.assertOneLineError(p, 65)
        self.assertEqual(re.findall(r"line \d+", p.err), ["line 3"], p.err)
        self.assertNotIn(secret, p.err)
        with open(path, "w", encoding="utf-8") as f:
            good = open(RECORDS_1K, encoding="utf-8").read().splitlines()[:3]
            f.write("\n".join(good) + '\n{"kind": "interview", "observed_at": "x"\n')
        p = self.dev.run("import", path)
        self.assertOneLineError(p, 65)
        self.assertEqual(re.findall(r"line \d+", p.err), ["line 4"], p.err)
        self.assertEqual(self.dev.status()["local_seq"], 0)
        # Rows are read ahead on a second thread: an error far into a long file
        # still stops the import at its own line, with the rows read ahead freed.
        lines = open(RECORDS_1K, encoding="utf-8").read().splitlines()[:400]
        lines[299] = '{"kind": "interview", "observed_at": "never"}'
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        p = self.dev.run("import", path)
        self.assertOneLineError(p, 65)
        self.assertEqual(re.findall(r"line \d+", p.err), ["line 300"], p.err)
        self.assertEqual(self.dev.status()["local_seq"], 0)
        # And a store-side refusal (an id held with other content) at row 200 of a CSV.
        csv_path = os.path.join(self.tmp, "bad.csv")
        first = self.dev.ok("add", "observation", "--note", "held").out.strip()
        with open(csv_path, "w", encoding="utf-8", newline="") as f:
            f.write("id,kind,observed_at,note\r\n")
            for i in range(2, 400):
                rid = first if i == 200 else ""
                f.write("%s,observation,2026-11-28T10:00:00+08:00,row %d\r\n" % (rid, i))
        p = self.dev.run("import", csv_path)
        self.assertOneLineError(p, 65)
        self.assertEqual(re.findall(r"row \d+", p.err), ["row 200"], p.err)
        self.assertEqual(self.dev.status()["local_seq"], 1)

    def test_csv_import(self):
        path = os.path.join(self.tmp, "rows.csv")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("id,kind,gen,observed_at,author,site,region,lat,lon,acc_m,note,attachments,"
                    "feed,conflicts,field:topic\r\n")
            f.write(',interview,,2026-11-28T09:30:00+08:00,Ye T.,"Baodi, Science Town",'
                    '天津市/宝坻区,39.717,117.309,8,"He said ""no"",\nthen left",,,,transfer\r\n')
            f.write(",observation,,2026-11-28T10:00:00+08:00,,,,,,,plain,,,,\r\n")
        self.dev.ok("import", path)
        recs = self.dev.records()
        self.assertEqual(len(recs), 2)
        self.assertEqual(recs[0]["note"], 'He said "no",\nthen left')
        self.assertEqual(recs[0]["site"], {"name": "Baodi, Science Town", "region": "天津市/宝坻区",
                                           "lat": 39.717, "lon": 117.309, "acc_m": 8})
        self.assertEqual(recs[0]["fields"], {"topic": "transfer"})
        self.assertNotIn("fields", recs[1])

    def test_editor(self):
        script = os.path.join(self.tmp, "ed.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nsed -i 's/^site: .*/site: Edited Site/' \"$1\"\n"
                    "printf 'note line one\\n第二行\\n' >> \"$1\"\n")
        os.chmod(script, 0o755)
        rid = self.dev.add("interview", "--note", "start")
        self.dev.ok("edit", rid, env={"FIELDSYNC_EDITOR": script})
        shown = json.loads(self.dev.ok("show", rid, "--json").out)["content"]
        self.assertEqual(shown["site"]["name"], "Edited Site")
        self.assertEqual(shown["note"], "start\nnote line one\n第二行")
        # An editor that fails leaves the record unchanged.
        self.dev.run("edit", rid, env={"FIELDSYNC_EDITOR": "false"})
        self.assertEqual(json.loads(self.dev.ok("show", rid, "--json").out)["gen"], 2)

    def test_prompts_on_a_terminal(self):
        import pty
        pid, fd = pty.fork()
        if pid == 0:
            os.environ["NO_COLOR"] = "1"
            os.execv(binary("fieldsync"), [binary("fieldsync"), "--home", self.dev.home,
                                           "add", "interview"])
        out = b""
        answers = [(b"Site: ", b"Tongzhou\n"), (b"Note: ", b"talked to 3 firms\n")]
        deadline = time.monotonic() + 30
        for prompt, answer in answers:
            while prompt not in out and time.monotonic() < deadline:
                try:
                    out += os.read(fd, 1024)
                except OSError:
                    break
            self.assertIn(prompt, out)
            os.write(fd, answer)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        recs = self.dev.records()
        self.assertEqual(recs[0]["site"]["name"], "Tongzhou")
        self.assertEqual(recs[0]["note"], "talked to 3 firms")

    def test_key_readable_by_others_is_refused(self):
        os.chmod(os.path.join(self.dev.home, "key"), 0o644)
        p = self.dev.run("list")
        self.assertOneLineError(p, 77)
        self.assertIn("chmod 600", p.err)

    def test_help_and_version(self):
        p = self.dev.ok("--version")
        self.assertRegex(p.out, r"^fieldsync \d+\.\d+\.\d+")
        top = self.dev.ok("--help").out
        commands = ["init", "add", "import", "list", "show", "edit", "rm", "attach", "gc",
                    "resolve", "export", "config", "status", "verify", "enroll", "sync",
                    "pull", "devices", "token", "device"]
        for c in commands:
            self.assertIn("  %s " % c, top)
            p = self.dev.ok(c, "--help")
            self.assertIn("usage: fieldsync", p.out)
            self.assertIn(c, p.out)
        p = self.dev.run("frobnicate")
        self.assertOneLineError(p, 64)

    def test_init_twice_and_no_store(self):
        p = self.dev.run("init", "--name", "again")
        self.assertOneLineError(p, 64)
        other = Device(self.tmp, "empty")
        p = other.run("list")
        self.assertOneLineError(p, 64)
        self.assertIn("init", p.err)


class CrashTest(TempTestCase):
    """kill -9 of add and import at random moments: every id add printed is
    present, no import is half stored, verify and integrity_check pass."""

    ROUNDS = int(os.environ.get("FS_CRASH_ROUNDS", "60"))

    def test_kill9_add_and_import(self):
        dev = Device(self.tmp)
        dev.init()
        rng = random.Random(int(os.environ.get("FS_SEED", "1234")))
        printed = []
        imports = {}  # batch tag -> rows in the file
        src = open(RECORDS_1K, encoding="utf-8").read().splitlines()
        for i in range(self.ROUNDS):
            if rng.random() < 0.7:
                args = [binary("fieldsync"), "--home", dev.home, "add", "interview",
                        "--note", "crash round %d" % i]
            else:
                tag = "batch%d" % i
                rows = []
                for line in rng.sample(src, 200):
                    o = json.loads(line)
                    o["fields"]["batch"] = tag
                    rows.append(json.dumps(o, ensure_ascii=False))
                path = os.path.join(self.tmp, tag + ".jsonl")
                with open(path, "w", encoding="utf-8") as f:
                    f.write("\n".join(rows) + "\n")
                imports[tag] = len(rows)
                args = [binary("fieldsync"), "--home", dev.home, "import", path]
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                p.wait(timeout=rng.uniform(0.0, 0.06))
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
            out = p.stdout.read().decode()
            p.stdout.close()
            p.stderr.close()
            if p.returncode == 0 and args[3] == "add":
                printed.append(out.strip())
        recs = dev.records()
        ids = [r["id"] for r in recs]
        self.assertEqual(len(ids), len(set(ids)), "duplicated records")
        have = set(ids)
        lost = [x for x in printed if x not in have]
        self.assertEqual(lost, [], "records reported saved are missing")
        for tag, n in imports.items():
            got = sum(1 for r in recs if r.get("fields", {}).get("batch") == tag)
            self.assertIn(got, (0, n), "import %s half stored: %d of %d" % (tag, got, n))
        dev.ok("verify")
        self.assertEqual(dev.db().execute("PRAGMA integrity_check").fetchone()[0], "ok")
        print("kill9-cli K=%d saved=%d lost=%d dup=0 integrity=ok" %
              (self.ROUNDS, len(printed), len(lost)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
