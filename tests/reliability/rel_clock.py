"""Reliability row 6: clock skew (plain build: libfaketime under the agent).

Over plain HTTP the laptop's clock may be anything: at -10 years, at +10
years, and jumping backwards in the middle of a sync, init, enroll, add and
sync still work; entries are ordered by seq, and the laptop learns the
server's time from its 401 "clock" answers (the server's time is the
authority for tokens and request freshness). Over TLS, where certificate
dates cannot be checked with a wrong clock, the user gets one sentence about
the clock and exit 75; once the clock is right, sync completes.

Only the agent runs under faketime; the server keeps the true time."""

import os
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rel_common import SOAK, Clock, row_line  # noqa: E402
from fsenv import Device, Server, TempTestCase, binary, feed_of, wait_for  # noqa: E402

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def faked(offset=None, stamp_file=None):
    """The environment of an agent whose clock is off by offset (faketime
    syntax, e.g. '-10y'), or read afresh from stamp_file at every call."""
    e = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    if stamp_file:
        e["FAKETIME_TIMESTAMP_FILE"] = stamp_file
        e["FAKETIME_NO_CACHE"] = "1"
    else:
        e["FAKETIME"] = offset
    return e


class ClockRow(TempTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(LIBFAKETIME):
            self.skipTest("libfaketime is not installed")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
        super().tearDown()

    def have(self, server, dev):
        rows = [d for d in server.devices() if d["feed"] == feed_of(dev)]
        return rows[0]["have_seq"] if rows else 0

    def clock_refusals(self, server):
        return server.metrics().get('fieldsync_refused_total{reason="clock"}', 0)

    def skewed_device(self, server, name, env, n, cacert=None):
        """init, enroll, add n records and sync, all with the clock of env."""
        dev = Device(self.tmp, name)
        dev.ok("init", "--name", name, env=env)
        args = ["enroll", server.url, "--token-file", "-"]
        if cacert:
            args += ["--cacert", cacert]
        dev.ok(*args, input=server.token(name=name), env=env)
        for i in range(n):
            dev.ok("add", "interview", "--note", "%s %d" % (name, i), env=env)
        return dev

    # ---- plain HTTP ------------------------------------------------------------

    def plain_http(self):
        server = Server(self.tmp, "plain").start()
        self.servers.append(server)
        n = 40 if SOAK else 12
        figures = {}
        for label, offset in (("minus10y", "-10y"), ("plus10y", "+10y")):
            env = faked(offset)
            dev = self.skewed_device(server, label, env, n)
            before = self.clock_refusals(server)
            dev.ok("sync", env=env)
            self.assertEqual(self.have(server, dev), n, label)
            self.assertGreaterEqual(self.clock_refusals(server), before + 1,
                                    "the skewed clock was never refused: the row tests nothing")
            # The learned offset is kept, so the next sync needs no refusal.
            more = self.clock_refusals(server)
            dev.ok("add", "interview", "--note", "%s again" % label, env=env)
            dev.ok("sync", env=env)
            self.assertEqual(self.clock_refusals(server), more, label)
            # The clock is put right: the stored offset is now wrong, and is relearnt.
            dev.ok("add", "interview", "--note", "%s right" % label)
            dev.ok("sync")
            self.assertEqual(self.have(server, dev), n + 2, label)
            self.assertEqual(dev.status()["pending_entries"], 0)
            self.assertIn("ok:", dev.ok("verify").out)
            figures[label] = "ok"
        figures["backwards"] = self.jump_backwards(server, n)
        out = server.admin("check").out
        self.assertIn("ok:", out)
        return figures

    def jump_backwards(self, server, n):
        """Records at +10y, then now, then -10y (the clock stepped back twice),
        then a sync of one entry per push during which the clock steps back
        ten years."""
        stamp = os.path.join(self.tmp, "faketime.stamp")
        with open(stamp, "w") as f:
            f.write("+10y\n")
        env = faked(stamp_file=stamp)
        dev = self.skewed_device(server, "jumper", env, n)
        with open(stamp, "w") as f:
            f.write("+0\n")
        for i in range(n):
            dev.ok("add", "interview", "--note", "now %d" % i, env=env)
        with open(stamp, "w") as f:
            f.write("-10y\n")
        for i in range(n):
            dev.ok("add", "interview", "--note", "past %d" % i, env=env)
        total = 3 * n
        dev.ok("config", "set", "batch_max_entries", "1")
        with open(stamp, "w") as f:
            f.write("+0\n")
        # Mid-run: once a third of the pushes are in, the clock steps back.
        applied0 = server.metrics()["fieldsync_pushes_applied_total"]
        refused0 = self.clock_refusals(server)
        p = subprocess.Popen([binary("fieldsync"), "--home", dev.home, "sync"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, NO_COLOR="1", **env))
        jumped = threading.Event()

        def watch():
            try:
                wait_for(lambda: p.poll() is not None or
                         server.metrics()["fieldsync_pushes_applied_total"] - applied0 >= n,
                         timeout=120, what="a third of the pushes")
            finally:
                if p.poll() is None:
                    with open(stamp, "w") as f:
                        f.write("-10y\n")
                    jumped.set()
        t = threading.Thread(target=watch)
        t.start()
        out, err = p.communicate(timeout=300)
        t.join()
        self.assertEqual(p.returncode, 0, err.decode())
        self.assertTrue(jumped.is_set(), "the sync ended before the clock could jump")
        self.assertEqual(self.have(server, dev), total)
        # After the jump the laptop's signed requests were refused, and it relearnt.
        self.assertGreater(self.clock_refusals(server), refused0)
        # The entries' "at" go backwards; their seqs do not.
        with open(stamp, "w") as f:
            f.write("+0\n")
        recs = dev.records()
        self.assertEqual(len(recs), total)
        self.assertTrue(all(r["synced"] for r in recs))
        return "ok(jumped@%d/%d)" % (n, total)

    # ---- TLS ----------------------------------------------------------------------

    def make_cert(self):
        cert = os.path.join(self.tmp, "cert.pem")
        key = os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        return cert, key

    def tls(self):
        cert, key = self.make_cert()
        server = Server(self.tmp, "tls", extra=["--tls-cert", cert, "--tls-key", key])
        server.scheme = "https"
        server.start()
        self.servers.append(server)
        dev = Device(self.tmp, "tlsdev")
        dev.init()
        dev.ok("enroll", server.url, "--token-file", "-", "--cacert", cert,
               input=server.token(name="tlsdev"))
        n = 0
        told = 0
        for offset, words in (("-10y", "not valid yet"), ("+10y", "no longer valid")):
            env = faked(offset)
            for i in range(5):
                dev.ok("add", "interview", "--note", "tls %s %d" % (offset, i), env=env)
                n += 1
            p = dev.run("sync", env=env)
            self.assertOneLineError(p, 75)
            self.assertIn("clock", p.err)
            self.assertIn(words, p.err)
            self.assertNotIn("SSL", p.err)
            told += 1
            self.assertEqual(self.have(server, dev), 0)
            # Enrolling another laptop with that clock is told the same.
            other = Device(self.tmp, "tls%s" % offset)
            other.ok("init", "--name", "other", env=env)
            p = other.run("enroll", server.url, "--token-file", "-", "--cacert", cert,
                          input=server.token(name="x"), env=env)
            self.assertOneLineError(p, 75)
            self.assertIn("clock", p.err)
            told += 1
        # The clock is right again: everything goes.
        dev.ok("sync")
        self.assertEqual(self.have(server, dev), n)
        self.assertEqual(dev.status()["pending_entries"], 0)
        return told, n

    def test_row(self):
        clock = Clock()
        plain = self.plain_http()
        told, n = self.tls()
        row_line("clock-skew", http_minus10y=plain["minus10y"], http_plus10y=plain["plus10y"],
                 http_backwards=plain["backwards"], tls_told_clock=told, tls_exit=75,
                 tls_after_fix="ok(%d)" % n, lost=0, time=clock)


if __name__ == "__main__":
    unittest.main(verbosity=2)
