#!/usr/bin/env python3
"""Self-test of tests/tools/faultproxy, the fault-injecting TCP relay.

Drives the real binary ($FS_BIN/tests/tools/faultproxy) in front of small echo, sink and
source servers on 127.0.0.1. Python 3 standard library only. Nothing here sleeps to
synchronise: every wait is on a socket, a thread or the process, with a timeout. The proxy
writes its stats file before it closes the client socket, so a test that has seen the close
may read the stats at once.
"""
import json
import os
import queue
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BIN = os.path.join(os.environ.get("FS_BIN", "build/dev"), "tests", "tools", "faultproxy")
SANITIZED = os.environ.get("FS_SANITIZED", "0").upper() in ("1", "ON", "TRUE", "YES")
TIMEOUT = 60.0  # any single wait; generous for sanitized builds on a busy machine
MiB = 1024 * 1024


def pattern(n, seed=1):
    return random.Random(seed).randbytes(n)


class Server:
    """A threaded TCP server on 127.0.0.1.

    mode "echo" sends back what it reads, "sink" only reads, "source" sends `source_bytes`
    then half-closes and reads until the end. Each finished connection puts a dict
    {"received", "sent", "end"} on `results`, end being "eof", "reset" or "timeout".
    """

    def __init__(self, mode, source_bytes=0):
        self.mode = mode
        self.source_bytes = source_bytes
        self.results = queue.Queue()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed by close()
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        received = sent = 0
        end = "eof"
        buf = bytearray(256 * 1024)
        view = memoryview(buf)
        conn.settimeout(TIMEOUT)
        try:
            if self.mode == "source":
                block = pattern(64 * 1024, seed=7)
                while sent < self.source_bytes:
                    n = min(len(block), self.source_bytes - sent)
                    conn.sendall(block[:n])
                    sent += n
                conn.shutdown(socket.SHUT_WR)
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                received += n
                if self.mode == "echo":
                    conn.sendall(view[:n])
                    sent += n
            if self.mode == "echo":
                conn.shutdown(socket.SHUT_WR)
        except (ConnectionResetError, BrokenPipeError):
            end = "reset"
        except socket.timeout:
            end = "timeout"
        except OSError as e:
            end = "error %s" % e
        finally:
            conn.close()
            self.results.put({"received": received, "sent": sent, "end": end})

    def result(self):
        return self.results.get(timeout=TIMEOUT)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        self.sock.close()
        self.thread.join(TIMEOUT)


class Proxy:
    """The faultproxy binary under test, with a stats file in a temporary folder."""

    def __init__(self, target_port, *args, tmpdir, target=None):
        self.stats_path = os.path.join(tmpdir, "stats.json")
        cmd = [BIN, "--target", target or "127.0.0.1:%d" % target_port,
               "--stats", self.stats_path, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        if not ready:
            self.kill()
            raise AssertionError("faultproxy printed no port line")
        line = self.proc.stdout.readline()
        m = re.fullmatch(rb"port (\d+)\n", line)
        if not m:
            self.kill()
            raise AssertionError("bad first line %r" % line)
        self.port = int(m.group(1))

    def stats(self):
        with open(self.stats_path, "rb") as f:
            text = f.read()
        assert text.endswith(b"\n") and text.count(b"\n") == 1, text
        st = json.loads(text)
        assert sorted(st) == ["bytes_down", "bytes_up", "conns", "cuts"], st
        return st

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(TIMEOUT)
        rest = self.proc.stdout.read()
        self.proc.stdout.close()
        assert rest == b"", "more than one line on stdout: %r" % rest
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()


def connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionResetError:
        # The proxy accepted, relayed and reset (a cut, a refused target) before connect()
        # looked at its outcome. What it relayed is still queued: the reads will show it.
        pass
    except BaseException:
        s.close()
        raise
    return s


def exchange(port, payload=b"", half_close=True):
    """Sends payload through the proxy (then half-closes) while reading until the end.

    Returns (received bytes, "eof" | "reset", error of the sending side or None)."""
    s = connect(port)
    send_error = []

    def sender():
        try:
            if payload:
                s.sendall(payload)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            send_error.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got = bytearray()
    end = "eof"
    try:
        while True:
            b = s.recv(256 * 1024)
            if not b:
                break
            got += b
    except ConnectionResetError:
        end = "reset"
    t.join(TIMEOUT)
    assert not t.is_alive(), "sender stuck"
    s.close()
    return bytes(got), end, (send_error[0] if send_error else None)


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


class FaultProxyTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(os.access(BIN, os.X_OK), "no binary at %s" % BIN)
        self._tmp = tempfile.TemporaryDirectory(prefix="faultproxy-")
        self.tmp = self._tmp.name
        self.servers = []
        self.proxies = []

    def tearDown(self):
        for p in self.proxies:
            p.kill()
        for s in self.servers:
            s.close()
        self._tmp.cleanup()

    def server(self, mode, **kw):
        s = Server(mode, **kw)
        self.servers.append(s)
        return s

    def proxy(self, target_port, *args, **kw):
        p = Proxy(target_port, *args, tmpdir=self.tmp, **kw)
        self.proxies.append(p)
        return p

    # ---- clean relay ----------------------------------------------------------------------

    def test_clean_echo_8mib_both_ways(self):
        srv = self.server("echo")
        px = self.proxy(srv.port)
        data = pattern(8 * MiB)
        got, end, err = exchange(px.port, data)
        self.assertIsNone(err)
        self.assertEqual(end, "eof")
        self.assertEqual(len(got), len(data))
        self.assertTrue(got == data, "echo differs")
        r = srv.result()
        self.assertEqual((r["received"], r["sent"], r["end"]), (8 * MiB, 8 * MiB, "eof"))
        self.assertEqual(px.stats(),
                         {"conns": 1, "cuts": 0, "bytes_up": 8 * MiB, "bytes_down": 8 * MiB})
        self.assertEqual(px.stop(), 0)

    def test_large_transfer_bounded_memory(self):
        """256 MiB each way through one connection at loopback speed, in constant memory."""
        total = 256 * MiB
        srv = self.server("echo")
        px = self.proxy(srv.port)
        block = pattern(MiB, seed=3)
        s = connect(px.port)
        errors = []

        def sender():
            try:
                for _ in range(total // MiB):
                    s.sendall(block)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=sender, daemon=True)
        start = time.monotonic()
        t.start()
        buf = bytearray(MiB)
        view = memoryview(buf)
        got = 0
        while True:
            n = s.recv_into(view[: MiB - got % MiB])
            if n == 0:
                break
            off = got % MiB
            if view[:n] != block[off:off + n]:
                self.fail("echo differs at byte %d" % got)
            got += n
        elapsed = time.monotonic() - start
        t.join(TIMEOUT)
        s.close()
        self.assertEqual(errors, [])
        self.assertEqual(got, total)
        rate = 2 * total / MiB / max(elapsed, 1e-6)
        print("\n  256 MiB each way in %.2f s: %.0f MiB/s relayed" % (elapsed, rate),
              file=sys.stderr)
        with open("/proc/%d/status" % px.proc.pid) as f:
            hwm = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))
        print("  proxy peak RSS %d KiB" % hwm, file=sys.stderr)
        if not SANITIZED:
            self.assertLess(hwm, 16 * 1024, "proxy memory grew with the transfer")
            self.assertGreater(rate, 100, "relay too slow")
        self.assertEqual(px.stats(),
                         {"conns": 1, "cuts": 0, "bytes_up": total, "bytes_down": total})
        self.assertEqual(px.stop(), 0)

    # ---- cuts ------------------------------------------------------------------------------

    def test_cut_up_exact(self):
        srv = self.server("sink")
        px = self.proxy(srv.port, "--cut-up", "1000:1000")
        got, end, _ = exchange(px.port, pattern(100 * 1024))
        self.assertEqual(got, b"")
        self.assertIn(end, ("reset", "eof"))
        r = srv.result()
        self.assertEqual(r["received"], 1000)
        self.assertEqual(r["end"], "reset")
        self.assertEqual(px.stats(), {"conns": 1, "cuts": 1, "bytes_up": 1000, "bytes_down": 0})
        self.assertEqual(px.stop(), 0)

    def test_cut_down_exact(self):
        srv = self.server("source", source_bytes=MiB)
        px = self.proxy(srv.port, "--cut-down", "5000:5000")
        got, end, _ = exchange(px.port, half_close=False)
        self.assertEqual(len(got), 5000)
        self.assertEqual(got, pattern(64 * 1024, seed=7)[:5000])
        self.assertIn(end, ("reset", "eof"))
        self.assertEqual(srv.result()["end"], "reset")
        self.assertEqual(px.stats(), {"conns": 1, "cuts": 1, "bytes_up": 0, "bytes_down": 5000})
        self.assertEqual(px.stop(), 0)

    def test_cut_down_range_with_suffixes(self):
        srv = self.server("source", source_bytes=4 * MiB)
        px = self.proxy(srv.port, "--cut-down", "100k:2M", "--seed", "11")
        total = 0
        for _ in range(3):
            got, end, _ = exchange(px.port, half_close=False)
            self.assertTrue(100 * 1024 <= len(got) <= 2 * MiB, len(got))
            self.assertIn(end, ("reset", "eof"))
            total += len(got)
        self.assertEqual(px.stats(), {"conns": 3, "cuts": 3, "bytes_up": 0, "bytes_down": total})

    def test_stats_match_with_cut_prob(self):
        srv = self.server("sink")
        px = self.proxy(srv.port, "--cut-up", "1k:64k", "--cut-prob", "0.5", "--seed", "5")
        size = 100 * 1024
        received = []
        cuts = 0
        for i in range(12):
            got, end, _ = exchange(px.port, pattern(size, seed=i))
            self.assertEqual(got, b"")
            r = srv.result()
            received.append(r["received"])
            if r["received"] < size:
                cuts += 1
                self.assertTrue(1024 <= r["received"] <= 64 * 1024, r)
                self.assertEqual(r["end"], "reset")
                self.assertIn(end, ("reset", "eof"))
            else:
                self.assertEqual((r["received"], r["end"], end), (size, "eof", "eof"))
        self.assertTrue(0 < cuts < 12, received)  # seed 5 gives a mix
        st = px.stats()
        self.assertEqual(st, {"conns": 12, "cuts": cuts, "bytes_up": sum(received),
                              "bytes_down": 0})
        self.assertLessEqual(st["bytes_up"], 12 * size)

    def cut_points(self, seed):
        srv = self.server("sink")
        px = self.proxy(srv.port, "--cut-up", "1:100000", "--cut-prob", "0.7",
                        "--seed", str(seed))
        points = []
        for i in range(6):
            exchange(px.port, pattern(128 * 1024, seed=i))
            points.append(srv.result()["received"])
        self.assertEqual(px.stop(), 0)
        return points

    def test_determinism(self):
        a = self.cut_points(42)
        b = self.cut_points(42)
        c = self.cut_points(43)
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)
        self.assertTrue(all(1 <= n <= 100000 or n == 128 * 1024 for n in a + c), a + c)
        self.assertGreater(len(set(a)), 1, a)

    # ---- stalls and latency -----------------------------------------------------------------

    def echo_time(self, px, payload):
        start = time.monotonic()
        got, end, err = exchange(px.port, payload)
        self.assertEqual((got, end, err), (payload, "eof", None))
        return time.monotonic() - start

    def test_delay(self):
        srv = self.server("echo")
        px = self.proxy(srv.port, "--delay-ms", "150")
        self.assertGreaterEqual(self.echo_time(px, b"x"), 0.28)  # one chunk each way
        self.echo_time(px, pattern(256 * 1024))  # pipelined chunks stay byte-exact
        self.assertEqual(px.stats()["bytes_up"], 1 + 256 * 1024)

    def test_stall(self):
        srv = self.server("echo")
        px = self.proxy(srv.port, "--stall-ms", "400", "--stall-prob", "1",
                        "--stall-at", "10k:10k")
        self.assertGreaterEqual(self.echo_time(px, pattern(64 * 1024)), 0.39)
        self.assertGreaterEqual(self.echo_time(px, b"y"), 0.0)  # below 10k: no stall
        self.assertEqual(px.stop(), 0)
        px0 = self.proxy(srv.port, "--stall-ms", "400", "--stall-at", "0")  # prob 1 by default
        self.assertGreaterEqual(self.echo_time(px0, b"z"), 0.39)

    # ---- robustness ---------------------------------------------------------------------------

    def test_refused_target_closes_client(self):
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        try:
            px = self.proxy(hole.getsockname()[1])
            got, end, _ = exchange(px.port, b"hello", half_close=False)
            self.assertEqual(got, b"")
            self.assertIn(end, ("reset", "eof"))
            self.assertEqual(px.stats(), {"conns": 1, "cuts": 0, "bytes_up": 0, "bytes_down": 0})
            self.assertEqual(px.stop(), 0)
        finally:
            hole.close()

    def test_max_conns(self):
        srv = self.server("echo")
        px = self.proxy(srv.port, "--max-conns", "2")
        c1, c2, c3 = connect(px.port), connect(px.port), None
        try:
            for c in (c1, c2):
                c.sendall(b"a")
                self.assertEqual(c.recv(1), b"a")
            c3 = connect(px.port)  # completes in the kernel backlog
            c3.sendall(b"c")
            ready, _, _ = select.select([c3], [], [], 0.3)
            self.assertEqual(ready, [], "a third connection was served")
            c1.shutdown(socket.SHUT_WR)
            self.assertEqual(c1.recv(1), b"")
            self.assertEqual(c3.recv(1), b"c")
        finally:
            for c in (c1, c2, c3):
                if c:
                    c.close()

    def test_abusive_clients(self):
        srv = self.server("echo")
        px = self.proxy(srv.port, "--max-conns", "16")
        count = 0
        for i in range(10):  # connect and close at once
            connect(px.port).close()
            count += 1
        for i in range(10):  # connect and reset
            rst_close(connect(px.port))
            count += 1
        for i in range(10):  # send then reset
            s = connect(px.port)
            s.sendall(pattern(10000, seed=i))
            rst_close(s)
            count += 1
        many = [connect(px.port) for _ in range(40)]  # more than --max-conns at once
        for s in many:
            s.sendall(b"q")
        for s in many:
            rst_close(s)
        count += len(many)
        s = connect(px.port)  # writes a lot, never reads, then resets
        s.setblocking(False)
        blob = pattern(MiB)
        ready = True
        while ready:
            try:
                s.send(blob)
            except BlockingIOError:
                ready = bool(select.select([], [s], [], 0.2)[1])
        rst_close(s)
        count += 1
        self.assertIsNone(px.proc.poll())
        got, end, _ = exchange(px.port, b"still alive")
        self.assertEqual((got, end), (b"still alive", "eof"))
        count += 1
        st = px.stats()
        self.assertEqual((st["conns"], st["cuts"]), (count, 0))
        self.assertEqual(px.stop(), 0)

    def test_sigterm_and_sigint_exit_zero(self):
        srv = self.server("echo")
        for sig in (signal.SIGTERM, signal.SIGINT):
            px = self.proxy(srv.port)
            idle = connect(px.port)
            idle.sendall(b"i")
            self.assertEqual(idle.recv(1), b"i")
            self.assertEqual(px.stop(sig), 0)
            self.assertEqual(px.stats(), {"conns": 1, "cuts": 0, "bytes_up": 1, "bytes_down": 1})
            idle.close()

    def test_command_line(self):
        r = subprocess.run([BIN, "--help"], capture_output=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"--cut-up", r.stdout)
        for bad in ([], ["--target", "nocolon"], ["--target", "127.0.0.1:1", "--cut-up", "9:1"],
                    ["--target", "127.0.0.1:1", "--cut-prob", "1.5"],
                    ["--target", "127.0.0.1:1", "--cut-down", "1x:2"],
                    ["--target", "127.0.0.1:1", "--max-conns", "0"],
                    ["--target", "127.0.0.1:1", "--bogus"]):
            r = subprocess.run([BIN, *bad], capture_output=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 2, bad)
            self.assertEqual(r.stdout, b"", bad)


if __name__ == "__main__":
    unittest.main(verbosity=2)
