"""Reliability row 11 — a corrupt local store. A store holds records the server has and
records it lacks. Copies of it get bytes flipped in one to three random pages of
store.db, T times (quick T=40, soak T=1000); each copy is then verified and synced.

For every copy: no crash (an exit code of the contract, no sanitizer report);
store.db and the key are never deleted; `fieldsync verify` names what is wrong whenever
the flipped bytes changed what the database holds in its entries, feeds or records (as
read by Python's sqlite3, or its own integrity_check); the agent never sends a damaged
entry — the server refuses nothing from any copy and holds afterwards only entries
byte for byte equal to the intact store's; and when the agent refuses, it says so in
one line (exit 65 "damaged" and what to run). The server is reset between copies.

One line of figures: `corrupt-store T=... changed=... named=... refused=... synced=...
sent_damaged=0 crashes=0 deleted=0`."""

import collections
import os
import shutil
import signal
import sqlite3
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relenv  # noqa: E402
from relenv import (Device, Proc, TempTestCase, binary, enrolled_device, feed_of,  # noqa: E402
                    figures_line, jsonl_rows, no_sanitizer_report, read_text, sized, wait_for)

T = sized(40, 1000)
# Copies whose damage sync refused are also handed to fieldsyncd, up to this many.
DAEMON_COPIES = sized(4, 40)
TABLES = ("settings", "feeds", "entries", "records", "imports", "receipts", "blobs", "blob_refs")
# What verify checks (the database's structure too); the rest is only reported.
VERIFIED = ("feeds", "entries", "records")
CONTRACT_CODES = (0, 64, 65, 69, 70, 74, 75, 76, 77)
VERBOSE = os.environ.get("FS_REL_VERBOSE") == "1"  # one paragraph per copy
# A refusal for bad data (65) says the store is damaged and what to run, or names the
# damaged part ("the pinned server key is malformed; enroll again"). A version stamp
# damaged upwards cannot be told from a newer store ("... newer than this fieldsync
# knows; upgrade fieldsync").
CLEAR = ("damaged", "verify", "malformed", "newer than")


def dump(path):
    """Every row of every table, as Python's sqlite3 reads the file (never writing it);
    and PRAGMA integrity_check. Unreadable parts come back as the error's text."""
    out = {}
    try:
        db = sqlite3.connect("file:%s?mode=ro&immutable=1" % path, uri=True)
    except sqlite3.DatabaseError as e:
        return {"*": "open: %s" % e}, str(e)
    db.text_factory = bytes  # damaged text is not UTF-8
    try:
        for t in TABLES:
            try:
                out[t] = sorted(db.execute("SELECT * FROM %s" % t).fetchall(), key=repr)
            except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
                out[t] = "unreadable: %s" % e  # (a damaged schema: names not UTF-8)
        try:
            integrity = b"\n".join(r[0] for r in db.execute("PRAGMA integrity_check")).decode(
                "utf-8", "replace")
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
            integrity = "error: %s" % e
    finally:
        db.close()
    return out, integrity


def flip(path, rng, page_size):
    """Flips 1..8 bytes in each of 1..3 random pages (page 1, the header and the schema,
    in 15% of the copies besides); returns the page numbers."""
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        pages = set(rng.sample(range(1, size // page_size + 1),
                               min(rng.randint(1, 3), size // page_size)))
        if rng.random() < 0.15:
            pages.add(1)  # the header and the schema, more often than their share
        pages = sorted(pages)
        for pg in pages:
            for _ in range(rng.randint(1, 8)):
                off = (pg - 1) * page_size + rng.randrange(page_size)
                f.seek(off)
                b = f.read(1)[0]
                f.seek(off)
                f.write(bytes([b ^ rng.randint(1, 255)]))
        f.flush()
        os.fsync(f.fileno())
    return pages


def refused_total(server):
    return sum(v for k, v in server.metrics().items() if k.startswith("fieldsync_refused_total"))


class CorruptStoreTest(TempTestCase):
    def test_flipped_pages(self):
        t0 = time.monotonic()
        rng, server, sdb = relenv.row_start(self)
        orig = enrolled_device(self.tmp, server, name="laptop")
        # Records the server holds, then records it lacks (imported and added).
        for i, n in enumerate((150, 150)):
            path = os.path.join(self.tmp, "part%d.jsonl" % i)
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(jsonl_rows(n, rng, "part%d" % i)) + "\n")
            orig.ok("import", path)
            if i == 0:
                orig.ok("sync")
        for i in range(30):
            orig.add("interview", "--note", "pending %d" % i, "--field", "topic=t%d" % i)
        feed = feed_of(orig)
        base_have = sdb.have(feed)
        local = orig.status()["local_seq"]
        self.assertLess(base_have, local)
        db = orig.db()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        hashes = dict(db.execute("SELECT seq, hash FROM entries WHERE feed = ?",
                                 (bytes.fromhex(feed),)).fetchall())
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        db.close()
        store = os.path.join(orig.home, "store.db")
        base, base_integrity = dump(store)
        self.assertEqual(base_integrity, "ok")
        # The server as it is now, to come back to after each copy's sync.
        server.stop()
        snap = os.path.join(self.tmp, "server-snap")
        shutil.copytree(server.data, snap)
        server.start()
        fig = collections.Counter()
        problems = []
        for t in range(T):
            dev = Device(self.tmp, "copy%d" % t)
            shutil.copytree(orig.home, dev.home)
            path = os.path.join(dev.home, "store.db")
            pages = flip(path, rng, page_size)
            got, integrity = dump(path)
            changed = sorted(k for k in base if got.get(k) != base[k])
            if integrity != "ok":
                changed.append("structure")
            what = "copy %d (pages %s; changed: %s)" % (t, pages, ",".join(changed) or "nothing")
            fig["changed"] += bool(changed)
            v = dev.run("verify")
            for p, name in ((v, "verify"), ):
                self.crash_free(p, name, what, problems, fig)
            must_name = [c for c in changed if c in VERIFIED or c == "structure"]
            if v.returncode == 65:
                fig["named"] += 1
            if must_name and v.returncode != 65:
                problems.append("%s: verify exited %d and named nothing: %s" %
                                (what, v.returncode, v.err.strip()))
            if changed and not must_name:
                fig["outside_verify"] += 1
            if v.returncode == 65 and not any(w in v.err for w in ("problem",) + CLEAR):
                problems.append("%s: verify's findings: %s" % (what, v.err.strip()))
            # Sync against the server as it was.
            if sdb.have(feed) != base_have:
                server.stop()
                shutil.rmtree(server.data)
                shutil.copytree(snap, server.data)
                server.start()
            refused = refused_total(server)
            s = dev.run("sync")
            self.crash_free(s, "sync", what, problems, fig)
            if refused_total(server) != refused:
                fig["sent_damaged"] += 1
                problems.append("%s: the agent sent what the server refused: %s" %
                                (what, s.err.strip()))
            have = sdb.have(feed)
            for seq, h in sdb.query("SELECT seq, hash FROM entries WHERE feed = ? AND seq > ?",
                                    (bytes.fromhex(feed), base_have)):
                if hashes.get(seq) != h:
                    problems.append("%s: the server holds a different entry %d" % (what, seq))
            if s.returncode == 0:
                fig["synced"] += 1
                if have != local:
                    problems.append("%s: sync exited 0 but the server holds %d of %d" %
                                    (what, have, local))
            else:
                fig["refused"] += 1
                lines = [l for l in s.err.splitlines() if l.strip()]
                if len(lines) != 1 or not lines[0].startswith("fieldsync: "):
                    problems.append("%s: sync's error is not one line: %r" % (what, s.err))
                if s.returncode == 65 and not any(w in s.err for w in CLEAR):
                    problems.append("%s: sync's refusal does not say what is damaged: %s" %
                                    (what, s.err.strip()))
                fig["refused_%d" % s.returncode] += 1
                if (s.returncode == 65 and fig["daemon"] < DAEMON_COPIES
                        and os.path.exists(binary("fieldsyncd"))):
                    fig["daemon"] += 1
                    self.daemon_refuses(dev, what, problems, fig)
            if VERBOSE:
                print("%s\n  verify %d: %s\n  sync %d: %s" % (
                    what, v.returncode, " | ".join(v.err.strip().splitlines()[:3])[:300],
                    s.returncode, s.err.strip()[:300]), flush=True)
            for name in ("store.db", "key"):
                if not os.path.exists(os.path.join(dev.home, name)):
                    fig["deleted"] += 1
                    problems.append("%s: %s was deleted" % (what, name))
            shutil.rmtree(dev.home)
        figures_line("corrupt-store", T=T, changed=fig["changed"], named=fig["named"],
                     outside_verify=fig["outside_verify"], refused=fig["refused"],
                     refusals="/".join("%s:%d" % (k[8:], v) for k, v in sorted(fig.items())
                                       if k.startswith("refused_")) or "-",
                     synced=fig["synced"], daemon_refused="%d/%d" % (fig["daemon_refused"],
                                                                     fig["daemon"]),
                     sent_damaged=fig["sent_damaged"],
                     crashes=fig["crashes"], deleted=fig["deleted"],
                     runtime_s="%.0f" % (time.monotonic() - t0))
        self.assertEqual(problems, [], "\n".join(problems))

    def daemon_refuses(self, dev, what, problems, fig):
        """fieldsyncd on a damaged store: one run, its result says the store is damaged;
        it neither crashes nor sends; SIGTERM ends it with 0."""
        for k in ("connect_timeout_ms", "backoff_base_ms"):
            dev.run("config", "set", k, "1000")  # may fail on a damaged store: no matter
        d = Proc(self.tmp, [binary("fieldsyncd"), "--home", dev.home], "fieldsyncd")
        state = os.path.join(dev.home, "daemon.state")

        first = []  # the state the daemon published with its first result

        def result():
            if d.p.poll() is not None:
                return True
            try:
                text = read_text(state)
            except OSError:
                return False
            if "last_msg=" in text:
                first.append(text)
                return True
            return False
        try:
            wait_for(result, timeout=60, what="fieldsyncd's first result")
        finally:
            if d.p.poll() is None:
                d.p.send_signal(signal.SIGTERM)
            rc = d.p.wait(timeout=60)
        text = read_text(state) if os.path.exists(state) else ""
        msg = [l for l in text.splitlines() if l.startswith("last_msg=")]
        if rc != 0 or no_sanitizer_report(d.err):
            fig["crashes"] += 1
            problems.append("%s: fieldsyncd exited %d: %s" % (what, rc, d.err[-500:]))
        elif not msg or ("damaged" not in msg[0] and "verify" not in msg[0]):
            problems.append("%s: fieldsyncd's result does not say the store is damaged: %s"
                            % (what, msg or text))
        elif "damaged" in msg[0] and (not first or "state=stopped" not in first[0]):
            # Damage does not heal by waiting: no retry loop, one clear message. (Read
            # before SIGTERM, after which every daemon says "stopped".)
            problems.append("%s: fieldsyncd retries a damaged store: %s"
                            % (what, first[0] if first else text))
        else:
            fig["daemon_refused"] += 1
        d.cleanup()

    def crash_free(self, p, name, what, problems, fig):
        report = no_sanitizer_report(p.err)
        if report or p.returncode not in CONTRACT_CODES:
            fig["crashes"] += 1
            problems.append("%s: %s exited %d: %s" % (what, name, p.returncode,
                                                      report or p.err.strip()[-500:]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
