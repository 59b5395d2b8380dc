"""Reliability row 8: the authorisation table.

Every endpoint of server/srv_api.c (srv_api_route_known, srv_api_handle) and
server/srv_blob.c, called by each kind of caller, against a matrix of
expected answers written out below (MATRIX). A = allowed (2xx, or exit 0 for
the enroll rows, which go through the real `fieldsync enroll`), D = denied
(401, 403 or 404; 400 only where the credential is the batch signature
or the enrollment proof itself; exit 77 for enroll). Anything else is an error. The row fails on any
unexpected allow, unexpected deny or error.

Callers (columns):
  none     no credentials (no Authorization header; for a push, a batch whose
           signature is broken; for enroll, a forged token; for a heartbeat,
           R's line with its signature broken)
  R        a researcher of project demo: the owner of feed R and of blob H
  peer     another researcher of demo
  other    a researcher of project "other"
  C        a coordinator of demo
  otherC   a coordinator of project "other"
  revoked  a researcher of demo, revoked (accept-through 0)
  forged   claims to be C, signed by a key that never enrolled (for a push,
           a batch whose signature is replaced; for enroll, a proof that
           does not verify; for a heartbeat, a line naming C, signed by that key)

A heartbeat needs no Authorization header: its credential is the line's own
signature, and anyone may carry a device's line (the row "R's line").

Targets: feed R, the caller's own feed ("self"; R's for none), project demo,
blob H (an attachment of one of R's records, uploaded)."""

import base64
import hashlib
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rel_common import BIN, SOAK, Clock, fstool, row_line  # noqa: E402
from fsenv import Device, Server, TempTestCase, feed_of  # noqa: E402

SIGN = os.path.join(BIN, "tests", "reliability", "rel_sign")
COLS = ("none", "R", "peer", "other", "C", "otherC", "revoked", "forged")

# The expected matrix: DESIGN §2 and §5, and the rules written at the top of
# srv_api.c (may_read, project_api) and srv_blob.c (may_touch). A blob is open
# (HEAD, GET, PATCH) to the feeds whose own verified entries name it and to the
# project's coordinators, as DESIGN §5 says.
MATRIX = """
                                      none R  peer other C  otherC revoked forged
GET   /v1/health                        A  A  A    A     A  A      A      A
POST  /v1/enroll  own token again       D  A  A    A     A  A      D      D
POST  /v1/enroll  R's token             D  A  D    D     D  D      D      D
GET   feeds/R/head                      D  A  D    D     A  D      D      D
GET   feeds/self/head                   D  A  A    A     A  A      D      D
GET   feeds/R/entries                   D  A  D    D     A  D      D      D
GET   feeds/self/entries                D  A  A    A     A  A      D      D
POST  feeds/R/entries  own batch        D  A  D    D     D  D      D      D
POST  feeds/self/entries                D  A  A    A     A  A      D      D
GET   feeds/R/corrections               D  A  D    D     D  D      D      D
GET   feeds/self/corrections            D  A  A    A     A  A      D      D
GET   projects/demo/feeds               D  D  D    D     A  D      D      D
POST  projects/demo/tokens  researcher  D  D  D    D     A  D      D      D
POST  projects/demo/tokens  coordinator D  D  D    D     D  D      D      D
POST  projects/demo/revocations         D  D  D    D     A  D      D      D
GET   projects/demo/records.csv         D  D  D    D     A  D      D      D
GET   projects/demo/records.jsonl       D  D  D    D     A  D      D      D
GET   projects/demo/records.geojson     D  D  D    D     A  D      D      D
HEAD  projects/demo/blobs/H             D  A  D    D     A  D      D      D
GET   projects/demo/blobs/H             D  A  D    D     A  D      D      D
PATCH projects/demo/blobs/H             D  A  D    D     A  D      D      D
POST  /v1/heartbeats  own line          D  A  A    A     A  A      D      D
POST  /v1/heartbeats  R's line          A  A  A    A     A  A      A      A
"""


def parse_matrix(text):
    rows = []
    lines = [l for l in text.strip("\n").splitlines() if l.strip()]
    for line in lines[1:]:
        cells = line.split()
        marks = cells[-len(COLS):]
        assert all(m in "AD" for m in marks), line
        rows.append((" ".join(cells[:-len(COLS)]), dict(zip(COLS, marks))))
    return rows


def blake(data):
    return hashlib.blake2b(data, digest_size=32).hexdigest()


class AuthzRow(TempTestCase):
    def setUp(self):
        super().setUp()
        self.server = Server(self.tmp).start()

    def tearDown(self):
        self.server.stop()
        super().tearDown()

    # ---- the cast ----------------------------------------------------------------

    def enroll(self, name, project, role):
        dev = Device(self.tmp, name)
        dev.init()
        tok = self.server.token(project=project, role=role, name=name)
        dev.ok("enroll", self.server.url, "--token-file", "-", input=tok)
        dev.token = tok
        return dev

    def cast(self):
        self.devs = {
            "R": self.enroll("r", "demo", "researcher"),
            "peer": self.enroll("peer", "demo", "researcher"),
            "other": self.enroll("other", "other", "researcher"),
            "C": self.enroll("c", "demo", "coordinator"),
            "otherC": self.enroll("otherc", "other", "coordinator"),
            "revoked": self.enroll("revoked", "demo", "researcher"),
        }
        self.victim = self.enroll("victim", "demo", "researcher")
        self.devs["forged"] = Device(self.tmp, "forger-key")
        self.devs["forged"].init()
        r = self.devs["R"]
        self.blob = os.urandom(4096)
        path = os.path.join(self.tmp, "talk.m4a")
        with open(path, "wb") as f:
            f.write(self.blob)
        self.blob_hash = blake(self.blob)
        r.add("interview", "--note", "with audio", "--attach", path)
        r.add("interview", "--note", "plain")
        for name, dev in self.devs.items():
            if name == "forged":
                continue
            if name != "R":
                dev.add("interview", "--note", "by %s" % name)
            dev.ok("sync")
        self.assertEqual(r.status()["pending_blob_bytes"], 0)
        self.server.admin("device", "revoke", feed_of(self.devs["revoked"]))

    # ---- requests ------------------------------------------------------------------

    def sign(self, dev, method, target, body=None, chunk=None, claim=False):
        env = dict(os.environ)
        if claim:
            env["REL_SIGN_AS"] = feed_of(self.devs["C"])
        args = [SIGN, dev.home, self.server.key, method, target]
        if body is not None:
            bf = os.path.join(self.tmp, "body.bin")
            with open(bf, "wb") as f:
                f.write(body)
            args.append(bf)
        elif chunk:
            args += ["--chunk", str(chunk[0]), str(chunk[1])]
        p = subprocess.run(args, capture_output=True, check=True, env=env)
        return p.stdout.decode().strip()

    def http(self, col, method, target, body=None, chunk=None, headers=None):
        h = dict(headers or {})
        if col != "none":
            h["Authorization"] = self.sign(self.devs[col], method, target,
                                           body if body is not None and not chunk else None,
                                           chunk, claim=col == "forged")
        status, data = self.server.request(method, target, body, h)
        return "http", status, data

    def feed(self, col, which):
        if which == "R" or col == "none":
            return feed_of(self.devs["R"])
        if col == "forged":
            return feed_of(self.devs["C"])
        return feed_of(self.devs[col])

    def batch(self, col, broken=False):
        """The caller's own feed, whole, as a push batch."""
        dev = self.devs[{"none": "R", "forged": "C"}.get(col, col)]
        out = os.path.join(self.tmp, "batch.bin")
        fstool(dev.home, 1, dev.status()["local_seq"], out)
        with open(out, "rb") as f:
            body = bytearray(f.read())
        if broken:
            body[-1] ^= 0x01  # the batch signature
        if col == "forged":
            body[-64:] = os.urandom(64)  # another key's signature, in effect
        return bytes(body)

    def enroll_again(self, col, token_of):
        if col == "forged":
            # A fresh, valid token; a feed key whose proof does not verify.
            body = json.dumps({"token": self.server.token(name="forged"),
                               "feed": os.urandom(32).hex(), "name": "forged",
                               "sig": os.urandom(64).hex()}).encode()
            status, data = self.server.request("POST", "/v1/enroll", body)
            return "push", status, data
        if col == "none":
            dev = Device(self.tmp, "forger")
            if not os.path.exists(dev.home):
                dev.init()
            real = self.devs["R"].token
            tok = real[:-8] + ("0" if real[-8] != "0" else "1") + real[-7:]
            if token_of == "R":
                tok = real
        else:
            dev = self.devs[col]
            tok = dev.token if token_of == "own" else self.devs["R"].token
        p = dev.run("enroll", self.server.url, "--token-file", "-", input=tok)
        return "exit", p.returncode, p.err.encode()

    def heartbeat(self, col, whose):
        """POST /v1/heartbeats: the caller's own line, or R's carried by anyone."""
        def line_of(name):
            return self.devs[name].ok("heartbeat").out.strip()

        def recode(line, change):
            pad = "=" * (-len(line) % 4)
            raw = bytearray(base64.urlsafe_b64decode(line + pad))
            change(raw)
            return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")

        if whose == "R":
            line = line_of("R")
        elif col == "none":
            line = recode(line_of("R"), lambda raw: raw.__setitem__(-1, raw[-1] ^ 0x01))
        elif col == "forged":
            c = bytes.fromhex(feed_of(self.devs["C"]))
            line = recode(line_of("forged"), lambda raw: raw.__setitem__(slice(1, 33), c))
        else:
            line = line_of(col)
        status, data = self.server.request("POST", "/v1/heartbeats", line.encode())
        return "push", status, data

    def call(self, row, col):
        blob_target = "/v1/projects/demo/blobs/" + self.blob_hash
        if row == "GET /v1/health":
            return self.http("none", "GET", "/v1/health")
        if row == "POST /v1/enroll own token again":
            return self.enroll_again(col, "own")
        if row == "POST /v1/enroll R's token":
            return self.enroll_again(col, "R")
        if row.startswith("POST /v1/heartbeats"):
            return self.heartbeat(col, "R" if "R's" in row else "own")
        verb, what = row.split(" ", 1)
        what = what.split()
        path = what[0]
        if path.startswith("feeds/"):
            _, which, rest = path.split("/")
            target = "/v1/feeds/%s/%s" % (self.feed(col, which), rest)
            if rest == "entries" and verb == "GET":
                target += "?from=1"
            if rest == "corrections":
                target += "?since=0"
            if verb == "POST":
                # The credential of a push is the batch signature: no header.
                body = self.batch(col, broken=(col in ("none", "forged")))
                status, data = self.server.request("POST", target, body)
                return "push", status, data
            return self.http(col, verb, target)
        if path == "projects/demo/tokens":
            body = json.dumps({"role": what[1], "name": "authz", "ttl_s": 3600}).encode()
            return self.http(col, "POST", "/v1/" + path, body)
        if path == "projects/demo/revocations":
            body = json.dumps({"feed": feed_of(self.victim)}).encode()
            return self.http(col, "POST", "/v1/" + path, body)
        if path == "projects/demo/blobs/H":
            if verb == "PATCH":
                return self.http(col, "PATCH", blob_target, self.blob, chunk=(0, len(self.blob)),
                                 headers={"Upload-Offset": "0",
                                          "Content-Type": "application/offset+octet-stream"})
            return self.http(col, verb, blob_target)
        return self.http(col, verb, "/v1/" + path)

    @staticmethod
    def verdict(kind, status):
        if kind == "exit":
            return {0: "A", 77: "D"}.get(status, "?")
        if 200 <= status < 300:
            return "A"
        if status in (401, 403, 404) or (kind == "push" and status == 400):
            return "D"
        return "?"

    def test_row(self):
        clock = Clock()
        self.cast()
        rows = parse_matrix(MATRIX)
        rounds = 3 if SOAK else 1
        allows = denies = errors = cells = 0
        grid = []
        problems = []
        for _ in range(rounds):
            grid = []
            for row, want in rows:
                got = {}
                for col in COLS:
                    kind, status, data = self.call(row, col)
                    v = self.verdict(kind, status)
                    got[col] = "%s%s" % (v, status)
                    cells += 1
                    if v == "?":
                        errors += 1
                        problems.append("%s by %s: unexpected answer %s %s" %
                                        (row, col, status, data[:160]))
                    elif v != want[col]:
                        if v == "A":
                            allows += 1
                        else:
                            denies += 1
                        problems.append("%s by %s: expected %s, got %s %s" %
                                        (row, col, want[col], status, data[:160]))
                grid.append((row, got))
        # The matrix as observed, for the record.
        sys.stderr.write("%-40s %s\n" % ("", " ".join("%-7s" % c for c in COLS)))
        for row, got in grid:
            sys.stderr.write("%-40s %s\n" % (row, " ".join("%-7s" % got[c] for c in COLS)))
        # The server still holds exactly what the allowed calls put there.
        out = self.server.admin("check").out
        self.assertIn("ok:", out)
        row_line("authz", endpoints=len(rows), callers=len(COLS), cells=cells,
                 unexpected_allows=allows, unexpected_denies=denies, errors=errors, time=clock)
        self.assertFalse(problems, "\n".join(problems))


if __name__ == "__main__":
    unittest.main(verbosity=2)
