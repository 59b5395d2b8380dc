"""fieldsyncd end to end: the real daemon, fieldsync and fieldsync-server over
loopback. Catching up with no manual sync, capped exponential backoff with
full jitter, sd_notify (READY, STATUS, WATCHDOG, STOPPING), one daemon per
store, SIGTERM in the middle of a push, waiting before init, `fieldsync sync`
waking the daemon, authentication failures, idle wake-ups, and the systemd
units (systemd-analyze verify and security)."""

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from fsenv import (BIN, RECORDS_1K, Device, Server, TempTestCase, binary,  # noqa: E402
                   enrolled_device, feed_of, read_text, wait_for)

PROXY = os.path.join(BIN, "tests", "tools", "faultproxy")
SRC = os.path.join(os.path.dirname(__file__), "..", "..")
RETRY = re.compile(r"retry in (\d+) ms \(cap (\d+) ms\)")
MASK64 = (1 << 64) - 1


def splitmix64(state):
    """The daemon's jitter generator: (new state, value)."""
    state = (state + 0x9e3779b97f4a7c15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & MASK64
    return state, z ^ (z >> 31)


class Daemon:
    """A real fieldsyncd on one device's store, its stderr in a file."""

    def __init__(self, root, dev, name="fieldsyncd"):
        self.dev = dev
        self.log_path = os.path.join(root, name + ".log")
        self.proc = None

    def start(self, env=None, wait=True):
        e = dict(os.environ)
        for k in ("FIELDSYNC_HOME", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                  "JOURNAL_STREAM", "FIELDSYNC_BACKOFF_SEED"):
            e.pop(k, None)
        if env:
            e.update(env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([binary("fieldsyncd"), "--home", self.dev.home],
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=e)
        if wait:
            wait_for(lambda: self.state().get("pid") == str(self.proc.pid) or self.exited(),
                     what="fieldsyncd to start")
            if self.exited():
                raise AssertionError("fieldsyncd exited %d at start: %s" %
                                     (self.proc.returncode, self.text()))
        return self

    def exited(self):
        return self.proc.poll() is not None

    def state(self):
        try:
            text = read_text(os.path.join(self.dev.home, "daemon.state"))
        except OSError:
            return {}
        return dict(l.split("=", 1) for l in text.splitlines() if "=" in l)

    def text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def retries(self, since=0):
        return [(int(a), int(b)) for a, b in RETRY.findall(self.text()[since:])]

    def stop(self, sig=signal.SIGTERM, timeout=30):
        rc = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            rc = self.proc.wait(timeout=timeout)
        elif self.proc:
            rc = self.proc.returncode
        if self.proc:
            self.log.close()
            self.proc = None
        return rc


def server_have(server, dev):
    """What the server holds of dev's feed, read from its database (read-only,
    WAL: safe while it serves), so that polling starts no process."""
    if not getattr(dev, "feed", None):
        dev.feed = feed_of(dev)
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(server.data, "server.db"), uri=True,
                         timeout=10)
    try:
        row = db.execute("SELECT have_seq FROM feeds WHERE feed = ?",
                         (bytes.fromhex(dev.feed),)).fetchone()
    finally:
        db.close()
    return row[0] if row else 0


def jsonl_head(path, n, dst, suffix=""):
    with open(RECORDS_1K, encoding="utf-8") as src, open(dst, "w", encoding="utf-8") as out:
        for i, line in enumerate(src):
            if i >= n:
                break
            o = json.loads(line)
            o["note"] = o["note"] + suffix
            out.write(json.dumps(o, ensure_ascii=False) + "\n")
    return dst


class DaemonTest(TempTestCase):
    def setUp(self):
        super().setUp()
        self.server = Server(self.tmp)
        self.daemons = []

    def tearDown(self):
        # A daemon ends 0 on SIGTERM; a sanitizer finding (a leak at exit)
        # would make it end otherwise.
        codes = [(d.log_path, d.stop()) for d in self.daemons]
        self.server.stop()
        bad = [(p, c) for p, c in codes if c not in (None, 0, 75)]
        if bad:
            logs = "".join(read_text(p) for p, _ in bad)
            super().tearDown()
            self.fail("fieldsyncd ended with %s: %s" % (bad, logs[-4000:]))
        super().tearDown()

    def daemon(self, dev, name="fieldsyncd"):
        d = Daemon(self.tmp, dev, name)
        self.daemons.append(d)
        return d

    def set_backoff(self, dev, base, mx):
        dev.ok("config", "set", "backoff_base_ms", str(base))
        dev.ok("config", "set", "backoff_max_ms", str(mx))

    def check_retries(self, retries, base, mx, seed):
        """Every delay below its cap; caps double from base up to the maximum
        (back to base only after a success); delays are the seeded jitter."""
        state = seed
        prev = None
        for delay, cap in retries:
            self.assertLess(delay, cap)
            self.assertGreaterEqual(delay, 0)
            if prev is None or cap == base:
                self.assertEqual(cap, base)
            else:
                self.assertEqual(cap, min(prev * 2, mx), retries)
            state, v = splitmix64(state)
            self.assertEqual(delay, v % cap, "the jitter does not follow the seed")
            prev = cap

    def test_catches_up_without_manual_sync_and_backs_off(self):
        self.server.start()
        dev = enrolled_device(self.tmp, self.server)
        base, mx, seed = 100, 800, 424242
        self.set_backoff(dev, base, mx)
        self.server.stop()
        d = self.daemon(dev).start(env={"FIELDSYNC_BACKOFF_SEED": str(seed)})
        dev.ok("import", jsonl_head(RECORDS_1K, 100, os.path.join(self.tmp, "100.jsonl")))
        wait_for(lambda: len(d.retries()) >= 2, timeout=60, what="retries while the server is down")
        self.server.start()
        wait_for(lambda: server_have(self.server, dev) == 100, timeout=120,
                 what="the server to hold all 100 records")
        wait_for(lambda: dev.status()["pending_entries"] == 0, timeout=30, what="the receipt")
        first = d.retries()
        # Down again: new records wait; the caps double up to the maximum.
        self.server.stop()
        mark = len(d.text())
        for i in range(5):
            dev.add("observation", "--note", "while the server is down %d" % i)
        wait_for(lambda: len(d.retries(mark)) >= 7, timeout=120, what="seven retries")
        second = d.retries(mark)
        print("retries while down at start: %s" % first)
        print("retries while down later:    %s" % second)
        self.assertEqual([c for _, c in second[:6]], [100, 200, 400, 800, 800, 800])
        self.check_retries(d.retries(), base, mx, seed)
        self.server.start()
        wait_for(lambda: server_have(self.server, dev) == 105, timeout=120,
                 what="the daemon to catch up")
        self.assertIn("ok: 105 entries", self.server.admin("check").out)
        wait_for(lambda: dev.status()["daemon"]["state"] == "idle", what="idle")
        st = dev.status()
        self.assertTrue(st["daemon"]["running"])
        self.assertEqual(st["daemon"]["pid"], d.proc.pid)
        self.assertIn("the server holds all 105", st["daemon"]["last_action"])
        self.assertIsNone(st["daemon"]["next_try"])
        self.assertIsNotNone(st["last_sync"])
        self.assertEqual(d.stop(), 0)
        st = dev.status()
        self.assertFalse(st["daemon"]["running"])
        self.assertIsNone(st["daemon"]["pid"])
        # Never a note in the log.
        self.assertNotIn("while the server is down", d.text())

    def test_sd_notify_ready_status_watchdog_stopping(self):
        self.server.start()
        dev = enrolled_device(self.tmp, self.server)
        self.set_backoff(dev, 100, 400)
        path = os.path.join(self.tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        self.addCleanup(sock.close)
        interval = 2.0
        msgs = []

        def recv(timeout):
            sock.settimeout(timeout)
            data = sock.recv(4096).decode()
            msgs.append((time.monotonic(), data))
            return data

        seen = [0]

        def until(pred, timeout=60, what="a notification"):
            """The next notification, in order, for which pred holds."""
            deadline = time.monotonic() + timeout
            while True:
                while seen[0] < len(msgs):
                    m = msgs[seen[0]][1]
                    seen[0] += 1
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s; got %r" % (what, [m for _, m in msgs][-10:]))
                try:
                    recv(left)
                except socket.timeout:
                    pass

        def pings():
            return [t for t, m in msgs if m == "WATCHDOG=1"]

        def status_of(m):
            for line in m.splitlines():
                if line.startswith("STATUS="):
                    return line[7:]
            return None

        d = self.daemon(dev).start(env={"NOTIFY_SOCKET": path,
                                        "WATCHDOG_USEC": str(int(interval * 1e6))}, wait=False)
        until(lambda m: "READY=1" in m.splitlines(), what="READY=1")
        ready_at = msgs[seen[0] - 1][0]
        # The watchdog: a WATCHDOG=1 within every interval, idle or not.
        while len(pings()) < 3:
            try:
                recv(interval)
            except socket.timeout:
                self.fail("no WATCHDOG=1 within %.1f s" % interval)
        self.assertLess(pings()[0] - ready_at, interval)
        until(lambda m: (status_of(m) or "").startswith("all synced"), what="all synced")
        # Records added: STATUS tells that they wait, then that they went.
        for i in range(4):
            dev.add("interview", "--note", "n%d" % i)
        # How many are waiting when the daemon looks depends on when it wakes
        # (it may push after the first add): some wait, then all went.
        until(lambda m: re.search(r"\d+ changes? waiting", status_of(m) or "")
              or re.search(r"of \d+ changes?", status_of(m) or ""), what="changes waiting")
        m = until(lambda m: (status_of(m) or "").startswith("all synced")
                  and server_have(self.server, dev) == 4, what="all 4 synced")
        self.assertIn("server reachable", m)
        self.assertRegex(m, r"last sync \d\d:\d\d")
        # The server goes away: records wait, the server is unreachable.
        self.server.stop()
        dev.add("interview", "--note", "offline")
        m = until(lambda m: "server unreachable" in (status_of(m) or ""), what="unreachable")
        self.assertIn("1 change waiting", m)
        self.assertIn("next try", m)
        self.server.start()
        until(lambda m: (status_of(m) or "").startswith("all synced"), what="synced again")
        self.assertEqual(server_have(self.server, dev), 5)
        # Every gap between watchdog pings stayed below the interval.
        gaps = [b - a for a, b in zip(pings(), pings()[1:])]
        print("watchdog pings %d, longest gap %.2f s" % (len(pings()), max(gaps)))
        self.assertLess(max(gaps), interval)
        d.proc.send_signal(signal.SIGTERM)
        until(lambda m: "STOPPING=1" in m.splitlines(), what="STOPPING=1")
        self.assertEqual(d.proc.wait(timeout=30), 0)

    def test_networkmanager_connected_ends_the_backoff(self):
        """NetworkManager's StateChanged on the system bus (a private bus here,
        with a stand-in for NetworkManager): a connected state (60, 70) ends
        the wait at once; another state (20, disconnected) does not."""
        daemon_bin, fake = shutil.which("dbus-daemon"), os.path.join(BIN, "tests", "tools",
                                                                      "fake_nm")
        if not daemon_bin or not os.path.exists(fake):
            self.skipTest("needs dbus-daemon (scripts/setup installs it) and a libsystemd build")
        sock = os.path.join(self.tmp, "bus")
        conf = os.path.join(self.tmp, "bus.conf")
        with open(conf, "w") as f:
            f.write('<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration '
                    '1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
                    "<busconfig><type>system</type><listen>unix:path=%s</listen>"
                    "<auth>EXTERNAL</auth><policy context=\"default\">"
                    "<allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>"
                    "<allow own=\"*\"/><allow user=\"*\"/></policy></busconfig>\n" % sock)
        bus = subprocess.Popen([daemon_bin, "--config-file", conf, "--nofork", "--nopidfile",
                                "--print-address"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        nm = None
        try:
            address = bus.stdout.readline().decode().strip()
            self.assertTrue(address.startswith("unix:"), address)
            env = {"DBUS_SYSTEM_BUS_ADDRESS": address}
            self.server.start()
            dev = enrolled_device(self.tmp, self.server)
            # A wait far longer than the test: only an event can end it.
            self.set_backoff(dev, 600000, 600000)
            self.server.stop()
            dev.add("interview", "--note", "to go when the network says so")
            d = self.daemon(dev).start(env=env)
            wait_for(lambda: len(d.retries()) >= 1, what="the first failed attempt")
            self.server.start()
            nm = subprocess.Popen([fake], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=dict(os.environ, **env))
            self.assertEqual(nm.stdout.readline().strip(), b"ready")
            for state in (20, 70):
                nm.stdin.write(b"%d\n" % state)
                nm.stdin.flush()
                self.assertEqual(nm.stdout.readline().strip(), b"sent %d" % state)
                wait_for(lambda: "NetworkManager: state %d" % state in d.text(),
                         what="fieldsyncd to receive state %d" % state)
            wait_for(lambda: server_have(self.server, dev) == 1, timeout=60,
                     what="the push NetworkManager's signal allows")
            # One wake-up, after the connected state: the disconnected one did not count.
            text = d.text()
            woke = "NetworkManager reports a connection; trying again"
            self.assertEqual(text.count(woke), 1, text)
            self.assertLess(text.index("NetworkManager: state 70 (connected)"), text.index(woke))
            self.assertEqual(len(d.retries()), 1)
        finally:
            if nm:
                nm.stdin.close()
                nm.wait(timeout=30)
                nm.stdout.close()
                nm.stderr.close()
            bus.terminate()
            bus.wait(timeout=30)
            bus.stdout.close()

    def test_second_daemon_exits_75(self):
        dev = Device(self.tmp)
        dev.init()
        d1 = self.daemon(dev).start()
        d2 = self.daemon(dev, "second").start(wait=False)
        self.assertEqual(d2.proc.wait(timeout=30), 75)
        self.assertIn("already running (pid %d)" % d1.proc.pid, d2.text())
        self.assertFalse(d1.exited())
        self.assertEqual(d1.stop(), 0)
        # Once the first is gone, a new one starts.
        d3 = self.daemon(dev, "third").start()
        self.assertFalse(d3.exited())

    def test_journal_prefixes_only_when_stderr_is_the_journal(self):
        dev = Device(self.tmp)
        dev.init()
        d = self.daemon(dev, "journal")
        # The log file stands in for the journal's stream: same device and inode.
        open(d.log_path, "ab").close()
        st = os.stat(d.log_path)
        d.start(env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
        wait_for(lambda: d.state().get("state") == "not-enrolled", what="not-enrolled")
        self.assertEqual(d.stop(), 0)
        lines = [l for l in d.text().splitlines() if l]
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^<[3-7]>[^<]")
        self.assertIn("<5>", d.text())  # the one line about waiting is a notice
        # Anything else (a terminal, a file): plain "fieldsyncd: " lines.
        d2 = self.daemon(dev, "plain").start(env={"JOURNAL_STREAM": "1:1"})
        wait_for(lambda: d2.state().get("state") == "not-enrolled", what="not-enrolled")
        self.assertEqual(d2.stop(), 0)
        for line in [l for l in d2.text().splitlines() if l]:
            self.assertTrue(line.startswith("fieldsyncd: "), line)

    def test_sigterm_mid_push_then_next_start_finishes(self):
        self.server.start()
        dev = enrolled_device(self.tmp, self.server)
        dev.ok("import", RECORDS_1K)
        dev.ok("config", "set", "batch_max_entries", "20")
        # A slow link: every chunk waits, so the push takes a while.
        proxy = subprocess.Popen([PROXY, "--target", "127.0.0.1:%d" % self.server.port,
                                  "--delay-ms", "150"], stdout=subprocess.PIPE)
        self.addCleanup(lambda: (proxy.poll() is None and proxy.terminate(), proxy.wait(30),
                                 proxy.stdout.close()))
        port = int(proxy.stdout.readline().split()[1])
        self.set_server(dev, "http://127.0.0.1:%d" % port)
        d = self.daemon(dev).start()
        wait_for(lambda: server_have(self.server, dev) >= 60, timeout=120,
                 what="part of the push to arrive")
        self.assertEqual(d.state()["state"], "syncing")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(timeout=30)
        took = time.monotonic() - t0
        d.stop()
        print("SIGTERM mid-push: exit %d after %.2f s, server had %d" %
              (rc, took, server_have(self.server, dev)))
        self.assertEqual(rc, 0)
        self.assertLess(took, 5.0)
        self.assertIn("the next start resumes it", d.text())
        # Nothing half done: the store verifies, its receipt is what the
        # server holds or less, the server's chain checks.
        dev.ok("verify")
        have = server_have(self.server, dev)
        self.assertLess(have, 1000)
        self.assertLessEqual(dev.status()["server_have_seq"], have)
        self.assertIn("ok: %d entries" % have, self.server.admin("check").out)
        # The next start finishes the push (straight to the server now).
        self.set_server(dev, self.server.url)
        self.daemon(dev, "again").start()
        wait_for(lambda: server_have(self.server, dev) == 1000, timeout=120,
                 what="the next start to finish the push")
        wait_for(lambda: dev.status()["pending_entries"] == 0, what="the last receipt")
        m = self.server.metrics()
        self.assertEqual(m["fieldsync_entries_stored_total"], 1000)
        self.assertIn("ok: 1000 entries", self.server.admin("check").out)

    def set_server(self, dev, url):
        db = dev.db()
        db.execute("UPDATE settings SET value = ? WHERE key = 'server'", (url,))
        db.commit()
        db.close()

    def test_waits_before_init_then_syncs_once_enrolled(self):
        self.server.start()
        dev = Device(self.tmp)
        d = self.daemon(dev).start()
        wait_for(lambda: d.state().get("state") == "no-store", what="no-store")
        dev.init()
        wait_for(lambda: d.state().get("state") == "not-enrolled", what="not-enrolled")
        for i in range(3):
            dev.add("interview", "--note", "before enrolling %d" % i)
        st = dev.status()
        self.assertEqual(st["daemon"]["state"], "not-enrolled")
        tok = self.server.token(name="laptop")
        dev.ok("enroll", self.server.url, "--token-file", "-", input=tok)
        wait_for(lambda: server_have(self.server, dev) == 3, timeout=60,
                 what="the push after enrollment")
        text = d.text()
        # Quietly: one line per thing waited for, no retries, no errors.
        self.assertEqual(len(RETRY.findall(text)), 0, text)
        self.assertEqual(text.count("no store in"), 1, text)
        self.assertEqual(text.count("not enrolled"), 1, text)
        self.assertNotIn(tok, text)

    def test_fieldsync_sync_wakes_the_daemon(self):
        self.server.start()
        dev = enrolled_device(self.tmp, self.server)
        # Retries far apart: only the wake can explain a push.
        self.set_backoff(dev, 600000, 600000)
        self.server.stop()
        d = self.daemon(dev).start()
        dev.add("interview", "--note", "one")
        wait_for(lambda: d.state().get("state") == "backoff", what="a failed push")
        st = dev.status()
        self.assertEqual(st["daemon"]["state"], "backoff")
        self.assertIsNotNone(st["daemon"]["next_try"])
        self.assertIn("failed", st["daemon"]["last_action"])
        human = dev.ok("status").out
        self.assertIn("running (pid %d)" % d.proc.pid, human)
        # With the server still down: the daemon's answer, with sync's exit code.
        p = dev.run("sync")
        self.assertOneLineError(p, 69)
        self.assertIn("safe", p.err)
        self.assertEqual(d.text().count("asked to sync now"), 1)
        self.server.start()
        p = dev.ok("sync")
        self.assertIn("synced by fieldsyncd (pid %d)" % d.proc.pid, p.err)
        self.assertIn("the server holds all 1", p.err)
        self.assertEqual(server_have(self.server, dev), 1)
        self.assertEqual(d.text().count("asked to sync now"), 2)
        self.assertEqual(self.server.metrics()["fieldsync_entries_stored_total"], 1)
        # Without a daemon, sync pushes by itself as before.
        self.assertEqual(d.stop(), 0)
        dev.add("interview", "--note", "two")
        p = dev.ok("sync")
        self.assertNotIn("fieldsyncd", p.err)
        self.assertEqual(server_have(self.server, dev), 2)

    def test_auth_failure_stops_retries_until_sighup(self):
        self.server.start()
        dev = enrolled_device(self.tmp, self.server)
        self.set_backoff(dev, 50, 100)
        dev.add("interview", "--note", "one")
        d = self.daemon(dev).start()
        wait_for(lambda: server_have(self.server, dev) == 1, what="the first push")
        self.server.admin("device", "revoke", feed_of(dev)[:16])
        dev.add("interview", "--note", "two")
        wait_for(lambda: d.state().get("state") == "stopped", what="the daemon to stop retrying")
        self.assertIn("no more retries until SIGHUP", d.text())
        self.assertEqual(dev.status()["daemon"]["state"], "stopped")
        # More records: still no retries (a retry would be logged).
        runs = int(d.state()["runs_done"])
        dev.add("interview", "--note", "three")
        p = dev.run("sync")  # an explicit request tries once, and says why it failed
        self.assertOneLineError(p, 77)
        self.assertEqual(int(d.state()["runs_done"]), runs + 1)
        self.assertEqual(len(d.retries()), 0, d.text())
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: int(d.state().get("runs_done", 0)) >= runs + 2, what="a try after SIGHUP")
        self.assertIn("SIGHUP", d.text())
        wait_for(lambda: d.state().get("state") == "stopped", what="stopped again")
        self.assertEqual(server_have(self.server, dev), 1)

    def test_idle_daemon_sleeps(self):
        self.server.start()
        dev = enrolled_device(self.tmp, self.server)
        dev.add("interview", "--note", "one")
        d = self.daemon(dev).start()
        # The push, then one check of its own writes; after that, nothing.
        wait_for(lambda: d.state().get("state") == "idle" and server_have(self.server, dev) == 1
                 and int(d.state().get("runs_done", 0)) >= 2, what="idle")
        runs = d.state()["runs_done"]

        def switches():
            with open("/proc/%d/status" % d.proc.pid) as f:
                return sum(int(l.split()[1]) for l in f
                           if l.startswith(("voluntary_ctxt_switches",
                                            "nonvoluntary_ctxt_switches")))
        # A measuring window, not a synchronisation: nothing happens in it.
        before = switches()
        time.sleep(3)
        woke = switches() - before
        print("wake-ups in 3 s idle: %d" % woke)
        self.assertLessEqual(woke, 2)
        self.assertEqual(d.state()["runs_done"], runs)


class UnitFilesTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fs-units-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")

    def unit(self, name):
        """The unit as installed, with ExecStart naming the built binaries."""
        text = read_text(os.path.join(SRC, "systemd", name))
        text = text.replace("/usr/bin/", os.path.abspath(BIN) + "/")
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def analyze(self, *args):
        env = dict(os.environ)
        runtime = os.path.join(self.tmp, "run")
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = runtime
        man = os.path.join(BIN, "man")
        man_args = []
        if os.path.exists(os.path.join(man, "man8", "fieldsyncd.8")) and shutil.which("man"):
            env["MANPATH"] = man + ":"
        else:
            man_args = ["--man=no"]
        return subprocess.run(["systemd-analyze", *man_args, *args], capture_output=True,
                              text=True, env=env, timeout=120)

    def test_verify(self):
        p = self.analyze("verify", self.unit("fieldsync-server.service"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stderr.strip(), "")
        p = self.analyze("--user", "verify", self.unit("fieldsyncd.service"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stderr.strip(), "")
        text = read_text(os.path.join(SRC, "systemd", "fieldsyncd.service"))
        self.assertIn("Type=notify", text)
        self.assertRegex(text, r"(?m)^RestartPreventExitStatus=75 77$")
        self.assertNotRegex(text, r"(?m)^StateDirectory")

    def test_sysusers(self):
        text = read_text(os.path.join(SRC, "systemd", "fieldsync.sysusers"))
        self.assertRegex(text, r"(?m)^u fieldsync ")
        if shutil.which("systemd-sysusers"):
            root = os.path.join(self.tmp, "root")
            os.makedirs(os.path.join(root, "etc"))
            p = subprocess.run(["systemd-sysusers", "--root", root,
                                os.path.join(SRC, "systemd", "fieldsync.sysusers")],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("fieldsync:", read_text(os.path.join(root, "etc", "passwd")))

    def test_server_unit_security(self):
        unit = self.unit("fieldsync-server.service")
        p = self.analyze("security", "--offline=yes", unit)
        if p.returncode != 0 and "offline" in p.stderr:
            p = self.analyze("security", "--offline=true", unit)
        out = p.stdout + p.stderr
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
        self.assertIsNotNone(m, out)
        score = float(m.group(1))
        print("systemd-analyze security: fieldsync-server.service scores %.1f" % score)
        self.assertLessEqual(score, 1.5, out)
        text = read_text(os.path.join(SRC, "systemd", "fieldsync-server.service"))
        for line in ("User=fieldsync", "StateDirectory=fieldsync", "CapabilityBoundingSet=\n",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                     "SystemCallFilter=@system-service", "SystemCallFilter=~@privileged @resources",
                     "ProtectProc=invisible", "ProcSubset=pid", "UMask=0077"):
            self.assertIn(line, text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
