"""Shared helpers of reliability rows 4-9 (RELIABILITY.md): the e2e harness
(fsenv), quick or soak mode, the row's one printed line, the test tools."""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import fsenv  # noqa: E402,F401
from fsenv import BIN  # noqa: E402

SOAK = os.environ.get("FS_SOAK", "0") == "1"
FSTOOL = os.path.join(BIN, "tests", "tools", "fstool")
SHIM = os.path.join(BIN, "tests", "reliability", "shim_fail.so")


def row_line(name, **figures):
    """Prints the row's one line of figures, e.g. 'disk-full K=40 lost=0'."""
    parts = [name] + ["%s=%s" % (k, v) for k, v in figures.items()]
    if SOAK:
        parts.append("mode=soak")
    line = " ".join(parts)
    print(line, flush=True)
    return line


class Clock:
    """Wall time of a row, for its line."""

    def __init__(self):
        self.t0 = time.monotonic()

    def __str__(self):
        return "%.1fs" % (time.monotonic() - self.t0)


def fstool(*args):
    import subprocess
    subprocess.run([FSTOOL, *[str(a) for a in args]], check=True, capture_output=True)


def auth_header(tmp, dev, server, target, method="GET", chunk=None):
    """A fresh signed Authorization value of dev for METHOD TARGET."""
    out = os.path.join(tmp, "auth-%d.txt" % os.getpid())
    args = [dev.home, "0", "0", out, "auth", server.key, target, method]
    if chunk:
        args += [str(chunk[0]), str(chunk[1])]
    fstool(*args)
    with open(out) as f:
        return f.read()
