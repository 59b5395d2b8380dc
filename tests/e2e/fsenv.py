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
