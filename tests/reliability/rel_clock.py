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
import socket
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rel_common import SOAK, Clock, row_line  # noqa: E402
from fsenv import Device, Server, TempTestCase, binary, feed_of  # noqa: E402
from relenv import set_server_url  # noqa: E402

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


class PushGate:
    """A TCP relay between one agent and the server that counts the push requests
    going up ("POST /v1/feeds/<feed>/entries") and calls on_push(k) once the k-th
    request line is in, before the bytes that end it (and the body after them) are
    forwarded. The agent sends a request and waits for its answer before it signs
    the next, so what on_push does happens between two pushes: no timing involved."""

    MARK = b"POST /v1/feeds/"

    def __init__(self, target_port, on_push):
        self.target_port = target_port
        self.on_push = on_push
        self.pushes = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.acceptor = threading.Thread(target=self.accept, daemon=True)
        self.acceptor.start()

    def accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.conns += [client, upstream]
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self.pump, args=(src, dst, up), daemon=True).start()

    def pump(self, src, dst, up):
        buf = b""  # what may still hold the start of a request line
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up:
                    buf += data
                    while True:
                        i = buf.find(self.MARK)
                        if i < 0:
                            buf = buf[-(len(self.MARK) - 1):]  # a mark split between reads
                            break
                        e = buf.find(b"\r\n", i)
                        if e < 0:
                            buf = buf[i:] if len(buf) - i < 4096 else b""
                            break
                        path = buf[i:e].split(b" ")[1]
                        if path.endswith(b"/entries"):
                            with self.lock:
                                self.pushes += 1
                                k = self.pushes
                            # Before the body goes on: the server cannot answer until it does.
                            self.on_push(k)
                        buf = buf[e:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.acceptor.join()
        self.sock.close()
        for c in self.conns:
            c.close()


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
        # Mid-run: as the push after the first third goes up, the clock steps back.
        # That push was signed before; the next one is signed ten years ago.
        jumped = threading.Event()

        def on_push(k):
            if k == n + 1:
                with open(stamp, "w") as f:
                    f.write("-10y\n")
                jumped.set()
        gate = PushGate(server.port, on_push)
        set_server_url(dev, "http://127.0.0.1:%d" % gate.port)
        refused0 = self.clock_refusals(server)
        p = subprocess.Popen([binary("fieldsync"), "--home", dev.home, "sync"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, NO_COLOR="1", **env))
        try:
            out, err = p.communicate(timeout=300)
        finally:
            gate.close()
        self.assertEqual(p.returncode, 0, err.decode())
        self.assertTrue(jumped.is_set(), "the sync made %d pushes, fewer than %d" % (gate.pushes, n + 1))
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
