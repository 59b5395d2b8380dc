"""Reliability row 5: disk full and I/O errors (plain build: an LD_PRELOAD shim).

Laptop: shim_fail.so fails the k-th write, sync or truncate on the store
folder with ENOSPC (and every one after it: a full disk) or EIO (once), for
every k of `add`, `add --attach` and `import`. Each attempt either saves (exit
0, id on stdout) or says "not saved" in one line and exits 74; nothing
claimed saved is ever missing, `verify` passes after every attempt, an
import is all or nothing, and the next `add` without the fault succeeds.
A refused record that is there after all is counted as a ghost (reported,
not a failure: after a failed fsync the state is unknown by nature).

Server: while a flag file exists every write under its data folder fails
with ENOSPC. Pushes, blob chunks and the head request get 503 with
Retry-After, `fieldsync sync` exits 75, nothing is stored half; when space
returns, sync completes and `check` passes."""

import http.client
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rel_common import SHIM, SOAK, Clock, fstool, row_line  # noqa: E402
from fsenv import Device, Server, TempTestCase, enrolled_device, feed_of  # noqa: E402


def shim_env(prefix, **kw):
    e = {"LD_PRELOAD": SHIM, "FS_SHIM_PREFIX": prefix}
    e.update({k: str(v) for k, v in kw.items()})
    return e


class DiskFullRow(TempTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(SHIM):
            self.fail("%s is missing: build the tests" % SHIM)
        self.server = None

    def tearDown(self):
        if self.server:
            self.server.stop()
        super().tearDown()

    # ---- the laptop --------------------------------------------------------

    def count_ops(self, dev, run):
        """How many counted calls one run of the workload makes."""
        counts = os.path.join(self.tmp, "counts")
        if os.path.exists(counts):
            os.unlink(counts)
        self.counted = getattr(self, "counted", 0) + 1
        p = run(shim_env(dev.home, FS_SHIM_COUNT_FILE=counts), "count-%d" % self.counted)
        self.assertEqual(p.returncode, 0, p.err)
        with open(counts) as f:
            return sum(int(l.split()[1]) for l in f if l.strip())

    def notes(self, dev):
        return [r.get("note", "") for r in dev.records()]

    def sweep(self, dev, name, run, per_call, stats, rnd=0):
        """Every fault point of one workload, with ENOSPC (sticky) and EIO."""
        total = self.count_ops(dev, run)
        stride = 1
        for k in range(1, total + 2, stride):
            for err, sticky in (("ENOSPC", 1), ("EIO", 0)):
                tag = "%s-r%d-%d-%s" % (name, rnd, k, err)
                p = run(shim_env(dev.home, FS_SHIM_FAIL_AT=k, FS_SHIM_ERRNO=err,
                                 FS_SHIM_STICKY=sticky), tag)
                stats["attempts"] += 1
                if p.returncode == 0:
                    stats["saved"] += per_call
                    stats["want"].extend(tag + suffix for suffix in run.suffixes)
                else:
                    self.assertOneLineError(p, 74)
                    self.assertEqual(p.err.count("not saved"), 1, p.err)
                    stats["refused"] += 1
                    if "disk full" in p.err:
                        stats["said_full"] += 1
                # Space is back: the store is whole and holds what it said it saved.
                v = dev.run("verify")
                if v.returncode != 0 or "ok:" not in v.out:
                    stats["integrity"] = "BAD"
                    self.fail("verify after %s: %s %s" % (tag, v.out, v.err))
                have = self.notes(dev)
                present = [n for n in have if n.startswith(tag + "#") or n == tag]
                if p.returncode != 0 and present:
                    if name == "import" and len(present) != len(run.suffixes):
                        self.fail("import %s is half there: %d of %d" %
                                  (tag, len(present), len(run.suffixes)))
                    stats["ghosts"] += 1
                missing = set(stats["want"]) - set(have)
                stats["lost"] = len(missing)
                self.assertFalse(missing, "claimed saved, then missing after %s" % tag)
                if p.returncode != 0:
                    r = dev.run("add", "interview", "--note", "resume after " + tag)
                    self.assertEqual(r.returncode, 0, "no recovery after %s: %s" % (tag, r.err))
                    stats["resumed"] += 1
        stats["points"] += total + 1
        return total

    def laptop(self):
        dev = Device(self.tmp, "laptop")
        dev.init()
        for i in range(3):
            dev.add("interview", "--note", "before %d" % i)
        stats = dict(attempts=0, saved=0, refused=0, said_full=0, ghosts=0, lost=0, resumed=0,
                     points=0, integrity="ok", want=[])
        att = os.path.join(self.tmp, "photo.jpg")

        def add(env, tag):
            return dev.run("add", "interview", "--note", tag, "--field", "topic=disk full",
                           env=env)
        add.suffixes = [""]

        def attach(env, tag):
            with open(att, "wb") as f:
                f.write((tag * 4096).encode()[:200000])
            return dev.run("add", "photo", "--note", tag, "--attach", att, env=env)
        attach.suffixes = [""]

        n_import = 12 if SOAK else 5

        def imp(env, tag):
            path = os.path.join(self.tmp, "imp.jsonl")
            with open(path, "w", encoding="utf-8") as f:
                for i in range(n_import):
                    f.write(json.dumps({"kind": "observation",
                                        "observed_at": "2026-11-28T09:30:00+08:00",
                                        "note": "%s#%d" % (tag, i)}) + "\n")
            return dev.run("import", path, env=env)
        imp.suffixes = ["#%d" % i for i in range(n_import)]

        rounds = 3 if SOAK else 1
        ops = {}
        for rnd in range(rounds):
            ops["add"] = self.sweep(dev, "add", add, 1, stats, rnd)
            ops["attach"] = self.sweep(dev, "attach", attach, 1, stats, rnd)
            ops["import"] = self.sweep(dev, "import", imp, n_import, stats, rnd)
        st = dev.status()
        return stats, ops, st

    # ---- the server ----------------------------------------------------------

    def start_server_with_shim(self, flag):
        self.server = Server(self.tmp)
        saved = dict(os.environ)
        os.environ.update(shim_env(self.server.data, FS_SHIM_FULL_FLAG=flag))
        try:
            self.server.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return self.server

    def raw(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        out = (r.status, r.getheader("Retry-After"), data)
        c.close()
        return out

    def server_side(self):
        flag = os.path.join(self.tmp, "server-disk-full")
        server = self.start_server_with_shim(flag)
        dev = enrolled_device(self.tmp, server, name="pusher")
        n1 = 30 if SOAK else 10
        for i in range(n1):
            dev.add("interview", "--note", "server %d" % i)
        dev.ok("sync")
        have = lambda: [d for d in server.devices() if d["feed"] == feed_of(dev)][0]["have_seq"]
        self.assertEqual(have(), n1)
        # The disk fills up.
        open(flag, "w").close()
        n2 = 40 if SOAK else 8
        for i in range(n2):
            dev.add("interview", "--note", "while full %d" % i)
        blob = os.path.join(self.tmp, "talk.m4a")
        with open(blob, "wb") as f:
            f.write(os.urandom(300000))
        dev.add("interview", "--note", "with audio", "--attach", blob)
        n2 += 1
        # A push straight at the API: 503 with Retry-After, nothing stored.
        batch = os.path.join(self.tmp, "b.bin")
        fstool(dev.home, n1 + 1, n1 + n2, batch)
        with open(batch, "rb") as f:
            body = f.read()
        status, retry, ans = self.raw("POST", "/v1/feeds/%s/entries" % feed_of(dev), body)
        self.assertEqual(status, 503, ans)
        self.assertTrue(retry and int(retry) > 0, "503 without Retry-After")
        self.assertEqual(json.loads(ans)["error"], "unavailable")
        # The client: exit 75, the records still here and pending.
        refusals = 0
        for _ in range(3 if SOAK else 2):
            p = dev.run("sync")
            self.assertOneLineError(p, 75)
            refusals += 1
        self.assertEqual(dev.status()["pending_entries"], n2)
        self.assertTrue(server.health_ok())
        os.unlink(flag)  # space returns (admin commands run without the shim)
        self.assertEqual(have(), n1)
        # Space is back: everything arrives once, the attachment too.
        dev.ok("sync")
        self.assertEqual(have(), n1 + n2)
        st = dev.status()
        self.assertEqual(st["pending_entries"], 0)
        self.assertEqual(st["pending_blob_bytes"], 0)
        self.assertIn("ok: %d entries" % (n1 + n2), server.admin("check").out)
        m = server.metrics()
        self.assertEqual(m["fieldsync_entries_stored_total"], n1 + n2)
        return dict(server_503=status == 503, retry_after=retry, client_75=refusals,
                    stored=n1 + n2, refused_unavailable=m.get(
                        'fieldsync_refused_total{reason="unavailable"}', 0))

    def test_row(self):
        clock = Clock()
        stats, ops, st = self.laptop()
        srv = self.server_side()
        row_line("disk-full", K=stats["points"], attempts=stats["attempts"],
                 refused=stats["refused"], said_full=stats["said_full"], saved=stats["saved"],
                 lost=stats["lost"], ghosts=stats["ghosts"], resumed=stats["resumed"],
                 integrity=stats["integrity"],
                 ops="add:%d,attach:%d,import:%d" % (ops["add"], ops["attach"], ops["import"]),
                 server="503+Retry-After:%s" % srv["retry_after"], client_exit75=srv["client_75"],
                 server_lost=0, server_stored=srv["stored"], time=clock)


if __name__ == "__main__":
    unittest.main(verbosity=2)
