"""Shared helpers of the reliability rows in tests/reliability (rows 1, 2, 3, 10, 11):
quick or soak sizing, a seed that replays a run, the test's own fsynced ledger,
processes killed at random moments, servers restarted on their port, and reading the
server's and a store's database directly. Standard library only; builds on
tests/e2e/fsenv.py.

Quick mode is the default (CI); FS_SOAK=1 selects the soak sizes. FS_SEED=N replays a
run (every row prints its seed first)."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from fsenv import (BIN, DATA, RECORDS_1K, SANITIZED, Device, Server,  # noqa: E402,F401
                   TempTestCase, binary, enrolled_device, feed_of, load_jsonl, read_text,
                   wait_for)

SOAK = os.environ.get("FS_SOAK", "") == "1"
MODE = "soak" if SOAK else "quick"
PROXY = os.path.join(BIN, "tests", "tools", "faultproxy")
FSTOOL = os.path.join(BIN, "tests", "tools", "fstool")
# What a sanitizer writes when it finds something (ASan, LSan, UBSan).
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer")


def sized(quick, soak):
    """A figure of the row: the quick one in CI, the soak one under FS_SOAK=1."""
    return soak if SOAK else quick


def seed():
    """The row's seed: FS_SEED if given, else a fresh one; printed so a run replays."""
    s = int(os.environ.get("FS_SEED") or random.SystemRandom().randrange(1, 1 << 31))
    print("mode=%s seed=%d (FS_SEED=%d replays this run)" % (MODE, s, s), flush=True)
    return s


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Ledger:
    """The test's own record of what the code under test reported: one JSON object
    a line, written and fsynced by the test (file and folder) before the test acts on
    it. It is read back from the file for the final comparison."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "a", encoding="utf-8")
        fsync_dir(os.path.dirname(path))

    def add(self, **rec):
        self.f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self):
        self.f.close()

    def read(self):
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def no_sanitizer_report(text):
    """None, or the first line of a sanitizer's report in text."""
    for line in text.splitlines():
        if any(m in line for m in SANITIZER_MARKS):
            return line
    return None


class Proc:
    """A real binary run in the background, its output in files (never a pipe that
    could fill up while the test waits)."""

    def __init__(self, tmp, argv, tag, env=None):
        self.out_path = os.path.join(tmp, "%s.out" % tag)
        self.err_path = os.path.join(tmp, "%s.err" % tag)
        e = dict(os.environ)
        for k in ("FIELDSYNC_HOME", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                  "JOURNAL_STREAM"):
            e.pop(k, None)
        e["NO_COLOR"] = "1"
        if env:
            e.update(env)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                      env=e)
        self.killed = False

    def wait_or_kill(self, delay):
        """Waits up to delay seconds; if the process is still running then, SIGKILL.
        Returns the exit code (negative for a signal)."""
        try:
            self.p.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            self.p.send_signal(signal.SIGKILL)
        return self._reap()

    def kill9(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        return self._reap()

    def _reap(self):
        # Killed only if the signal, not an exit just before it, ended the process.
        rc = self.p.wait(timeout=60)
        self.killed = rc == -signal.SIGKILL
        return rc

    @property
    def out(self):
        return read_text(self.out_path)

    @property
    def err(self):
        return read_text(self.err_path)

    def cleanup(self):
        for p in (self.out_path, self.err_path):
            if os.path.exists(p):
                os.unlink(p)


def fieldsync_argv(dev, *args):
    return [binary("fieldsync"), "--home", dev.home, *args]


def set_settings(dev, **kv):
    for k, v in kv.items():
        dev.ok("config", "set", k, str(v))


def set_server_url(dev, url):
    """Points a store at another address (a proxy), as the e2e tests do."""
    db = dev.db()
    db.execute("UPDATE settings SET value = ? WHERE key = 'server'", (url,))
    db.commit()
    db.close()


def start_on_port(server, timeout=60):
    """Starts (or restarts) a server on its port. Another test's connection may hold
    the port for a moment after a kill -9; the start is then tried again, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return server.start()
        except AssertionError as e:
            if "exited" not in str(e) or time.monotonic() > deadline:
                raise
            server.proc = None
            server.log.close()
            # Not a synchronisation: a bounded pause before the next bind attempt.
            time.sleep(0.2)


class ServerDb:
    """Read access to a server's database, with the server running (WAL) or dead."""

    def __init__(self, server):
        self.path = os.path.join(server.data, "server.db")

    def query(self, sql, args=()):
        db = sqlite3.connect(self.path, timeout=30)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def have(self, feed_hex):
        rows = self.query("SELECT have_seq FROM feeds WHERE feed = ?", (bytes.fromhex(feed_hex),))
        return rows[0][0] if rows else 0

    def feed_shape(self, feed_hex):
        """(have_seq, number of entries, highest seq, push ranges of the audit log)."""
        f = bytes.fromhex(feed_hex)
        have = self.have(feed_hex)
        n, top = self.query("SELECT count(*), coalesce(max(seq), 0) FROM entries WHERE feed = ?",
                            (f,))[0]
        ranges = []
        for (detail,) in self.query("SELECT detail FROM audit WHERE event = 'push' AND feed = ?"
                                    " ORDER BY id", (f,)):
            a, b = detail.split()[1].split("..")
            ranges.append((int(a), int(b)))
        return have, n, top, ranges


def row_start(case, seed_value=None):
    """A row's common start: its random generator (from seed(), so that FS_SEED replays
    the run, unless the row passes its seed), a server started now and stopped at
    cleanup, and a reader of the server's database."""
    rng = random.Random(seed() if seed_value is None else seed_value)
    server = Server(case.tmp).start()
    case.addCleanup(server.stop)
    return rng, server, ServerDb(server)


def row_ledger(case):
    """The row's ledger (see Ledger), closed at cleanup."""
    ledger = Ledger(os.path.join(case.tmp, "ledger.jsonl"))
    case.addCleanup(ledger.close)
    return ledger


def join_workers(case, workers, stop):
    """Stops a row's worker threads (each with an .error it met, or None), waits for
    them, and raises the first error."""
    stop.set()
    for w in workers:
        w.join(120)
        case.assertFalse(w.is_alive())
        if w.error:
            raise w.error


def partial_batches(shape):
    """What is wrong with a feed's stored shape, as a list of sentences (empty: whole).
    Entries are exactly 1..have_seq, and the committed pushes of the audit log tile them
    without a gap or an overlap: every stored entry came with the whole of its batch."""
    have, n, top, ranges = shape
    bad = []
    if n != have or top != have:
        bad.append("have_seq %d but %d entries up to seq %d" % (have, n, top))
    nxt = 1
    for a, b in sorted(ranges):
        if a != nxt or b < a:
            bad.append("push ranges do not tile: %s" % sorted(ranges))
            break
        nxt = b + 1
    if nxt - 1 != have and not bad:
        bad.append("push ranges end at %d, have_seq %d" % (nxt - 1, have))
    return bad


def export_records(coord):
    """A coordinator's merged view after a pull: the exported JSON Lines, as a list."""
    coord.ok("pull", "--quiet")
    out = coord.ok("export", "--format", "jsonl").out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def sync_until_ok(dev, tries=200, allowed=(69, 75)):
    """Runs `fieldsync sync` until it exits 0 (bounded); returns the number of runs."""
    for n in range(1, tries + 1):
        p = dev.run("sync", "--quiet")
        if p.returncode == 0:
            return n
        if p.returncode not in allowed:
            raise AssertionError("fieldsync sync exited %d: %s" % (p.returncode, p.err))
    raise AssertionError("sync did not complete in %d runs" % tries)


def jsonl_rows(n, rng, tag):
    """n rows of the 1k sample, each marked with tag in fields.batch and a unique note."""
    with open(RECORDS_1K, encoding="utf-8") as f:
        src = f.read().splitlines()
    rows = []
    for i, line in enumerate(rng.sample(src, n)):
        o = json.loads(line)
        o.setdefault("fields", {})["batch"] = tag
        o["note"] = "%s row %d" % (tag, i)
        rows.append(json.dumps(o, ensure_ascii=False))
    return rows


def figures_line(name, **fig):
    """The row's one line of figures, e.g. `kill9-agent K=200 saved=5123 lost=0 ...`."""
    line = name + " " + " ".join("%s=%s" % (k, v) for k, v in fig.items())
    print(line, flush=True)
    return line
