"""Reliability row 9: no secrets in logs.

Marker strings are placed in notes, field values and enrollment tokens (and
every secret key is known to the test). A whole run follows: a server at
--log-level debug, a researcher recording, importing, attaching, editing,
syncing (by hand and through fieldsyncd --verbose), a coordinator pulling,
exporting, creating tokens and revoking, admin commands, and bad input on
every path that reports errors (the agent's checks, the server's refusals of
forged enrollments, broken batches and malformed bodies). No marker may
appear in the server's stderr, the daemon's log, or any command's stdout or
stderr, except the streams whose job is to print them: the stdout of
`show`, `list`, `export` (notes and fields) and of `token create` (the
token). Those excluded streams are checked to hold the markers, so the row
knows the markers really went through."""

import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rel_common import SOAK, Clock, fstool, row_line  # noqa: E402
from fsenv import (Device, Server, TempTestCase, binary, feed_of, read_text,  # noqa: E402
                   wait_for)

NOTE = "NOTEm4rk7f3a"
FIELD = "FIELDm4rk51bd"
SITE_NOTE = "NOTEm4rk-import"
# Commands whose stdout prints notes, fields or tokens by design.
PRINTS_BY_DESIGN = {"show", "list", "export", "token"}


class Recorder:
    """Every stream of every command of the run, tagged."""

    def __init__(self):
        self.streams = []  # (tag, text, scanned)
        self.commands = 0

    def add(self, tag, text, scanned=True):
        self.streams.append((tag, text, scanned))


class SecretsRow(TempTestCase):
    def setUp(self):
        super().setUp()
        self.rec = Recorder()
        self.tokens = []
        self.server = Server(self.tmp, extra=["--log-level", "debug"]).start()

    def tearDown(self):
        self.server.stop()
        super().tearDown()

    # ---- running things ------------------------------------------------------------

    def cmd(self, dev, *args, input=None, expect=None, env=None):
        p = dev.run(*args, input=input, env=env)
        self.rec.commands += 1
        tag = "%s: fieldsync %s" % (dev.name, " ".join(args)[:60])
        by_design = args[0] in PRINTS_BY_DESIGN
        self.rec.add(tag + " [stdout]", p.out, scanned=not by_design)
        self.rec.add(tag + " [stderr]", p.err)
        if expect is not None:
            self.assertEqual(p.returncode, expect, "%s: %s" % (tag, p.err))
        return p

    def admin(self, *args, by_design=False, check=True):
        p = self.server.admin(*args, check=check)
        self.rec.commands += 1
        tag = "fieldsync-server %s" % " ".join(args)
        self.rec.add(tag + " [stdout]", p.out, scanned=not by_design)
        # stderr also lands in the server log, which is scanned whole.
        return p

    def token(self, project="demo", role="researcher", name="device"):
        tok = self.admin("token", "create", "--project", project, "--role", role, "--name", name,
                         by_design=True).out.strip()
        self.tokens.append(tok)
        return tok

    def enroll(self, name, role="researcher"):
        dev = Device(self.tmp, name)
        self.cmd(dev, "init", "--name", name, expect=0)
        tok = self.token(role=role, name=name)
        self.cmd(dev, "enroll", self.server.url, "--token-file", "-", input=tok, expect=0)
        return dev

    def key_hex(self, path):
        return read_text(path).splitlines()[1].strip()

    # ---- the run --------------------------------------------------------------------

    def researcher_day(self, r, n):
        for i in range(n):
            self.cmd(r, "add", "interview", "--site", "Baodi", "--note", "%s %d" % (NOTE, i),
                     "--field", "topic=%s %d" % (FIELD, i), expect=0)
        self.cmd(r, "add", "observation", "--note", "-", input="%s from stdin" % NOTE, expect=0)
        imp = os.path.join(self.tmp, "season.jsonl")
        with open(imp, "w", encoding="utf-8") as f:
            for i in range(n):
                f.write(json.dumps({"kind": "observation",
                                    "observed_at": "2026-11-28T09:30:00+08:00",
                                    "note": "%s %d" % (SITE_NOTE, i),
                                    "fields": {"topic": "%s imported" % FIELD}}) + "\n")
        self.cmd(r, "import", imp, expect=0)
        self.cmd(r, "import", imp, expect=65)  # imported before: refused
        att = os.path.join(self.tmp, "photo.jpg")
        with open(att, "wb") as f:
            f.write(os.urandom(20000))
        rid = self.cmd(r, "add", "photo", "--note", NOTE, "--attach", att, expect=0).out.strip()
        self.cmd(r, "edit", rid, "--note", "%s edited" % NOTE, "--field", "topic=%s" % FIELD,
                 expect=0)
        self.cmd(r, "show", rid, expect=0)
        self.cmd(r, "show", rid, "--json", expect=0)
        self.cmd(r, "list", expect=0)
        self.cmd(r, "list", "--json", expect=0)
        self.cmd(r, "export", "--format", "csv", expect=0)
        self.cmd(r, "status", expect=0)
        self.cmd(r, "status", "--json", expect=0)
        self.cmd(r, "verify", expect=0)
        self.cmd(r, "config", expect=0)
        self.cmd(r, "sync", expect=0)
        self.cmd(r, "status", "--json", expect=0)
        return rid

    def bad_input(self, r, rid):
        """Every path that reports an error, with the markers in the input."""
        long_note = (NOTE + " ") * 8000
        cases = [
            (("add", "interview", "--note", "-"), long_note, 65),
            (("add", "interview", "--note", "-"), (NOTE + "\udcff").encode("utf-8",
                                                                           "surrogateescape"), 65),
            (("add", "interview", "--field", "topic=" + (FIELD * 600)), None, 65),
            (("add", "interview", "--field", "topic=" + FIELD + "\udcff"), None, None),
            (("add", "interview", "--field", "bad key=" + FIELD), None, 65),
            (("add", "interview", "--note", NOTE, "--gps", "99,999"), None, None),
            (("add", "interview", "--note", NOTE, "--at", "yesterday-ish"), None, None),
            (("add", "BAD KIND", "--note", NOTE, "--field", "topic=" + FIELD), None, None),
            (("edit", "0000dead", "--note", NOTE, "--field", "topic=" + FIELD), None, 65),
            (("edit", rid, "--field", "topic=" + FIELD * 600), None, 65),
            (("enroll", self.server.url, "--token", "fs1_" + NOTE), None, None),
        ]
        bad = os.path.join(self.tmp, "bad.jsonl")
        rows = [
            {"kind": "x", "observed_at": "2026-01-01T00:00:00Z", "note": NOTE,
             "site": {"lat": NOTE}},
            {"kind": "x", "observed_at": "2026-01-01T00:00:00Z", "note": NOTE,
             "fields": {"a": FIELD, "b": 5}},
            {"kind": "x", "observed_at": NOTE, "note": NOTE},
            {"kind": "x", "observed_at": "2026-01-01T00:00:00Z", "note": NOTE, NOTE: FIELD},
            {"kind": "x", "observed_at": "2026-01-01T00:00:00Z", "note": NOTE,
             "fields": {"topic": FIELD * 600}},
        ]
        for i, row in enumerate(rows):
            path = bad.replace(".jsonl", "-%d.jsonl" % i)
            with open(path, "w", encoding="utf-8") as f:
                f.write(json.dumps({"kind": "x", "observed_at": "2026-01-01T00:00:00Z",
                                    "note": "fine"}) + "\n")
                f.write(json.dumps(row) + "\n")
            cases.append((("import", path), None, 65))
        with open(bad.replace(".jsonl", ".csv"), "w", encoding="utf-8") as f:
            f.write('id,kind,observed_at,note,field:topic\n,x,2026-01-01T00:00:00Z,"%s,%s\n'
                    % (NOTE, FIELD))
        cases.append((("import", bad.replace(".jsonl", ".csv")), None, 65))
        with open(bad.replace(".jsonl", "-notjson.jsonl"), "w", encoding="utf-8") as f:
            f.write('{"kind":"x","note":"%s", "fields":{"t":"%s"}\n' % (NOTE, FIELD))
        cases.append((("import", bad.replace(".jsonl", "-notjson.jsonl")), None, 65))
        refused = 0
        for args, stdin, code in cases:
            p = self.cmd(r, *args, input=stdin)
            if code is not None:
                self.assertEqual(p.returncode, code, "%s: %s" % (args, p.err))
            if p.returncode != 0:
                refused += 1
        return refused

    def server_refusals(self, r):
        """Forged and malformed requests the server must refuse without
        writing what they carried into its log."""
        refused = 0
        # A forged token (well-formed, unknown), and a used one from another key.
        stranger = Device(self.tmp, "stranger")
        self.cmd(stranger, "init", "--name", "stranger", expect=0)
        forged = self.tokens[0][:-12] + "0123456789ab"
        self.tokens.append(forged)
        self.cmd(stranger, "enroll", self.server.url, "--token-file", "-", input=forged,
                 expect=77)
        self.cmd(stranger, "enroll", self.server.url, "--token", self.tokens[0], expect=77)
        # Expired.
        expired = self.token(name="late")
        import sqlite3
        db = sqlite3.connect(os.path.join(self.server.data, "server.db"))
        db.execute("UPDATE tokens SET expires_ms = 1000 WHERE used_by IS NULL")
        db.commit()
        db.close()
        self.cmd(stranger, "enroll", self.server.url, "--token-file", "-", input=expired,
                 expect=77)
        refused += 3
        # Malformed enroll bodies carrying a token.
        for body in ({"token": self.tokens[1], "feed": "zz", "name": NOTE, "sig": "00"},
                     {"token": self.tokens[1] + NOTE, "feed": "00" * 32},
                     {"token": self.tokens[1], "note": NOTE},
                     "{\"token\":\"%s\", broken" % self.tokens[1]):
            data = body if isinstance(body, str) else json.dumps(body)
            status, _ = self.server.request("POST", "/v1/enroll", data.encode())
            self.assertIn(status, (400, 403), data)
            refused += 1
        # Batches whose contents carry the markers, broken under valid signatures.
        for i in range(3):
            self.cmd(r, "add", "interview", "--note", "%s unsynced %d" % (NOTE, i),
                     "--field", "topic=%s" % FIELD, expect=0)
        seq = r.status()["local_seq"]
        path = "/v1/feeds/%s/entries" % feed_of(r)
        have = r.status()["server_have_seq"]
        for mode in ("break-sig", "break-content", "bomb"):
            out = os.path.join(self.tmp, mode + ".bin")
            fstool(r.home, have + 1, seq, out, mode, "1")
            with open(out, "rb") as f:
                status, _ = self.server.request("POST", path, f.read())
            self.assertEqual(status, 400, mode)
            refused += 1
        return refused

    def coordinator_day(self, r):
        c = self.enroll("coord", role="coordinator")
        self.cmd(c, "pull", expect=0)
        self.cmd(c, "pull", "--attachments", expect=0)
        self.cmd(c, "devices", expect=0)
        self.cmd(c, "devices", "--json", expect=0)
        out = self.cmd(c, "export", "--format", "jsonl", expect=0).out
        self.assertIn(FIELD, out)
        self.cmd(c, "export", "--format", "geojson", expect=0)
        self.cmd(c, "export", "--format", "csv", "--out", os.path.join(self.tmp, "e.csv"),
                 expect=0)
        p = self.cmd(c, "token", "create", "--role", "researcher", "--name", "field laptop",
                     expect=0)
        self.tokens.append(p.out.strip())
        # A coordinator's edit of the researcher's record reaches the owner.
        rec = [x for x in json.loads(self.cmd(c, "list", "--json", expect=0).out)
               if x.get("note", "").startswith(NOTE)][0]
        self.cmd(c, "edit", rec["id"], "--note", "%s corrected" % NOTE, expect=0)
        self.cmd(c, "sync", expect=0)
        self.cmd(r, "sync", expect=0)
        self.cmd(c, "verify", expect=0)
        victim = self.enroll("victim")
        self.cmd(victim, "add", "interview", "--note", NOTE, expect=0)
        self.cmd(victim, "sync", expect=0)
        self.cmd(c, "device", "revoke", feed_of(victim), expect=0)
        self.cmd(victim, "add", "interview", "--note", NOTE, expect=0)
        self.cmd(victim, "sync", expect=77)
        return c

    def daemon_run(self, r):
        """fieldsyncd --verbose pushes a few marked records."""
        log = os.path.join(self.tmp, "fieldsyncd.log")
        e = dict(os.environ)
        for k in ("FIELDSYNC_HOME", "NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM"):
            e.pop(k, None)
        with open(log, "ab") as f:
            d = subprocess.Popen([binary("fieldsyncd"), "--home", r.home, "--verbose"],
                                 stdout=f, stderr=f, env=e)
        try:
            before = r.status()["local_seq"]
            for i in range(3):
                self.cmd(r, "add", "interview", "--note", "%s daemon %d" % (NOTE, i),
                         "--field", "topic=%s" % FIELD, expect=0)
            want = before + 3
            wait_for(lambda: r.status()["server_have_seq"] >= want or d.poll() is not None,
                     timeout=120, what="fieldsyncd to push")
            self.assertIsNone(d.poll(), "fieldsyncd exited")
            self.cmd(r, "sync", expect=0)  # through the daemon
        finally:
            if d.poll() is None:
                d.send_signal(signal.SIGTERM)
            rc = d.wait(timeout=60)
        self.assertIn(rc, (0,), read_text(log)[-2000:])
        self.rec.add("fieldsyncd log", read_text(log))

    # ---- the scan -----------------------------------------------------------------------

    def markers(self, devs):
        m = {"note marker": NOTE, "field marker": FIELD, "import marker": SITE_NOTE}
        for i, t in enumerate(self.tokens):
            m["token %d" % i] = t
            m["token %d secret part" % i] = t[21:]
        for d in devs:
            m["secret key of %s" % d.name] = self.key_hex(os.path.join(d.home, "key"))
        m["server secret key"] = self.key_hex(os.path.join(self.server.data, "server.key"))
        return m

    def test_row(self):
        clock = Clock()
        r = self.enroll("researcher")
        n = 60 if SOAK else 8
        rid = self.researcher_day(r, n)
        refused = self.bad_input(r, rid)
        refused += self.server_refusals(r)
        # The unsynced marked entries go properly now.
        self.cmd(r, "sync", expect=0)
        c = self.coordinator_day(r)
        self.daemon_run(r)
        self.admin("device", "list")
        self.admin("device", "list", "--json")
        self.admin("check")
        self.server.stop()
        self.rec.add("server stderr", self.server.log_text())
        devs = [r, c] + [Device(self.tmp, n) for n in ("victim", "stranger")]
        markers = self.markers(devs)
        leaks = []
        scanned = 0
        nbytes = 0
        seen_by_design = set()
        for tag, text, scan in self.rec.streams:
            if not scan:
                for name, m in markers.items():
                    if m in text:
                        seen_by_design.add(name.split(" ")[0])
                continue
            scanned += 1
            nbytes += len(text)
            for name, m in markers.items():
                if m in text:
                    i = text.index(m)
                    leaks.append("%s in %s: ...%s..." % (name, tag, text[max(0, i - 80):i + 40]))
        # The markers did go through: the streams that print them by design show them.
        self.assertTrue({"note", "field", "import", "token"} <= seen_by_design, seen_by_design)
        row_line("no-secrets", commands=self.rec.commands, streams=scanned, bytes=nbytes,
                 markers=len(markers), bad_input_refused=refused, leaks=len(leaks), time=clock)
        self.assertFalse(leaks, "\n".join(leaks[:20]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
