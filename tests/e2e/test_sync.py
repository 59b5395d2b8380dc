"""Core 2 end to end: the real fieldsync-server and fieldsync over loopback.
Exactly once under cuts, replay and forgery refused, tokens, revocation,
forks, clocks, hostile HTTP, TLS."""

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import unittest
import zlib

sys.path.insert(0, os.path.dirname(__file__))
from fsenv import (BIN, RECORDS_1K, Device, Server, TempTestCase, binary,  # noqa: E402
                   enrolled_device, feed_of, wait_for)

FSTOOL = os.path.join(BIN, "tests", "tools", "fstool")
PROXY = os.path.join(BIN, "tests", "tools", "faultproxy")


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def last_frame(batch):
    """The entry, signature and content of a batch's last frame."""
    off = 40
    hlen = struct.unpack(">I", batch[off:off + 4])[0]
    off += 4 + hlen
    plen = struct.unpack(">I", batch[off:off + 4])[0]
    raw = zlib.decompress(batch[off + 4:off + 4 + plen])
    off, frame = 0, None
    while off < len(raw):
        elen = struct.unpack(">I", raw[off:off + 4])[0]
        entry = raw[off + 4:off + 4 + elen]
        sig = raw[off + 4 + elen:off + 68 + elen]
        clen = struct.unpack(">I", raw[off + 68 + elen:off + 72 + elen])[0]
        frame = (entry, sig, raw[off + 72 + elen:off + 72 + elen + clen])
        off += 72 + elen + clen
    return frame


def feed_row(server, feed):
    return [d for d in server.devices() if d["feed"] == feed][0]


class SyncTest(TempTestCase):
    def setUp(self):
        super().setUp()
        self.server = Server(self.tmp).start()

    def tearDown(self):
        self.server.stop()
        super().tearDown()

    def test_offline_then_sync_exactly_once(self):
        dev = enrolled_device(self.tmp, self.server)
        self.server.stop()
        ids = [dev.add("interview", "--note", "offline %d" % i) for i in range(500)]
        p = dev.run("sync")
        self.assertOneLineError(p, 69)
        self.assertIn("safe", p.err)
        st = dev.status()
        self.assertEqual(st["pending_entries"], 500)
        self.assertEqual(len(dev.records()), 500)
        self.server.start()
        dev.ok("sync")
        m1 = self.server.metrics()
        self.assertEqual(m1["fieldsync_entries_stored_total"], 500)
        # A second sync sends nothing: the server's own counters say so.
        dev.ok("sync")
        m2 = self.server.metrics()
        self.assertEqual(m2["fieldsync_entries_stored_total"], 500)
        self.assertEqual(m2["fieldsync_pushes_applied_total"], m1["fieldsync_pushes_applied_total"])
        self.assertEqual(m2["fieldsync_inflates_total"], m1["fieldsync_inflates_total"])
        st = dev.status()
        self.assertEqual(st["pending_entries"], 0)
        self.assertEqual(st["server_have_seq"], 500)
        self.assertIsNone(st["last_error"])
        self.assertTrue(all(r["synced"] for r in dev.records()))
        self.assertEqual(set(ids), {r["id"] for r in dev.records()})
        self.assertIn("ok: 500 entries", self.server.admin("check").out)

    def test_wal_is_checkpointed_while_serving(self):
        """Automatic checkpoints are off in the server's handles (they would run in the
        commit that answers a group of pushes); its own thread checkpoints instead. With the
        server still running, the pages of 6,000 pushed entries reach server.db (red when
        that thread checkpoints nothing: the WAL then grows without end and server.db stays
        at its first size)."""
        path = os.path.join(self.tmp, "6k.jsonl")
        with open(RECORDS_1K, encoding="utf-8") as f:
            src = [json.loads(line) for line in f if line.strip()]
        with open(path, "w", encoding="utf-8") as f:
            for k in range(6):
                for r in src:
                    f.write(json.dumps(dict(r, note="%s (copy %d)" % (r.get("note", ""), k)),
                                       ensure_ascii=False) + "\n")
        dev = enrolled_device(self.tmp, self.server)
        dev.ok("import", path)
        db = os.path.join(self.server.data, "server.db")
        before = os.path.getsize(db)
        dev.ok("sync")
        wait_for(lambda: os.path.getsize(db) >= before + 4 * 2**20, timeout=60,
                 what="the pushed pages to be checkpointed into server.db")
        self.assertIn("ok: 6000 entries", self.server.admin("check").out)

    def test_replay_changes_nothing_and_does_not_inflate(self):
        dev = enrolled_device(self.tmp, self.server)
        for i in range(20):
            dev.add("observation", "--note", "n%d" % i)
        batch = os.path.join(self.tmp, "b.bin")
        subprocess.run([FSTOOL, dev.home, "1", "20", batch], check=True)
        body = read_bytes(batch)
        path = "/v1/feeds/%s/entries" % feed_of(dev)
        status, _ = self.server.request("POST", path, body)
        self.assertEqual(status, 200)
        before = self.server.metrics()
        status, ans = self.server.request("POST", path, body)
        self.assertEqual(status, 200, ans)
        after = self.server.metrics()
        self.assertEqual(after["fieldsync_pushes_held_total"],
                         before["fieldsync_pushes_held_total"] + 1)
        self.assertEqual(after["fieldsync_inflates_total"], before["fieldsync_inflates_total"])
        self.assertEqual(after["fieldsync_entries_stored_total"], 20)
        self.assertEqual(feed_row(self.server, feed_of(dev))["have_seq"], 20)

    def test_forgeries_are_refused_whole(self):
        dev = enrolled_device(self.tmp, self.server)
        for i in range(10):
            dev.add("observation", "--note", "n%d" % i)
        # A large batch is verified by two threads: a bad entry in either half
        # refuses it whole.
        big = Device(self.tmp, "big")
        big.init()
        big.ok("enroll", self.server.url, "--token-file", "-", input=self.server.token())
        big.ok("import", RECORDS_1K)
        for k in ("100", "900"):
            batch = os.path.join(self.tmp, "big-%s.bin" % k)
            subprocess.run([FSTOOL, big.home, "1", "1000", batch, "break-sig", k], check=True)
            status, ans = self.server.request("POST", "/v1/feeds/%s/entries" % feed_of(big),
                                              read_bytes(batch))
            self.assertEqual(status, 400, ans)
            self.assertIn("entry %d" % (int(k) + 1), json.loads(ans)["message"])
            self.assertEqual(feed_row(self.server, feed_of(big))["have_seq"], 0)
        path = "/v1/feeds/%s/entries" % feed_of(dev)
        for mode, code in (("break-sig", 400), ("break-content", 400)):
            batch = os.path.join(self.tmp, mode + ".bin")
            subprocess.run([FSTOOL, dev.home, "1", "10", batch, mode, "6"], check=True)
            status, ans = self.server.request("POST", path, read_bytes(batch))
            self.assertEqual(status, code, ans)
            self.assertEqual(json.loads(ans)["error"], "bad_entry")
            self.assertEqual(feed_row(self.server, feed_of(dev))["have_seq"], 0)
        # Signed by the device, hashes right, but the content is not a record: a
        # coordinator's pull would refuse it, so the server refuses it first.
        batch = os.path.join(self.tmp, "not-a-record.bin")
        subprocess.run([FSTOOL, dev.home, "1", "10", batch, "not-a-record"], check=True)
        status, ans = self.server.request("POST", path, read_bytes(batch))
        self.assertEqual(status, 400, ans)
        self.assertEqual(json.loads(ans)["error"], "bad_entry")
        self.assertIn("entry 10: its content", json.loads(ans)["message"])
        self.assertIn("observed_at", json.loads(ans)["message"])
        self.assertEqual(feed_row(self.server, feed_of(dev))["have_seq"], 0)
        # A key that never enrolled.
        batch = os.path.join(self.tmp, "stranger.bin")
        subprocess.run([FSTOOL, dev.home, "1", "1", batch, "stranger"], check=True)
        body = read_bytes(batch)
        stranger = body[8:40].hex()
        status, ans = self.server.request("POST", "/v1/feeds/%s/entries" % stranger, body)
        self.assertEqual(status, 403, ans)
        self.assertEqual(self.server.metrics()["fieldsync_entries_stored_total"], 0)
        # A gap: from 3 while the server holds nothing.
        batch = os.path.join(self.tmp, "gap.bin")
        subprocess.run([FSTOOL, dev.home, "3", "10", batch], check=True)
        status, ans = self.server.request("POST", path, read_bytes(batch))
        self.assertEqual(status, 409)
        self.assertEqual(json.loads(ans)["need"], 1)
        # A decompression bomb under a valid signature: 400, bounded work.
        batch = os.path.join(self.tmp, "bomb.bin")
        subprocess.run([FSTOOL, dev.home, "1", "10", batch, "bomb"], check=True)
        status, ans = self.server.request("POST", path, read_bytes(batch))
        self.assertEqual(status, 400, ans)
        self.assertEqual(self.server.metrics()["fieldsync_entries_stored_total"], 0)
        self.assertTrue(self.server.health_ok())
        # And after all of that the real sync works.
        dev.ok("sync")
        self.assertEqual(feed_row(self.server, feed_of(dev))["have_seq"], 10)
        self.assertIn("ok: 10 entries", self.server.admin("check").out)

    def test_check_names_a_content_that_is_not_a_record(self):
        """A server that holds such an entry (taken before pushes were checked so, or
        written into its database by hand): `check` names it."""
        dev = enrolled_device(self.tmp, self.server)
        for i in range(3):
            dev.add("observation", "--note", "n%d" % i)
        dev.ok("sync")
        self.assertIn("ok: 3 entries", self.server.admin("check").out)
        batch = os.path.join(self.tmp, "not-a-record.bin")
        subprocess.run([FSTOOL, dev.home, "3", "3", batch, "not-a-record"], check=True)
        entry, sig, content = last_frame(read_bytes(batch))
        self.assertEqual(content, b'{"kind":"note"}')
        self.server.stop()
        h = hashlib.blake2b(entry + sig, digest_size=32).digest()
        db = sqlite3.connect(os.path.join(self.server.data, "server.db"))
        db.execute("UPDATE entries SET entry = ?, sig = ?, content = ?, hash = ? WHERE seq = 3"
                   " AND feed = ?", (entry, sig, content, h, bytes.fromhex(feed_of(dev))))
        db.execute("UPDATE feeds SET head = ? WHERE feed = ?", (h, bytes.fromhex(feed_of(dev))))
        db.commit()
        db.close()
        p = self.server.admin("check", check=False)
        self.assertNotEqual(p.returncode, 0, p.out)
        self.assertIn("seq 3: its content is not a record", p.err)
        self.assertIn("observed_at", p.err)
        self.server.start()

    def test_revoked_device_exits_77(self):
        dev = enrolled_device(self.tmp, self.server)
        dev.add("interview", "--note", "one")
        dev.ok("sync")
        self.server.admin("device", "revoke", feed_of(dev)[:16])
        dev.add("interview", "--note", "two")
        p = dev.run("sync")
        self.assertOneLineError(p, 77)
        self.assertEqual(feed_row(self.server, feed_of(dev))["have_seq"], 1)
        self.assertTrue(feed_row(self.server, feed_of(dev))["revoked"])

    def test_revoked_with_accept_through(self):
        dev = enrolled_device(self.tmp, self.server)
        for i in range(5):
            dev.add("interview", "--note", "n%d" % i)
        self.server.admin("device", "revoke", feed_of(dev), "--accept-through", "3")
        path = "/v1/feeds/%s/entries" % feed_of(dev)
        batch = os.path.join(self.tmp, "b13.bin")
        subprocess.run([FSTOOL, dev.home, "1", "3", batch], check=True)
        status, ans = self.server.request("POST", path, read_bytes(batch))
        self.assertEqual(status, 200, ans)
        subprocess.run([FSTOOL, dev.home, "4", "5", batch], check=True)
        status, ans = self.server.request("POST", path, read_bytes(batch))
        self.assertEqual(status, 403, ans)
        self.assertEqual(feed_row(self.server, feed_of(dev))["have_seq"], 3)

    def test_tokens(self):
        tok = self.server.token(name="a")
        a = Device(self.tmp, "a")
        a.init()
        a.ok("enroll", self.server.url, "--token-file", "-", input=tok)
        # The same key again (a lost answer): fine.
        a.ok("enroll", self.server.url, "--token-file", "-", input=tok)
        # Another key: refused.
        b = Device(self.tmp, "b")
        b.init()
        p = b.run("enroll", self.server.url, "--token-file", "-", input=tok)
        self.assertOneLineError(p, 77)
        # Expired: the stored expiry moved into the past.
        tok2 = self.server.token(name="c")
        import sqlite3
        db = sqlite3.connect(os.path.join(self.server.data, "server.db"))
        db.execute("UPDATE tokens SET expires_ms = 1000 WHERE used_by IS NULL")
        db.commit()
        db.close()
        p = b.run("enroll", self.server.url, "--token-file", "-", input=tok2)
        self.assertOneLineError(p, 77)
        self.assertIn("expired", p.err)
        # Never in a log.
        text = self.server.log_text() + p.err
        self.assertNotIn(tok, text)
        self.assertNotIn(tok2, text)
        self.assertNotIn(tok[21:], text)

    def test_token_for_another_server_is_never_sent(self):
        other = Server(self.tmp, "other").start()
        try:
            tok = other.token()
            dev = Device(self.tmp)
            dev.init()
            before = self.server.metrics()["fieldsync_requests_total"]
            p = dev.run("enroll", self.server.url, "--token-file", "-", input=tok)
            self.assertOneLineError(p, 76)
            self.assertIn("not sent", p.err)
            # Only the health check reached the wrong server.
            self.assertEqual(self.server.metrics()["fieldsync_requests_total"], before + 1)
            # The token still works where it belongs.
            dev.ok("enroll", other.url, "--token-file", "-", input=tok)
        finally:
            other.stop()

    def test_not_enrolled_exits_77(self):
        dev = Device(self.tmp)
        dev.init()
        p = dev.run("sync")
        self.assertOneLineError(p, 77)

    def test_fork_is_refused_and_flagged(self):
        dev = enrolled_device(self.tmp, self.server)
        for i in range(5):
            dev.add("interview", "--note", "before copy %d" % i)
        dev.ok("sync")
        copy = Device(self.tmp, "copy")
        shutil.copytree(dev.home, copy.home)
        dev.add("interview", "--note", "first laptop")
        dev.ok("sync")
        copy.add("interview", "--note", "second laptop")
        p = copy.run("sync")
        self.assertOneLineError(p, 76)
        self.assertIn("new key", p.err)
        row = feed_row(self.server, feed_of(dev))
        self.assertEqual(row["have_seq"], 6)
        # The original laptop keeps syncing; the copy's branch stays out.
        dev.add("interview", "--note", "first laptop again")
        dev.ok("sync")
        self.assertEqual(feed_row(self.server, feed_of(dev))["have_seq"], 7)
        self.assertIn("ok: 7 entries", self.server.admin("check").out)

    def test_fork_offered_as_a_batch_is_flagged(self):
        dev = enrolled_device(self.tmp, self.server)
        for i in range(3):
            dev.add("interview", "--note", "n%d" % i)
        dev.ok("sync")
        copy = Device(self.tmp, "copy")
        shutil.copytree(dev.home, copy.home)
        # Roll the copy back by one entry's worth: rebuild seq 3 differently.
        db = copy.db()
        db.execute("DELETE FROM entries WHERE seq = 3")
        db.execute("UPDATE feeds SET have_seq = 2, head = (SELECT hash FROM entries WHERE seq = 2)"
                   " WHERE is_self = 1")
        db.commit()
        db.close()
        copy.add("interview", "--note", "divergent")
        batch = os.path.join(self.tmp, "fork.bin")
        subprocess.run([FSTOOL, copy.home, "3", "3", batch], check=True)
        status, ans = self.server.request("POST", "/v1/feeds/%s/entries" % feed_of(dev),
                                          read_bytes(batch))
        self.assertEqual(status, 409, ans)
        self.assertEqual(json.loads(ans)["error"], "fork")
        row = feed_row(self.server, feed_of(dev))
        self.assertTrue(row["fork"])
        self.assertEqual(row["fork_seq"], 3)
        self.assertEqual(row["have_seq"], 3)

    def test_verify_checks_receipts_and_settings(self):
        """verify checks each kept receipt against the pinned server key and what its row
        says, and every setting against what config, enroll or sync could have written."""
        dev = enrolled_device(self.tmp, self.server)
        dev.add("interview", "--note", "x")
        dev.ok("sync")
        self.assertIn("receipts and settings too", dev.ok("verify").out)
        cases = (
            ("UPDATE receipts SET have_seq = 7", "the stored row differs from the signed receipt"),
            ("UPDATE receipts SET head = zeroblob(32)", "the stored row differs"),
            ("UPDATE receipts SET receipt = replace(receipt, 'have_seq\\\":1', "
             "'have_seq\\\":2')", "the server's signature does not verify"),
            ("UPDATE settings SET value = 'zz' WHERE key = 'server_key'",
             "the pinned server key is malformed"),
            ("DELETE FROM settings WHERE key = 'server_key'", "no server key is pinned"),
            ("UPDATE settings SET value = 'ftp://x' WHERE key = 'server'",
             "setting server: the stored value is malformed"),
            ("INSERT OR REPLACE INTO settings VALUES ('batch_max_entries', '-5')",
             "setting batch_max_entries: the stored value is malformed"),
            ("UPDATE settings SET value = 'admin' WHERE key = 'role'",
             "setting role: the stored value is malformed"),
        )
        for i, (sql, want) in enumerate(cases):
            d = Device(self.tmp, "copy%d" % i)
            shutil.copytree(dev.home, d.home)
            db = d.db()
            self.assertEqual(db.execute(sql).rowcount, 1, sql)
            db.commit()
            db.close()
            p = d.run("verify")
            self.assertEqual(p.returncode, 65, "%s: %s" % (sql, p.err))
            self.assertIn(want, p.err)
        self.assertEqual(dev.run("verify").returncode, 0)

    def test_rows_out_of_place_are_never_sent(self):
        """A damaged index can hand back rows that are each intact (bytes match their
        hash) but are not the entry at that seq, or do not chain: push checks the seq
        written in the entry and its prev against the entry before, and sends nothing."""
        dev = enrolled_device(self.tmp, self.server)
        for i in range(4):
            dev.add("interview", "--note", "synced %d" % i)
        dev.ok("sync")
        other = Device(self.tmp, "other")
        shutil.copytree(dev.home, other.home)
        for i in range(3):
            dev.add("interview", "--note", "waiting %d" % i)  # seq 5..7
        other.add("interview", "--note", "another branch")  # its own seq 5
        cols = "hash, entry, sig, content, record_id, gen, parent, op, content_hash"

        def damaged(name, *sql):
            d = Device(self.tmp, name)
            shutil.copytree(dev.home, d.home)
            db = d.db()
            db.execute("ATTACH ? AS other", (os.path.join(other.home, "store.db"),))
            for q in sql:
                db.execute(q)
            db.commit()
            db.close()
            return d

        swapped = damaged("swapped", "UPDATE entries SET seq = 1000 WHERE seq = 6",
                          "UPDATE entries SET seq = 6 WHERE seq = 7",
                          "UPDATE entries SET seq = 7 WHERE seq = 1000")
        # seq 5 replaced by a well-formed, correctly signed entry 5 of another branch:
        # it follows 4, but 6 does not follow it.
        grafted = damaged("grafted", "UPDATE entries SET (%s) = (SELECT %s FROM other.entries "
                          "WHERE seq = 5) WHERE seq = 5" % (cols, cols))
        for d, why in ((swapped, "another entry is stored in its place"),
                       (grafted, "it does not follow the entry before it")):
            p = d.run("sync")
            self.assertOneLineError(p, 65)
            self.assertIn("damaged (%s)" % why, p.err)
            self.assertIn("nothing was sent", p.err)
            self.assertEqual(feed_row(self.server, feed_of(dev))["have_seq"], 4)
            self.assertFalse(feed_row(self.server, feed_of(dev))["fork"])
            self.assertEqual(d.run("verify").returncode, 65)
        dev.ok("sync")
        self.assertEqual(feed_row(self.server, feed_of(dev))["have_seq"], 7)

    def test_server_restored_from_backup_gets_everything_again(self):
        dev = enrolled_device(self.tmp, self.server)
        for i in range(10):
            dev.add("interview", "--note", "n%d" % i)
        dev.ok("sync")
        backup = os.path.join(self.tmp, "backup")
        self.server.stop()
        shutil.copytree(self.server.data, backup)
        self.server.start()
        for i in range(10):
            dev.add("interview", "--note", "m%d" % i)
        dev.ok("sync")
        self.server.stop()
        shutil.rmtree(self.server.data)
        shutil.copytree(backup, self.server.data)
        self.server.start()
        p = dev.ok("sync")
        self.assertIn("WARNING", p.err)
        self.assertIn("backup", p.err)
        self.assertEqual(feed_row(self.server, feed_of(dev))["have_seq"], 20)

    def test_wrong_clock_is_corrected(self):
        dev = enrolled_device(self.tmp, self.server)
        dev.add("interview", "--note", "x")
        dev.ok("config", "set", "backoff_base_ms", "100")
        db = dev.db()
        db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES ('clock_offset_s', '-7200')")
        db.commit()
        db.close()
        dev.ok("sync")
        self.assertEqual(feed_row(self.server, feed_of(dev))["have_seq"], 1)
        db = dev.db()
        off = int(db.execute("SELECT value FROM settings WHERE key = 'clock_offset_s'")
                  .fetchone()[0])
        db.close()
        self.assertLess(abs(off), 60)
        self.assertGreaterEqual(self.server.metrics()['fieldsync_refused_total{reason="clock"}'], 1)


class AdminAndAuthTest(TempTestCase):
    def setUp(self):
        super().setUp()
        self.server = Server(self.tmp).start()

    def tearDown(self):
        self.server.stop()
        super().tearDown()

    def test_signed_request_cannot_be_replayed(self):
        dev = enrolled_device(self.tmp, self.server)
        target = "/v1/feeds/%s/head" % feed_of(dev)
        auth = os.path.join(self.tmp, "auth.txt")
        subprocess.run([FSTOOL, dev.home, "0", "0", auth, "auth", self.server.key, target],
                       check=True)
        with open(auth) as f:
            header = f.read()
        status, _ = self.server.request("GET", target, headers={"Authorization": header})
        self.assertEqual(status, 200)
        status, ans = self.server.request("GET", target, headers={"Authorization": header})
        self.assertEqual(status, 401, ans)
        self.assertEqual(json.loads(ans)["error"], "replay")
        # A signature for another path does not open this one.
        subprocess.run([FSTOOL, dev.home, "0", "0", auth, "auth", self.server.key,
                        "/v1/feeds/%s/head" % ("ab" * 32)], check=True)
        with open(auth) as f:
            header = f.read()
        status, _ = self.server.request("GET", target, headers={"Authorization": header})
        self.assertEqual(status, 401)
        status, _ = self.server.request("GET", target)
        self.assertEqual(status, 401)

    def test_admin_commands_refuse_another_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to hand the folder to another user")
        self.server.stop()
        os.chown(self.server.data, 65534, 65534)
        try:
            for args in (["token", "create", "--project", "p", "--role", "researcher"],
                         ["device", "list"], ["check"], ["init"]):
                p = self.server.admin(*args, check=False)
                self.assertEqual(p.returncode, 64, p.err)
                self.assertIn("run this as that user", p.err)
        finally:
            os.chown(self.server.data, 0, 0)
        self.server.start()

    def test_chunked_body_over_the_limit_is_cut(self):
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        s.sendall(b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 8192
        sent = 0
        closed = False
        try:
            while sent < 1 << 20:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            closed = True
        if not closed:
            s.settimeout(5)
            try:
                closed = s.recv(100) == b""
            except OSError:
                closed = True
        s.close()
        self.assertTrue(closed)
        self.assertLess(self.server.metrics()["fieldsync_bytes_in_total"], 200 * 1024)
        self.assertTrue(self.server.health_ok())


class CutTest(TempTestCase):
    """Exactly once through a proxy that cuts connections at random bytes."""

    def sync_through(self, server, dev, cut_args, seed):
        stats = os.path.join(self.tmp, "proxy-%d.json" % seed)
        proxy = subprocess.Popen([PROXY, "--target", "127.0.0.1:%d" % server.port,
                                  "--seed", str(seed), "--stats", stats, *cut_args],
                                 stdout=subprocess.PIPE)
        try:
            port = int(proxy.stdout.readline().split()[1])
            db = dev.db()
            db.execute("UPDATE settings SET value = ? WHERE key = 'server'",
                       ("http://127.0.0.1:%d" % port,))
            db.commit()
            db.close()
            runs = 0
            while True:
                runs += 1
                self.assertLess(runs, 500, "sync never completed through the proxy")
                p = dev.run("sync", "--quiet")
                if p.returncode == 0:
                    break
                self.assertIn(p.returncode, (69, 75), p.err)
        finally:
            proxy.send_signal(signal.SIGTERM)
            proxy.wait(timeout=30)
            proxy.stdout.close()
        with open(stats) as f:
            return runs, json.loads(f.read())

    def test_exactly_once_under_cuts(self):
        server = Server(self.tmp).start()
        try:
            dev = enrolled_device(self.tmp, server)
            dev.ok("import", RECORDS_1K)
            dev.ok("config", "set", "batch_max_entries", "100")
            # Answers cut after a few hundred bytes: many commits are never
            # heard by the client, which must not store them twice.
            runs, st = self.sync_through(server, dev, ["--cut-up", "2k:300k",
                                                       "--cut-down", "100:900"], 7)
            m = server.metrics()
            self.assertEqual(feed_row(server, feed_of(dev))["have_seq"], 1000)
            self.assertEqual(m["fieldsync_entries_stored_total"], 1000)
            # A push of entries already held is a commit whose answer was lost.
            self.assertGreater(m["fieldsync_pushes_held_total"], 0,
                               "no run covered a commit whose answer was lost")
            print("cut-answers runs=%d cuts=%d held=%d" %
                  (runs, st["cuts"], m["fieldsync_pushes_held_total"]))
            # Requests cut every few tens of kilobytes: batches shrink until
            # they fit, and sync completes.
            path = os.path.join(self.tmp, "more.jsonl")
            with open(RECORDS_1K, encoding="utf-8") as src, open(path, "w") as dst:
                for line in src:
                    o = json.loads(line)
                    o["note"] = o["note"] + " (second visit)"
                    dst.write(json.dumps(o, ensure_ascii=False) + "\n")
            dev.ok("config", "set", "batch_max_entries", "5000")
            dev.ok("import", path)
            runs, st = self.sync_through(server, dev, ["--cut-up", "20k:60k"], 8)
            self.assertEqual(feed_row(server, feed_of(dev))["have_seq"], 2000)
            self.assertEqual(server.metrics()["fieldsync_entries_stored_total"], 2000)
            self.assertIn("ok: 2000 entries", server.admin("check").out)
            self.assertEqual(dev.status()["pending_entries"], 0)
            print("cut-requests runs=%d cuts=%d bytes_up=%d" % (runs, st["cuts"], st["bytes_up"]))
        finally:
            server.stop()


class HostileHttpTest(TempTestCase):
    def setUp(self):
        super().setUp()
        self.server = Server(self.tmp, extra=["--deadline-ms", "1500"]).start()

    def tearDown(self):
        self.server.stop()
        super().tearDown()

    def raw(self, data, read=True, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=timeout)
        s.sendall(data)
        out = b""
        if read:
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
            except socket.timeout:
                pass
        s.close()
        return out

    def test_huge_content_length_is_413_before_the_body(self):
        feed = "0" * 64
        ans = self.raw(("POST /v1/feeds/%s/entries HTTP/1.1\r\nHost: x\r\n"
                        "Content-Length: 10737418240\r\n\r\n" % feed).encode())
        self.assertTrue(ans.startswith(b"HTTP/1.1 413"), ans[:100])
        self.assertLess(self.server.metrics()["fieldsync_bytes_in_total"], 1024)
        self.assertTrue(self.server.health_ok())

    def test_garbage_and_encoding(self):
        path = "/v1/feeds/%s/entries" % ("ab" * 32)
        status, _ = self.server.request("POST", path, os.urandom(5000))
        self.assertEqual(status, 400)
        status, _ = self.server.request("POST", path, b"x" * 100, {"Content-Encoding": "gzip"})
        self.assertEqual(status, 415)
        status, _ = self.server.request("POST", "/v1/enroll", b"{not json")
        self.assertEqual(status, 400)
        status, _ = self.server.request("GET", "/v1/nothing")
        self.assertEqual(status, 404)
        self.assertTrue(self.server.health_ok())

    def test_trickle_is_cut_at_the_deadline(self):
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        req = b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"{" * 100
        start = time.monotonic()
        closed = False
        for b in req:
            try:
                s.sendall(bytes([b]))
            except OSError:
                closed = True
                break
            # One byte every 100 ms: never idle long enough for the idle timeout.
            s.settimeout(0.1)
            try:
                if s.recv(1) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
            if time.monotonic() - start > 8:
                break
        s.close()
        self.assertTrue(closed, "a trickling client was kept alive")
        self.assertLess(time.monotonic() - start, 8)
        self.assertGreaterEqual(self.server.metrics()["fieldsync_deadline_cuts_total"], 1)
        self.assertTrue(self.server.health_ok())


class TlsTest(TempTestCase):
    def make_cert(self, shift=None, days="2"):
        cert = os.path.join(self.tmp, "cert.pem")
        key = os.path.join(self.tmp, "key.pem")
        cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
               "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
               "-days", days, "-subj", "/CN=127.0.0.1",
               "-addext", "subjectAltName=IP:127.0.0.1"]
        if shift:
            cmd = ["faketime", "-f", shift] + cmd
        subprocess.run(cmd, check=True, capture_output=True)
        return cert, key

    def test_certificate_dates_speak_of_the_clock(self):
        # A certificate that only becomes valid in two days.
        cert, key = self.make_cert(shift="+2d", days="3")
        server = Server(self.tmp, extra=["--tls-cert", cert, "--tls-key", key])
        server.scheme = "https"
        server.start()
        try:
            dev = Device(self.tmp)
            dev.init()
            p = dev.run("enroll", server.url, "--token-file", "-", "--cacert", cert,
                        input=server.token())
            self.assertOneLineError(p, 75)
            self.assertIn("clock", p.err)
            self.assertNotIn("SSL", p.err)
        finally:
            server.stop()

    def test_sync_over_tls(self):
        cert = os.path.join(self.tmp, "cert.pem")
        key = os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        server = Server(self.tmp, extra=["--tls-cert", cert, "--tls-key", key])
        server.scheme = "https"
        server.start()
        try:
            dev = Device(self.tmp)
            dev.init()
            tok = server.token()
            # Without the CA the certificate cannot be verified: 76, token not sent.
            p = dev.run("enroll", server.url, "--token-file", "-", input=tok)
            self.assertOneLineError(p, 76)
            dev.ok("enroll", server.url, "--token-file", "-", "--cacert", cert, input=tok)
            for i in range(30):
                dev.add("interview", "--note", "tls %d" % i)
            dev.ok("sync")
            self.assertEqual(dev.status()["server_have_seq"], 30)
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
