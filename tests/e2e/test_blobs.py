"""Attachments end to end: a large file through a link that cuts every few
MiB, a server killed mid-upload, abuse of the blob endpoints."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from fsenv import (BIN, Server, TempTestCase, enrolled_device, feed_of,  # noqa: E402
                   read_text, wait_for)

FSTOOL = os.path.join(BIN, "tests", "tools", "fstool")
PROXY = os.path.join(BIN, "tests", "tools", "faultproxy")
MiB = 1 << 20


def blake(path):
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def random_file(path, size, seed):
    # Deterministic, incompressible bytes, written in pieces.
    h = hashlib.sha256(str(seed).encode())
    with open(path, "wb") as f:
        left = size
        block = b""
        while left:
            if not block:
                block = hashlib.shake_256(h.digest() + left.to_bytes(8, "big")).digest(MiB)
            n = min(left, len(block))
            f.write(block[:n])
            block = block[n:]
            left -= n


class BlobTest(TempTestCase):
    def setUp(self):
        super().setUp()
        self.server = Server(self.tmp).start()

    def tearDown(self):
        self.server.stop()
        super().tearDown()

    def signed(self, dev, target, method="GET", chunk=None):
        auth = os.path.join(self.tmp, "auth.txt")
        args = [FSTOOL, dev.home, "0", "0", auth, "auth", self.server.key, target, method]
        if chunk:
            args += [str(chunk[0]), str(chunk[1])]
        subprocess.run(args, check=True)
        return {"Authorization": read_text(auth)}

    def test_large_file_through_cuts_then_pull(self):
        dev = enrolled_device(self.tmp, self.server)
        audio = os.path.join(self.tmp, "talk.m4a")
        size = 64 * MiB
        random_file(audio, size, 1)
        rid = dev.add("interview", "--note", "an hour of audio", "--attach", audio)
        st = dev.status()
        self.assertEqual(st["pending_blob_bytes"], size)
        self.assertFalse(dev.records()[0]["synced"])
        stats = os.path.join(self.tmp, "proxy.json")
        proxy = subprocess.Popen([PROXY, "--target", "127.0.0.1:%d" % self.server.port,
                                  "--cut-up", "4m:4m", "--stats", stats],
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
                self.assertLess(runs, 200)
                p = dev.run("sync", "--quiet")
                if p.returncode == 0:
                    break
                self.assertIn(p.returncode, (69, 75), p.err)
                # Not synced until the whole file is on the server.
                self.assertFalse(dev.records()[0]["synced"])
        finally:
            proxy.send_signal(signal.SIGTERM)
            proxy.wait(timeout=30)
            proxy.stdout.close()
        st = json.loads(read_text(stats))
        chunk_max = 16 * MiB
        bound = size + st["cuts"] * chunk_max + size // 10
        print("blob-cuts size=%d carried=%d cuts=%d runs=%d" %
              (size, st["bytes_up"], st["cuts"], runs))
        self.assertGreater(st["cuts"], 5)
        self.assertLessEqual(st["bytes_up"], bound)
        # Partial bytes are kept across cuts: far less than a restart per cut.
        self.assertLess(st["bytes_up"], size * 2)
        self.assertEqual(dev.status()["pending_blob_bytes"], 0)
        self.assertTrue(dev.records()[0]["synced"])
        co = enrolled_device(self.tmp, self.server, name="co", role="coordinator")
        co.ok("pull", "--attachments")
        rec = json.loads(co.ok("export", "--format", "jsonl").out)
        self.assertEqual(rec["id"], rid)
        path = rec["attachments"][0]["path"]
        self.assertEqual(blake(path), blake(audio))
        self.assertEqual(rec["attachments"][0]["hash"], blake(audio))
        # Identical files are stored and sent once.
        db = dev.db()
        db.execute("UPDATE settings SET value = ? WHERE key = 'server'", (self.server.url,))
        db.commit()
        db.close()
        dev.add("observation", "--attach", audio)
        before = self.server.metrics()["fieldsync_bytes_in_total"]
        dev.ok("sync")
        self.assertLess(self.server.metrics()["fieldsync_bytes_in_total"] - before, MiB)

    def test_server_killed_during_upload(self):
        dev = enrolled_device(self.tmp, self.server)
        audio = os.path.join(self.tmp, "talk.m4a")
        size = 48 * MiB
        random_file(audio, size, 2)
        dev.add("interview", "--attach", audio)
        # Slow the link so that the upload is under way when the server dies.
        proxy = subprocess.Popen([PROXY, "--target", "127.0.0.1:%d" % self.server.port,
                                  "--delay-ms", "2"], stdout=subprocess.PIPE)
        port = int(proxy.stdout.readline().split()[1])
        db = dev.db()
        db.execute("UPDATE settings SET value = ? WHERE key = 'server'",
                   ("http://127.0.0.1:%d" % port,))
        db.commit()
        db.close()
        sync = subprocess.Popen([os.path.join(BIN, "fieldsync"), "--home", dev.home, "sync",
                                 "--quiet"], stderr=subprocess.PIPE)
        partial = os.path.join(self.server.data, "blobs", "partial", blake(audio))
        wait_for(lambda: os.path.exists(partial) and os.path.getsize(partial) > 2 * MiB,
                 timeout=120, what="the upload to start")
        self.server.kill9()
        sync.wait(timeout=120)
        sync.stderr.close()
        self.assertNotEqual(sync.returncode, 0)
        self.assertFalse(dev.records()[0]["synced"])
        self.assertEqual(dev.status()["pending_blob_bytes"], size)
        self.server.start()
        import sqlite3
        sdb = sqlite3.connect(os.path.join(self.server.data, "server.db"))
        row = sdb.execute("SELECT offset, complete FROM blobs").fetchone()
        sdb.close()
        held = row[0] if row else 0
        self.assertEqual(row[1] if row else 0, 0)
        # HEAD reports only bytes that were made durable, never more than the file.
        target = "/v1/projects/demo/blobs/%s" % blake(audio)
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        c.request("HEAD", target, headers=self.signed(dev, target, "HEAD"))
        r = c.getresponse()
        r.read()
        c.close()
        self.assertEqual(r.status, 200)
        self.assertEqual(int(r.getheader("Upload-Offset")), held)
        self.assertLessEqual(held, os.path.getsize(partial))
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=30)
        proxy.stdout.close()
        db = dev.db()
        db.execute("UPDATE settings SET value = ? WHERE key = 'server'", (self.server.url,))
        db.commit()
        db.close()
        dev.ok("sync")
        self.assertTrue(dev.records()[0]["synced"])
        final = os.path.join(self.server.data, "blobs", blake(audio)[:2], blake(audio))
        self.assertEqual(blake(final), blake(audio))
        self.assertFalse(os.path.exists(partial))

    def test_abuse(self):
        dev = enrolled_device(self.tmp, self.server)
        a = os.path.join(self.tmp, "a.jpg")
        b = os.path.join(self.tmp, "b.jpg")
        random_file(a, 300000, 3)
        random_file(b, 300000, 4)
        dev.add("observation", "--attach", a)
        dev.ok("config", "set", "blob_chunk", "65536")
        # Entries only, so the blob is referenced but not uploaded.
        db = dev.db()
        db.execute("UPDATE blobs SET uploaded = 1")
        db.commit()
        db.close()
        dev.ok("sync")
        import http.client

        def patch(hexhash, body, offset, dev_=dev):
            target = "/v1/projects/demo/blobs/%s" % hexhash
            h = self.signed(dev_, target, "PATCH", (offset, len(body)))
            h["Upload-Offset"] = str(offset)
            c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            c.request("PATCH", target, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            c.close()
            return r.status, r.getheader("Upload-Offset"), data

        # No entry names it: 403.
        status, _, _ = patch(blake(b), b"x" * 100, 0)
        self.assertEqual(status, 403)
        # Wrong offset: 409 with the right one.
        status, off, _ = patch(blake(a), b"x" * 100, 5000)
        self.assertEqual((status, off), (409, "0"))
        # Wrong content for the hash: refused at the end, the partial file gone.
        with open(b, "rb") as f:
            wrong = f.read()
        status, off, _ = patch(blake(a), wrong[:200000], 0)
        self.assertEqual((status, off), (200, "200000"))
        status, _, body = patch(blake(a), wrong[200000:], 200000)
        self.assertEqual(status, 400, body)
        self.assertEqual(json.loads(body)["error"], "hash_mismatch")
        self.assertFalse(os.path.exists(os.path.join(self.server.data, "blobs", "partial",
                                                     blake(a))))
        # A chunk past the size the entry gives: 413.
        status, _, _ = patch(blake(a), b"x" * 300001, 0)
        self.assertEqual(status, 413)
        # A coordinator of another project: 404 for the same hash.
        other = enrolled_device(self.tmp, self.server, name="o", project="other",
                                role="coordinator")
        target = "/v1/projects/demo/blobs/%s" % blake(a)
        status, _ = self.server.request("GET", target, headers=self.signed(other, target))
        self.assertEqual(status, 404)
        # The real sync still gets it there.
        db = dev.db()
        db.execute("UPDATE blobs SET uploaded = 0")
        db.commit()
        db.close()
        dev.ok("sync")
        final = os.path.join(self.server.data, "blobs", blake(a)[:2], blake(a))
        self.assertEqual(blake(final), blake(a))
        self.assertTrue(self.server.health_ok())

    def test_blob_over_the_cap(self):
        self.server.stop()
        self.server.extra = ["--blob-max-bytes", str(MiB)]
        self.server.start()
        dev = enrolled_device(self.tmp, self.server)
        big = os.path.join(self.tmp, "big.wav")
        random_file(big, 2 * MiB, 5)
        dev.add("interview", "--attach", big)
        p = dev.run("sync")
        self.assertEqual(p.returncode, 76, p.err)
        self.assertIn("cap", p.err)
        # The entry is there; the record is not synced.
        self.assertEqual(dev.status()["server_have_seq"], 1)
        self.assertFalse(dev.records()[0]["synced"])


class BlobMemoryTest(TempTestCase):
    """Peak memory of the agent and the server moving 256 MiB (plain build)."""

    def test_peak_rss_stays_small(self):
        server = Server(self.tmp).start()
        try:
            dev = enrolled_device(self.tmp, server)
            f = os.path.join(self.tmp, "big.bin")
            size = 256 * MiB
            random_file(f, size, 6)
            maxrss = os.path.join(BIN, "tests", "tools", "maxrss")

            def peak(*args):
                p = subprocess.run([maxrss, os.path.join(BIN, "fieldsync"), *args],
                                   capture_output=True, timeout=600)
                self.assertEqual(p.returncode, 0, p.stderr)
                line = [l for l in p.stderr.decode().splitlines() if l.startswith("maxrss ")][-1]
                return int(line.split()[1])

            class R:
                def __init__(self, kib):
                    self.ru_maxrss = kib

            ru_add = R(peak("--home", dev.home, "add", "interview", "--attach", f))
            ru_sync = R(peak("--home", dev.home, "sync", "--quiet"))
            co = enrolled_device(self.tmp, server, name="co", role="coordinator")
            ru_pull = R(peak("--home", co.home, "pull", "--attachments", "--quiet"))
            with open("/proc/%d/status" % server.proc.pid) as s:
                hwm = [l for l in s if l.startswith("VmHWM:")][0]
            server_kib = int(hwm.split()[1])
            print("memory-256MiB add=%dKiB sync=%dKiB pull=%dKiB server=%dKiB" %
                  (ru_add.ru_maxrss, ru_sync.ru_maxrss, ru_pull.ru_maxrss, server_kib))
            for name, kib in (("add", ru_add.ru_maxrss), ("sync", ru_sync.ru_maxrss),
                              ("pull", ru_pull.ru_maxrss), ("server", server_kib)):
                self.assertLess(kib, 32 * 1024, "%s peaked at %d KiB" % (name, kib))
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
