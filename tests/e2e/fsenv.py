"""Shared helpers for the end-to-end tests: temporary homes, running the real
binaries, reading a store directly. Standard library only."""

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import unittest

BIN = os.environ.get("FS_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "dev"))
DATA = os.environ.get("FS_TEST_DATA", os.path.join(os.path.dirname(__file__), "..", "data"))
SANITIZED = os.environ.get("FS_SANITIZED", "0") in ("1", "ON", "TRUE", "true")
RECORDS_1K = os.path.join(DATA, "field-records-1k.jsonl")


def binary(name):
    return os.path.join(BIN, name)


class Device:
    """One laptop: a store folder driven through the real `fieldsync`."""

    def __init__(self, root, name="laptop"):
        self.home = os.path.join(root, name)
        self.name = name

    def run(self, *args, input=None, env=None, timeout=120):
        e = dict(os.environ)
        e.pop("FIELDSYNC_HOME", None)
        e["NO_COLOR"] = "1"
        if env:
            e.update(env)
        if isinstance(input, str):
            input = input.encode()
        p = subprocess.run([binary("fieldsync"), "--home", self.home, *args], input=input,
                           capture_output=True, env=e, timeout=timeout)
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        return p

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        if p.returncode != 0:
            raise AssertionError("fieldsync %s exited %d: %s" % (" ".join(args), p.returncode, p.err))
        return p

    def init(self):
        return self.ok("init", "--name", self.name)

    def add(self, kind, *args, **kw):
        return self.ok("add", kind, *args, **kw).out.strip()

    def records(self, *args):
        return json.loads(self.ok("list", "--json", *args).out)

    def status(self):
        return json.loads(self.ok("status", "--json").out)

    def db(self):
        return sqlite3.connect(os.path.join(self.home, "store.db"))


class TempTestCase(unittest.TestCase):
    """A test case with a fresh temporary folder per test."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fs-e2e-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def assertOneLineError(self, p, code):
        self.assertEqual(p.returncode, code, p.err)
        lines = [l for l in p.err.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, "expected a one-line error, got: %r" % p.err)
        self.assertTrue(lines[0].startswith("fieldsync: "), lines[0])


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def wait_for(pred, timeout=30.0, what="condition"):
    """Polls pred() until it is true, bounded; fails the test past timeout."""
    import time
    deadline = time.monotonic() + timeout
    delay = 0.005
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))


class Server:
    """A real fieldsync-server on 127.0.0.1 with a temporary data folder."""

    def __init__(self, root, name="server", extra=()):
        self.data = os.path.join(root, name)
        self.ready = os.path.join(root, name + ".ready")
        self.log_path = os.path.join(root, name + ".log")
        self.extra = list(extra)
        self.proc = None
        self.port = 0
        self.metrics_port = 0
        self.scheme = "http"
        p = self.admin("init")
        self.key = p.out.strip()

    def admin(self, *args, check=True, env=None):
        e = dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.run([binary("fieldsync-server"), args[0], *args[1:], "--data", self.data],
                           capture_output=True, timeout=120, env=e)
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(p.err)
        if check and p.returncode != 0:
            raise AssertionError("fieldsync-server %s exited %d: %s" % (args, p.returncode, p.err))
        return p

    def token(self, project="demo", role="researcher", name="device", ttl=None):
        args = ["token", "create", "--project", project, "--role", role, "--name", name]
        if ttl:
            args += ["--ttl", ttl]
        return self.admin(*args).out.strip()

    def start(self, extra=()):
        for f in (self.ready, self.ready + ".metrics"):
            if os.path.exists(f):
                os.unlink(f)
        args = [binary("fieldsync-server"), "serve", "--data", self.data,
                "--listen", "127.0.0.1:%d" % self.port, "--ready-file", self.ready,
                "--metrics-listen", "127.0.0.1:%d" % self.metrics_port,
                *self.extra, *extra]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("fieldsync-server exited %d at start" % self.proc.returncode)
            return os.path.exists(self.ready) and os.path.exists(self.ready + ".metrics")
        wait_for(ready, what="the server to listen")
        self.port = int(read_text(self.ready).strip().rsplit(":", 1)[1])
        self.metrics_port = int(read_text(self.ready + ".metrics").strip().rsplit(":", 1)[1])
        return self

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            rc = self.proc.wait(timeout=30)
            if rc != 0:
                raise AssertionError("fieldsync-server exited %d on SIGTERM" % rc)
        if self.proc:
            self.log.close()
        self.proc = None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.log.close()
        self.proc = None

    def metrics(self):
        import urllib.request
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                      timeout=10).read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = int(float(v))
        return out

    def devices(self):
        return json.loads(self.admin("device", "list", "--json").out)

    def log_text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def request(self, method, path, body=None, headers=None):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def health_ok(self):
        status, body = self.request("GET", "/v1/health")
        return status == 200 and json.loads(body)["ok"] is True


def enrolled_device(tmp, server, name="laptop", project="demo", role="researcher"):
    dev = Device(tmp, name)
    dev.init()
    tok = server.token(project=project, role=role, name=name)
    dev.ok("enroll", server.url, "--token-file", "-", input=tok)
    return dev


def feed_of(dev):
    return dev.status()["feed"]
