#!/usr/bin/env python3
"""The fieldsync benchmark (issue 8), driven by bench/run.

Runs the real binaries of the plain release build on loopback, with the shared data set
(tests/data/field-records-1k.jsonl, repeated and varied), and prints one table: every figure
is the median of several runs, and every comparison (the single-core floor, a plain SQLite
insert, PouchDB -> pouchdb-server) is measured in the same run, interleaved run by run with
the figure it is compared with. Then the scaling curves. Writes bench/RESULTS.md (the full
run) or build/release/bench/RESULTS-quick.md (BENCH_QUICK=1).

It measures and never asserts: a target that is missed is reported, with by how much.
Standard library only; PouchDB through node when bench/node_modules holds it.
`bench.py --render FILE` writes a results file again from the raw figures it holds.
"""

import datetime
import http.client
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.abspath(os.environ.get("FS_BIN") or os.path.join(ROOT, "build", "release"))
os.environ["FS_BIN"] = BIN
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import fsenv  # noqa: E402  (the end-to-end tests' harness: Server, Device)

QUICK = os.environ.get("BENCH_QUICK", "0") not in ("", "0")
KEEP = os.environ.get("BENCH_KEEP", "0") not in ("", "0")
DATA_1K = os.path.join(ROOT, "tests", "data", "field-records-1k.jsonl")
FLOOR = os.path.join(BIN, "bench", "floor")
RUNS = os.path.join(BIN, "bench", "runs")
FSTOOL = os.path.join(BIN, "tests", "tools", "fstool")
NODE_MODULES = os.path.join(HERE, "node_modules")

if QUICK:
    CFG = dict(runs=3, big_runs=3, import_n=5000, push_n=(2000, 10000),
               curve_n=(1000, 2000, 5000, 10000), add_rounds=3, adds=60,
               devices=50, device_curve=(1, 10, 50), pushes=5, per_push=10, device_runs=3,
               idle_s=15, pouch_runs=3)
else:
    CFG = dict(runs=5, big_runs=3, import_n=20000, push_n=(20000, 100000),
               curve_n=(1000, 5000, 20000, 50000, 100000), add_rounds=5, adds=200,
               devices=200, device_curve=(1, 10, 50, 100, 200), pushes=10, per_push=10,
               device_runs=3, idle_s=60, pouch_runs=3)


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def cpu_snapshot():
    """(wall, busy CPU-seconds of the whole machine, CPU-seconds of this process and its
    waited-for children): the difference tells how much other sessions used meanwhile."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
    t = os.times()
    return time.monotonic(), busy, t.user + t.system + t.children_user + t.children_system


def others_share(a, b):
    """Share of the machine's CPU (all cores) used by other processes between a and b."""
    wall = b[0] - a[0]
    if wall <= 0:
        return 0.0
    return max(0.0, ((b[1] - a[1]) - (b[2] - a[2])) / (wall * (os.cpu_count() or 1)))


def fsync_probe(work, n=30):
    """Median fdatasync of a 4 KiB append in the work folder, in ms: how busy the disk is
    (other sessions' I/O makes every durable commit slower)."""
    path = os.path.join(work, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    ts = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            ts.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(ts)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    r = fn(*a, **kw)
    return time.perf_counter() - t0, r


def run(args, **kw):
    p = subprocess.run(args, capture_output=True, **kw)
    if p.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(map(str, args[:4])), p.returncode,
                                                  p.stderr.decode("utf-8", "replace")[-2000:]))
    return p.stdout.decode("utf-8", "replace")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def copy_home(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    return dst


# ---- the data set -------------------------------------------------------------------------------

def make_data(work, n_max):
    """The shared 1,000 records, repeated: copy 0 is the file itself; copy k > 0 is shuffled
    and each note gains " (visit k+1)", so that every record's content differs and no copy
    sits within deflate's 32 KiB window of its twin. Returns a function n -> path."""
    with open(DATA_1K, encoding="utf-8") as f:
        base = [l.rstrip("\n") for l in f if l.strip()]
    rows = []
    k = 0
    while len(rows) < n_max:
        if k == 0:
            rows.extend(base)
        else:
            order = list(range(len(base)))
            random.Random(k).shuffle(order)
            for i in order:
                o = json.loads(base[i])
                o["note"] = o["note"] + " (visit %d)" % (k + 1)
                rows.append(json.dumps(o, ensure_ascii=False))
        k += 1
    paths = {}

    def path(n):
        if n not in paths:
            p = os.path.join(work, "records-%d.jsonl" % n)
            with open(p, "w", encoding="utf-8") as f:
                f.write("\n".join(rows[:n]) + "\n")
            paths[n] = p
        return paths[n]
    return path, rows


# ---- a counting TCP relay (bytes on the wire) --------------------------------------------------

class CountingProxy:
    """127.0.0.1:<port chosen by the kernel> -> target; counts the bytes each way (TCP
    payload: HTTP headers and bodies, not TCP/IP headers)."""

    def __init__(self, target_port):
        self.target = target_port
        self.up = 0
        self.down = 0
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(256)
        self.port = self.ls.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.target))
            for a, b, up in ((c, s, True), (s, c, False)):
                threading.Thread(target=self._pump, args=(a, b, up), daemon=True).start()

    def _pump(self, a, b, up):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                with self.lock:
                    if up:
                        self.up += len(d)
                    else:
                        self.down += len(d)
                b.sendall(d)
        except OSError:
            pass
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def reset(self):
        with self.lock:
            self.up = self.down = 0

    def close(self):
        self.closed = True
        self.ls.close()


# ---- fieldsync pieces ---------------------------------------------------------------------------

def master_store(work, n, data):
    """A store holding n imported records, not enrolled: copied for every push run."""
    d = fsenv.Device(work, "master-%d" % n)
    d.init()
    d.ok("import", data(n), timeout=600)
    return d.home


def enroll(dev, server, role="researcher", url=None):
    tok = server.token(role=role, name=dev.name)
    dev.ok("enroll", url or server.url, "--token-file", "-", input=tok)


def push_run(work, master, n, with_pull=True):
    """One push of a copy of master to a fresh server; then a fresh coordinator's pull and
    export of the same records. Returns seconds for push, pull, export."""
    root = tempfile.mkdtemp(prefix="push-", dir=work)
    srv = fsenv.Server(root).start()
    try:
        dev = fsenv.Device(root, "laptop")
        copy_home(master, dev.home)
        enroll(dev, srv)
        c0, s0 = children_cpu(), cpu_seconds(srv.proc.pid)
        t_push, p = timed(dev.ok, "sync", timeout=1200)
        c1, s1 = children_cpu(), cpu_seconds(srv.proc.pid)
        st = dev.status()
        if st["server_have_seq"] != n:
            raise RuntimeError("push: the server holds %s of %d" % (st["server_have_seq"], n))
        res = {"push": t_push, "client_cpu": c1 - c0, "server_cpu": s1 - s0}
        if with_pull:
            co = fsenv.Device(root, "coordinator")
            co.init()
            enroll(co, srv, role="coordinator")
            res["pull"], _ = timed(co.ok, "pull", timeout=1200)
            out = os.path.join(root, "export.jsonl")
            res["export"], _ = timed(co.ok, "export", "--format", "jsonl", "--out", out,
                                     timeout=1200)
            with open(out, "rb") as f:
                lines = sum(1 for _ in f)
            if lines != n:
                raise RuntimeError("export: %d records, expected %d" % (lines, n))
        return res
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def floor_push(work, master):
    out = os.path.join(work, "floor-push.db")
    r = json.loads(run([FLOOR, "push", os.path.join(master, "store.db"), out]))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(out + suffix):
            os.unlink(out + suffix)
    return r


# ---- PouchDB ------------------------------------------------------------------------------------

def pouch_available():
    if not shutil.which("node"):
        return "node is not installed"
    for m in ("pouchdb", "pouchdb-server"):
        if not os.path.isdir(os.path.join(NODE_MODULES, m)):
            return "bench/node_modules/%s is missing (bench/run installs it with npm)" % m
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PouchServer:
    def __init__(self, root):
        self.dir = os.path.join(root, "pouchdb-server")
        os.makedirs(self.dir)
        for attempt in range(5):
            self.port = free_port()
            self.log = open(os.path.join(root, "pouchdb-server.log"), "ab")
            self.proc = subprocess.Popen(
                ["node", os.path.join(NODE_MODULES, "pouchdb-server", "bin", "pouchdb-server"),
                 "--host", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
                 "--no-stdout-logs"],
                cwd=self.dir, stdout=self.log, stderr=self.log)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                    c.request("GET", "/")
                    if c.getresponse().status == 200:
                        return
                except OSError:
                    time.sleep(0.1)
            self.stop()
        raise RuntimeError("pouchdb-server did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def pouch_run(work, data, n, proxy=False):
    root = tempfile.mkdtemp(prefix="pouch-", dir=work)
    ps = PouchServer(root)
    px = None
    try:
        port = ps.port
        if proxy:
            px = CountingProxy(ps.port)
            port = px.port
        out = run(["node", os.path.join(HERE, "pouch.js"), data(n), str(n),
                   os.path.join(root, "local"), "http://127.0.0.1:%d/bench" % port],
                  timeout=3600)
        r = json.loads(out.strip().splitlines()[-1])
        if px:
            r["wire_bytes"] = px.up + px.down
        return r
    finally:
        if px:
            px.close()
        ps.stop()
        shutil.rmtree(root, ignore_errors=True)


# ---- sections ------------------------------------------------------------------------------------

def bench_add(work, master_1k):
    """add: process start to durable commit (the process exits after COMMIT with
    synchronous=FULL), on a store that already holds 1,000 records."""
    home = copy_home(master_1k, os.path.join(work, "add-store"))
    args = [RUNS, str(CFG["adds"]), os.path.join(BIN, "fieldsync"), "--home", home, "add",
            "interview", "--site", "Baodi Science Town", "--region", "天津市/宝坻区",
            "--gps", "39.717,117.309,8", "--author", "Ye T.", "--field",
            "interviewee_role=official", "--field", "topic=industrial transfer",
            "--note", "the new plant hires locally; 新厂主要在本地招工; commuting by bus"]
    meds, p99s, every = [], [], []
    for r in range(CFG["add_rounds"]):
        us = [int(x) / 1000.0 for x in run(args, timeout=600).split()]
        meds.append(median(us))
        p99s.append(pct(us, 99))
        every.extend(us)
    shutil.rmtree(home, ignore_errors=True)
    return {"median_ms": median(meds), "p99_ms": median(p99s), "rounds": CFG["add_rounds"],
            "per_round": CFG["adds"], "pooled_p99_ms": pct(every, 99),
            "max_ms": max(every)}


def bench_import(work, data):
    n = CFG["import_n"]
    path = data(n)
    fs_t, fl_t = [], []
    master = None
    for r in range(CFG["runs"]):
        d = fsenv.Device(work, "import-%d" % r)
        d.init()
        t, _ = timed(d.ok, "import", path, timeout=600)
        fs_t.append(t)
        if master is None:
            master = d.home
        else:
            shutil.rmtree(d.home, ignore_errors=True)
        out = os.path.join(work, "floor-import.db")
        t, _ = timed(run, [FLOOR, "import", path, out])
        fl_t.append(t)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(out + suffix):
                os.unlink(out + suffix)
    return {"n": n, "fieldsync_s": median(fs_t), "floor_s": median(fl_t),
            "fieldsync_rps": n / median(fs_t), "floor_rps": n / median(fl_t),
            "runs": CFG["runs"]}, master


def bench_push(work, data, masters, pouch_note):
    """Push n records end to end against the floor and PouchDB, interleaved run by run;
    pull + export after each push."""
    res = {}
    for n in CFG["push_n"]:
        runs = CFG["runs"] if n == CFG["push_n"][0] else CFG["big_runs"]
        pr, fl, po = [], [], []
        for r in range(runs):
            log("push %d: run %d of %d" % (n, r + 1, runs))
            fl.append(floor_push(work, masters[n]))
            pr.append(push_run(work, masters[n], n, with_pull=n == CFG["push_n"][0]))
            if pouch_note is None and r < CFG["pouch_runs"]:
                po.append(pouch_run(work, data, n))
        x = {"n": n, "runs": runs,
             "push_s": median([p["push"] for p in pr]),
             "floor_s": median([f["seconds"] for f in fl]),
             "floor_stages": {k: median([f[k] for f in fl]) for k in
                              ("deflate", "open", "inflate", "parse", "verify", "hash",
                               "content", "insert")},
             "floor_wire_bytes": fl[0]["wire_bytes"],
             "push_all": [p["push"] for p in pr], "floor_all": [f["seconds"] for f in fl],
             "ratio": median([p["push"] / f["seconds"] for p, f in zip(pr, fl)]),
             "client_cpu_s": median([p["client_cpu"] for p in pr]),
             "server_cpu_s": median([p["server_cpu"] for p in pr])}
        if "pull" in pr[0]:
            x.update(pull_s=median([p["pull"] for p in pr]),
                     export_s=median([p["export"] for p in pr]),
                     pull_export_s=median([p["pull"] + p["export"] for p in pr]))
        if po:
            x["pouch_s"] = median([p["seconds"] for p in po])
            x["pouch_all"] = [p["seconds"] for p in po]
            x["pouch_runs"] = len(po)
            x["pouch_speedup"] = median([q["seconds"] / p["push"] for q, p in zip(po, pr)])
        res[n] = x
    return res


def bench_wire(work, data, master, n, pouch_note):
    """Bytes both ways through a counting relay, for the push only (enrollment excluded)."""
    fs_bytes = []
    for r in range(3):
        root = tempfile.mkdtemp(prefix="wire-", dir=work)
        srv = fsenv.Server(root).start()
        px = CountingProxy(srv.port)
        try:
            dev = fsenv.Device(root, "laptop")
            copy_home(master, dev.home)
            enroll(dev, srv, url="http://127.0.0.1:%d" % px.port)
            px.reset()
            m0 = srv.metrics()
            dev.ok("sync", timeout=1200)
            time.sleep(0.2)
            m1 = srv.metrics()
            fs_bytes.append((px.up, px.down,
                             m1["fieldsync_bytes_in_total"] - m0["fieldsync_bytes_in_total"]))
        finally:
            px.close()
            srv.stop()
            shutil.rmtree(root, ignore_errors=True)
    up = median([b[0] for b in fs_bytes])
    down = median([b[1] for b in fs_bytes])
    body = median([b[2] for b in fs_bytes])
    json_bytes = os.path.getsize(data(n))
    r = {"n": n, "up": up, "down": down, "total": up + down, "bodies_in": body,
         "json_bytes": json_bytes, "per_record": (up + down) / n,
         "json_per_record": json_bytes / n, "pct": 100.0 * (up + down) / json_bytes}
    if pouch_note is None:
        p = pouch_run(work, data, n, proxy=True)
        r["pouch_total"] = p["wire_bytes"]
        r["pouch_per_record"] = p["wire_bytes"] / n
    return r


def bench_curve(work, data, masters, push):
    pts = []
    for n in CFG["curve_n"]:
        if n in push:
            pts.append({"n": n, "push_s": push[n]["push_s"], "floor_s": push[n]["floor_s"],
                        "runs": push[n]["runs"]})
            continue
        pr, fl = [], []
        for r in range(3):
            log("push curve %d: run %d of 3" % (n, r + 1))
            fl.append(floor_push(work, masters[n])["seconds"])
            pr.append(push_run(work, masters[n], n, with_pull=False)["push"])
        pts.append({"n": n, "push_s": median(pr), "floor_s": median(fl), "runs": 3})
    return pts


# ---- many devices --------------------------------------------------------------------------------

def vm_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                out[k] = int(v.split()[0])
    return out


def cpu_seconds(pid):
    """utime + stime of a running process, all threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ctx_switches(pid):
    total = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def prepare_devices(work, rows):
    """D enrolled stores, device i holding records i*E..(i+1)*E of the data set, and each
    one's batches of per_push entries made by fstool (valid, signed pushes); then a copy of
    the server's data folder with every device enrolled and nothing pushed."""
    D, P, E = CFG["devices"], CFG["pushes"], CFG["per_push"]
    root = os.path.join(work, "devices")
    os.makedirs(root)
    srv = fsenv.Server(root, "server").start()
    devs = []

    def one(i):
        d = fsenv.Device(root, "dev-%03d" % i)
        d.init()
        enroll(d, srv)
        recs = os.path.join(root, "dev-%03d.jsonl" % i)
        with open(recs, "w", encoding="utf-8") as f:
            f.write("\n".join(rows[(i * P * E) % len(rows):][:P * E]) + "\n")
        d.ok("import", recs)
        feed = d.status()["feed"]
        batches = []
        for b in range(P):
            out = os.path.join(root, "dev-%03d-%02d.fsb" % (i, b))
            run([FSTOOL, d.home, str(b * E + 1), str((b + 1) * E), out])
            with open(out, "rb") as f:
                batches.append(f.read())
        return {"feed": feed, "batches": batches}

    with ThreadPoolExecutor(4) as ex:
        devs = list(ex.map(one, range(D)))
    srv.stop()
    snap = os.path.join(work, "devices-snapshot")
    shutil.copytree(srv.data, snap)
    return devs, snap


def device_load(work, devs, snap, k):
    """k devices push at once, each from its own loopback address (as k laptops would; the
    server's per-address limit is 64), over one kept-alive connection, its batches one
    after the other as soon as each receipt arrives (closed loop). Bounded: every request
    times out at 60 s, the whole load at 300 s."""
    root = tempfile.mkdtemp(prefix="load-", dir=work)
    srv = fsenv.Server(root)
    shutil.rmtree(srv.data)
    shutil.copytree(snap, srv.data)
    srv.start()
    srv_cpu0 = cpu_seconds(srv.proc.pid)
    lat, errors = [], []
    lock = threading.Lock()
    barrier = threading.Barrier(k + 1)
    ends = []
    deadline = [0.0]

    def device(i):
        d = devs[i]
        mine = []
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60,
                                          source_address=("127.1.%d.%d" % (i // 250,
                                                                           i % 250 + 1), 0))
        try:
            barrier.wait()
            for body in d["batches"]:
                if time.perf_counter() > deadline[0]:
                    raise RuntimeError("load deadline passed")
                t0 = time.perf_counter()
                conn.request("POST", "/v1/feeds/%s/entries" % d["feed"], body=body,
                             headers={"Content-Type": "application/octet-stream"})
                resp = conn.getresponse()
                payload = resp.read()
                t1 = time.perf_counter()
                if resp.status != 200:
                    raise RuntimeError("push answered %d: %r" % (resp.status, payload[:200]))
                mine.append(t1 - t0)
        except Exception as e:  # noqa: BLE001  (reported, never hidden)
            with lock:
                errors.append("device %d: %s" % (i, e))
        finally:
            conn.close()
            with lock:
                lat.extend(mine)
                ends.append(time.perf_counter())

    try:
        threads = [threading.Thread(target=device, args=(i,)) for i in range(k)]
        for t in threads:
            t.start()
        deadline[0] = time.perf_counter() + 300
        barrier.wait()
        start = time.perf_counter()
        cpu0 = time.process_time()
        for t in threads:
            t.join()
        client_cpu = time.process_time() - cpu0
        wall = max(ends) - start
        pid = srv.proc.pid
        hwm = vm_status(pid).get("VmHWM", 0)
        srv_cpu = cpu_seconds(pid) - srv_cpu0
        m = srv.metrics()
        stored = m.get("fieldsync_entries_stored_total", 0)
        entries = k * CFG["pushes"] * CFG["per_push"]
        if errors:
            raise RuntimeError("%d devices failed, first: %s" % (len(errors), errors[0]))
        if stored != entries:
            raise RuntimeError("the server stored %d entries of %d" % (stored, entries))
        buckets = sorted(((float(re.search(r'le="([^"]+)"', key).group(1).replace("+Inf", "inf")),
                           v) for key, v in m.items()
                          if key.startswith("fieldsync_push_latency_ms_bucket")))
        count = m.get("fieldsync_push_latency_ms_count", 0)
        srv_p99 = next((le for le, c in buckets if c >= 0.99 * count), float("inf"))
        return {"k": k, "entries": entries, "wall_s": wall, "eps": entries / wall,
                "p50_ms": pct(lat, 50) * 1000, "p99_ms": pct(lat, 99) * 1000,
                "max_ms": max(lat) * 1000, "server_hwm_kib": hwm, "server_p99_le_ms": srv_p99,
                "client_cpu_s": client_cpu, "server_cpu_s": srv_cpu}
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def bench_devices(work, rows):
    log("devices: preparing %d enrolled stores and their batches" % CFG["devices"])
    devs, snap = prepare_devices(work, rows)
    curve = []
    for k in CFG["device_curve"]:
        rs = []
        for r in range(CFG["device_runs"]):
            log("devices: %d at once, run %d of %d" % (k, r + 1, CFG["device_runs"]))
            rs.append(device_load(work, devs, snap, k))
        curve.append({"k": k, "runs": len(rs), "entries": rs[0]["entries"],
                      "wall_s": median([x["wall_s"] for x in rs]),
                      "eps": median([x["eps"] for x in rs]),
                      "p50_ms": median([x["p50_ms"] for x in rs]),
                      "p99_ms": median([x["p99_ms"] for x in rs]),
                      "max_ms": median([x["max_ms"] for x in rs]),
                      "server_hwm_kib": median([x["server_hwm_kib"] for x in rs]),
                      "server_hwm_max_kib": max(x["server_hwm_kib"] for x in rs),
                      "server_p99_le_ms": median([x["server_p99_le_ms"] for x in rs]),
                      "client_cpu_s": median([x["client_cpu_s"] for x in rs]),
                      "server_cpu_s": median([x["server_cpu_s"] for x in rs])})
    return curve


# ---- the daemon idle -----------------------------------------------------------------------------

def bench_daemon(work, master_1k):
    """fieldsyncd on an enrolled, fully synced store: RssAnon once it settled, and its
    wake-ups (context switches of all its threads) over a quiet window. Then one add, to
    show that it still wakes for a change (inotify) and pushes it."""
    root = tempfile.mkdtemp(prefix="daemon-", dir=work)
    srv = fsenv.Server(root).start()
    proc = None
    try:
        dev = fsenv.Device(root, "laptop")
        copy_home(master_1k, dev.home)
        enroll(dev, srv)
        dev.ok("sync")
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "FIELDSYNC_HOME")}
        dlog = open(os.path.join(root, "fieldsyncd.log"), "ab")
        proc = subprocess.Popen([os.path.join(BIN, "fieldsyncd"), "--home", dev.home],
                                stdout=dlog, stderr=dlog, env=env)
        time.sleep(3)
        if proc.poll() is not None:
            raise RuntimeError("fieldsyncd exited %d" % proc.returncode)
        st = vm_status(proc.pid)
        c0 = ctx_switches(proc.pid)
        time.sleep(CFG["idle_s"])
        c1 = ctx_switches(proc.pid)
        st2 = vm_status(proc.pid)
        have0 = dev.status()["server_have_seq"]
        dev.add("interview", "--site", "Baodi", "--note", "daemon check")
        t0 = time.perf_counter()
        fsenv.wait_for(lambda: dev.status()["server_have_seq"] > have0, timeout=30,
                       what="the daemon to push a new record")
        woke_s = time.perf_counter() - t0
        return {"rssanon_kib": st.get("RssAnon", 0), "rssanon_end_kib": st2.get("RssAnon", 0),
                "vmrss_kib": st.get("VmRSS", 0), "window_s": CFG["idle_s"],
                "wakeups": c1 - c0, "wakeups_min": (c1 - c0) * 60.0 / CFG["idle_s"],
                "push_after_add_s": woke_s}
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


# ---- machine and versions ------------------------------------------------------------------------

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def machine():
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem,
            "kernel": platform.release(), "debian": sh("cat /etc/debian_version"),
            "disk": sh("df -T %s | awk 'NR==2 {print $2}'" % tempfile.gettempdir())}


def versions():
    pc = lambda m: sh("pkg-config --modversion %s" % m) or "?"  # noqa: E731
    v = {"fieldsync": sh("git -C %s describe --always --dirty 2>/dev/null" % ROOT) or "?",
         "gcc": sh("gcc -dumpfullversion"), "sqlite": pc("sqlite3"),
         "libsodium": pc("libsodium"), "zlib": pc("zlib"), "jansson": pc("jansson"),
         "libcurl": pc("libcurl"), "libmicrohttpd": pc("libmicrohttpd"),
         "python": platform.python_version()}
    if shutil.which("node"):
        v["node"] = sh("node --version")
        for m in ("pouchdb", "pouchdb-server", "leveldown"):
            p = os.path.join(NODE_MODULES, m, "package.json")
            if os.path.exists(p):
                with open(p) as f:
                    v[m] = json.load(f)["version"]
    return v


# ---- the report -----------------------------------------------------------------------------------

def fmt_n(x, d=0):
    if x != x:
        return "—"
    return "{:,.{}f}".format(x, d)


def verdict(ok, miss):
    return "met" if ok else "MISSED: " + miss


def build_table(R):
    rows = []  # (figure, fieldsync, compared with (same run), target, verdict)
    a = R["add"]
    rows.append(("add latency, median (start to durable commit)", "%.1f ms" % a["median_ms"],
                 "", "≤ 10 ms", verdict(a["median_ms"] <= 10,
                                         "%.1f ms over" % (a["median_ms"] - 10))))
    rows.append(("add latency, p99", "%.1f ms" % a["p99_ms"], "", "≤ 25 ms",
                 verdict(a["p99_ms"] <= 25, "%.1f ms over" % (a["p99_ms"] - 25))))
    im = R["import"]
    rows.append(("import %s records" % fmt_n(im["n"]), "%s rec/s" % fmt_n(im["fieldsync_rps"]),
                 "plain SQLite insert: %s rec/s (fieldsync %.1f× its time)" % (
                     fmt_n(im["floor_rps"]), im["fieldsync_s"] / im["floor_s"]),
                 "≥ 15,000 rec/s",
                 verdict(im["fieldsync_rps"] >= 15000, "%.0f%% short" % (
                     100 - 100 * im["fieldsync_rps"] / 15000))))
    for n, p in R["push"].items():
        ratio = p["ratio"]
        rows.append(("push %s records, end to end" % fmt_n(n),
                     "%.2f s = %s rec/s (CPU: client %.1f s, server %.1f s)" % (
                         p["push_s"], fmt_n(n / p["push_s"]), p["client_cpu_s"],
                         p["server_cpu_s"]),
                     "single-core floor: %.2f s = %s rec/s; ratio %.2f" % (
                         p["floor_s"], fmt_n(n / p["floor_s"]), ratio),
                     "ratio ≤ 1.0 (aim 0.7)",
                     verdict(ratio <= 1.0, "ratio %.2f, %.0f%% slower than the floor" % (
                         ratio, 100 * (ratio - 1))) + ("" if ratio > 1.0 or ratio <= 0.7
                                                       else " (aim 0.7 not reached)")))
        if "pouch_s" in p:
            sp = p["pouch_speedup"]
            rows.append(("push %s records vs PouchDB" % fmt_n(n), "%.2f s" % p["push_s"],
                         "PouchDB → pouchdb-server: %.2f s = %s rec/s; fieldsync %.1f× faster" % (
                             p["pouch_s"], fmt_n(n / p["pouch_s"]), sp),
                         "≥ 5× PouchDB",
                         verdict(sp >= 5, "%.1f× (%.0f%% short)" % (sp, 100 - 100 * sp / 5))))
        else:
            rows.append(("push %s records vs PouchDB" % fmt_n(n), "%.2f s" % p["push_s"],
                         "skipped: " + R["pouch_note"], "≥ 5× PouchDB", "not measured"))
    w = R["wire"]
    rows.append(("bytes on the wire per record (push, both ways)",
                 "%s B (%.1f%% of the import JSON)" % (fmt_n(w["per_record"]), w["pct"]),
                 "import JSON: %s B/rec%s" % (
                     fmt_n(w["json_per_record"]),
                     "; PouchDB: %s B/rec" % fmt_n(w["pouch_per_record"])
                     if "pouch_per_record" in w else ""),
                 "≤ 40%", verdict(w["pct"] <= 40, "%.1f%%, %.1f points over" % (
                     w["pct"], w["pct"] - 40))))
    for n, p in R["push"].items():
        if "pull_export_s" not in p:
            continue
        rps = n / p["pull_export_s"]
        rows.append(("coordinator pull + export (jsonl), %s records" % fmt_n(n),
                     "%s rec/s" % fmt_n(rps),
                     "pull %.2f s + export %.2f s" % (p["pull_s"], p["export_s"]),
                     "≥ 10,000 rec/s",
                     verdict(rps >= 10000, "%.0f%% short" % (100 - 100 * rps / 10000))))
    d = [x for x in R["devices"] if x["k"] == CFG["devices"]][0]
    rows.append(("%d concurrent devices: aggregate" % d["k"], "%s entries/s" % fmt_n(d["eps"]),
                 "%s entries in %.2f s" % (fmt_n(d["entries"]), d["wall_s"]),
                 "≥ 6,000 entries/s",
                 verdict(d["eps"] >= 6000, "%.0f%% short" % (100 - 100 * d["eps"] / 6000))))
    rows.append(("%d concurrent devices: p99 push latency" % d["k"], "%.0f ms" % d["p99_ms"],
                 "p50 %.0f ms; server histogram p99 ≤ %s ms" % (
                     d["p50_ms"], fmt_n(d["server_p99_le_ms"])),
                 "≤ 500 ms", verdict(d["p99_ms"] <= 500, "%.0f ms over" % (d["p99_ms"] - 500))))
    rows.append(("server peak RSS under that load", "%.1f MiB" % (d["server_hwm_kib"] / 1024),
                 "VmHWM, highest run %.1f MiB" % (d["server_hwm_max_kib"] / 1024), "≤ 128 MiB",
                 verdict(d["server_hwm_kib"] <= 128 * 1024, "%.1f MiB over" % (
                     d["server_hwm_kib"] / 1024 - 128))))
    dm = R["daemon"]
    rows.append(("fieldsyncd idle: RssAnon", "%.2f MiB" % (dm["rssanon_kib"] / 1024),
                 "VmRSS %.1f MiB (shared libraries included)" % (dm["vmrss_kib"] / 1024),
                 "≤ 4 MiB", verdict(dm["rssanon_kib"] <= 4096, "%.2f MiB over" % (
                     dm["rssanon_kib"] / 1024 - 4))))
    rows.append(("fieldsyncd idle: wake-ups per minute", "%.1f" % dm["wakeups_min"],
                 "%d context switches in %d s; an add was pushed %.2f s later" % (
                     dm["wakeups"], dm["window_s"], dm["push_after_add_s"]),
                 "≤ 4 / min", verdict(dm["wakeups_min"] <= 4, "%.1f over" % (
                     dm["wakeups_min"] - 4))))
    return rows


def text_table(headers, rows):
    w = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    line = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip()  # noqa
    return "\n".join([line(headers), line(["-" * x for x in w])] + [line(r) for r in rows])


def md_table(headers, rows):
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def curve_rows(R):
    base = R["curve"][0]
    push = []
    for p in R["curve"]:
        per = p["push_s"] / p["n"] * 1000
        push.append((fmt_n(p["n"]), "%.2f s" % p["push_s"], fmt_n(p["n"] / p["push_s"]),
                     "%.1f ms" % per, "%.2f" % (per / (base["push_s"] / base["n"] * 1000)),
                     "%.2f s" % p["floor_s"], "%.2f" % (p["push_s"] / p["floor_s"])))
    dev = []
    d1 = R["devices"][0]
    for d in R["devices"]:
        dev.append((d["k"], fmt_n(d["entries"]), "%.2f s" % d["wall_s"], fmt_n(d["eps"]),
                    "%.2f" % (d["wall_s"] / d["entries"] / (d1["wall_s"] / d1["entries"])),
                    "%.0f ms" % d["p50_ms"], "%.0f ms" % d["p99_ms"],
                    "%.1f MiB" % (d["server_hwm_kib"] / 1024)))
    return push, dev


PUSH_CURVE_H = ("entries", "push", "entries/s", "per 1,000", "vs 1,000 (1.00 = linear)",
                "floor", "push/floor")
DEV_CURVE_H = ("devices", "entries", "wall", "entries/s", "time per entry vs 1 device",
               "p50 push", "p99 push", "server peak RSS")
MAIN_H = ("figure", "fieldsync", "compared with (same run)", "target", "verdict")


def growth_exponent(xs, ts):
    """k of the least-squares fit t = c * x^k on log-log axes: 1 is linear."""
    lx = [math.log(x) for x in xs]
    lt = [math.log(t) for t in ts]
    mx, mt = sum(lx) / len(lx), sum(lt) / len(lt)
    return sum((a - mx) * (b - mt) for a, b in zip(lx, lt)) / sum((a - mx) ** 2 for a in lx)


def linear_word(xs, ts):
    k = growth_exponent(xs, ts)
    if k <= 1.1:
        return "linear: time grows as entries^%.2f (least-squares fit on log-log axes)" % k
    return "worse than linear: time grows as entries^%.2f (least-squares fit on log-log " \
        "axes)" % k


def report(R, started, elapsed):
    rows = build_table(R)
    push_c, dev_c = curve_rows(R)
    p_word = linear_word([p["n"] for p in R["curve"]], [p["push_s"] for p in R["curve"]])
    dev_word = linear_word([d["entries"] for d in R["devices"]],
                           [d["wall_s"] for d in R["devices"]])
    if len(R["devices"]) > 2:
        dev_word += "; p99 push latency grows as devices^%.2f" % growth_exponent(
            [d["k"] for d in R["devices"][1:]], [d["p99_ms"] for d in R["devices"][1:]])
    out = []
    out.append(text_table(MAIN_H, rows))
    out.append("")
    out.append("Scaling: push time by entries (one device, fresh server each run) — "
               + p_word)
    out.append(text_table(PUSH_CURVE_H, push_c))
    out.append("")
    out.append("Scaling: 1 to %d devices pushing at once (%d pushes × %d entries each) — %s"
               % (CFG["devices"], CFG["pushes"], CFG["per_push"], dev_word))
    out.append(text_table(DEV_CURVE_H, dev_c))
    text = "\n".join(out)
    print(text)

    m, v = R["machine"], R["versions"]
    md = []
    md.append("# fieldsync benchmark results%s" % (" (quick mode)" if QUICK else ""))
    md.append("")
    md.append("Produced by `bench/run` (%s). Every figure is the median of several runs; each "
              "comparison was measured in the same run, interleaved run by run with the figure "
              "it is compared with. Nothing here is asserted by a test." % (
                  "BENCH_QUICK=1" if QUICK else "full mode"))
    md.append("")
    md.append("- **Date:** %s (the run took %.0f s)" % (started.strftime("%Y-%m-%d %H:%M UTC"),
                                                       elapsed))
    md.append("- **Machine:** %s, %d cores, %s memory, Linux %s, Debian %s; data on %s" % (
        m["cpu"], m["cores"], m["memory"], m["kernel"], m["debian"], m["disk"]))
    md.append("- **Load average** at start %s, at end %s. Other sessions share this machine; "
              "the CPU they used while each part ran, as a share of both cores: %s" % (
                  R["load_start"], R["load_end"], ", ".join(
                      "%s %.0f%%" % (k, 100 * v) for k, v in R["others_cpu"].items())
                  + ("; the benchmark ran at nice %d (BENCH_NICE)" % R["nice"]
                     if R.get("nice") else "")))
    if "fsync_ms" in R:
        md.append("- **Disk:** median fdatasync of a 4 KiB append, probed after each part "
                  "(an idle disk here takes 0.2–0.4 ms; other sessions' I/O makes every "
                  "durable commit slower): " + ", ".join(
                      "%s %.2f ms" % (k, v) for k, v in R["fsync_ms"].items()))
    md.append("- **Versions:** " + ", ".join("%s %s" % (k, v[k]) for k in v))
    md.append("- **Build:** the plain release preset (CMake `Release`: -O3, no sanitizer), "
              "`%s`" % BIN.replace(ROOT + "/", ""))
    md.append("- **Data:** tests/data/field-records-1k.jsonl (%s B per record as import JSON), "
              "repeated: copy k > 0 shuffled and each note suffixed \" (visit k+1)\", so every "
              "record differs" % fmt_n(R["wire"]["json_per_record"]))
    md.append("")
    md.append("## The table")
    md.append("")
    md.append(md_table(MAIN_H, rows))
    md.append("")
    md.append("## Scaling curves")
    md.append("")
    md.append("Push time by entries (one device, a fresh server each run): "
              + p_word + ".")
    md.append("")
    md.append(md_table(PUSH_CURVE_H, push_c))
    md.append("")
    md.append("1 to %d devices pushing at once, each %d pushes of %d entries in a closed loop "
              "(the next push as soon as the receipt arrives): %s." % (
                  CFG["devices"], CFG["pushes"], CFG["per_push"], dev_word))
    md.append("")
    md.append(md_table(DEV_CURVE_H, dev_c))
    md.append("")
    md.append("## How each figure was measured")
    md.append("")
    for line in METHOD:
        md.append("- " + line)
    md.append("")
    md.append("## Floor breakdown (single core, seconds, median)")
    md.append("")
    stages = ("deflate", "open", "inflate", "parse", "verify", "hash", "content", "insert")
    md.append(md_table(("entries",) + stages + ("total",),
                       [(fmt_n(n),) + tuple("%.3f" % p["floor_stages"][s] for s in stages)
                        + ("%.3f" % p["floor_s"],) for n, p in R["push"].items()]))
    md.append("")
    md.append("## Raw figures")
    md.append("")
    md.append("```json")
    md.append(json.dumps(R, indent=1, default=str, ensure_ascii=False))
    md.append("```")
    md.append("")
    path = os.path.join(HERE, "RESULTS.md") if not QUICK else os.path.join(
        BIN, "bench", "RESULTS-quick.md")
    analysis = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
        mm = re.search(r"<!-- analysis -->.*?<!-- /analysis -->", old, re.S)
        if mm:
            analysis = mm.group(0)
    if not analysis:
        analysis = ("<!-- analysis -->\n## Analysis of the misses\n\n(not written yet for this "
                    "run)\n<!-- /analysis -->")
    body = "\n".join(md)
    body = body.replace("## How each figure was measured",
                        analysis + "\n\n## How each figure was measured", 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(body)
    log("wrote %s" % path)


METHOD = [
    "**add latency**: `bench/runs` forks and waits for `fieldsync add interview --site … "
    "--gps … --field … --note …` back to back on a store already holding 1,000 records; the "
    "time is fork to exit, and the command exits after its COMMIT (WAL, synchronous=FULL). "
    "Median and nearest-rank p99 per round; the median of the rounds' figures.",
    "**import**: `fieldsync import` of the data set into a fresh store (process wall time), "
    "against `bench/floor import`: every line of the same file inserted as a text row in one "
    "transaction of a fresh SQLite database (WAL, synchronous=FULL), also a whole process.",
    "**push**: a copy of a store holding the records, enrolled with a fresh "
    "`fieldsync-server`; the wall time of `fieldsync sync` (it execs fieldsync-remote: GET "
    "head, POST batches of up to 5,000 entries, receipts, corrections). The floor is "
    "`bench/floor push` on the same entries, one core: deflate (level 4, as the agent) and sign the "
    "batches as the agent cuts them, open, verify the batch signature, parse the header, "
    "inflate, and for each entry strict parse (proto_entry_parse), Ed25519 verify, content "
    "and entry hash, chain check, strict content parse (proto_content_parse), and a SQLite "
    "insert (one transaction per batch, WAL, synchronous=FULL). Ratio: the median over the "
    "runs of push time / floor time, each pair measured back to back (the medians of the "
    "times are shown beside it); CPU: the `fieldsync sync` process's and the server's.",
    "**PouchDB**: the same records as documents in a local PouchDB 9 (LevelDB, loaded "
    "untimed), replicated with `PouchDB.replicate(local, remote)` and its default settings "
    "to a fresh `pouchdb-server` (LevelDB, stdout logging off) on loopback; the time of the "
    "replication alone (bench/pouch.js). The speed-up is the median over the runs of "
    "PouchDB time / fieldsync push time, each pair measured back to back.",
    "**bytes on the wire**: the push again through a counting TCP relay (HTTP headers and "
    "bodies both ways, from the first request after enrollment to the last answer), median of "
    "3 runs, divided by the record count; compared with the size of the import JSON Lines "
    "file of the same records. The PouchDB figure is one replication through the same relay.",
    "**pull + export**: after each push of the smaller size, a fresh coordinator store enrolls, `fieldsync pull` "
    "(verifies every entry and merges) and `fieldsync export --format jsonl --out F`; "
    "records / (pull + export wall time).",
    "**concurrent devices**: enrolled stores each holding its own slice of the data set; "
    "fstool (tests/tools) cut each store's entries into valid signed push batches beforehand; "
    "Python threads, one per device, each from its own 127.1.x.y source address over one "
    "kept-alive HTTP connection, POST them to /v1/feeds/<feed>/entries one after another "
    "(closed loop), all released at once by a barrier. Aggregate = stored entries / wall time "
    "from the release to the last receipt; latency per POST measured by the client (the "
    "server's fieldsync_push_latency_ms histogram is quoted beside it). The server starts "
    "from a copy of a data folder where every device is enrolled and nothing is pushed; its "
    "peak RSS is VmHWM from /proc after the load.",
    "**daemon idle**: `fieldsyncd --home H` on an enrolled store whose records are all on the "
    "server, without systemd (no watchdog); RssAnon from /proc 3 s after start; wake-ups = "
    "voluntary + involuntary context switches of all its threads over the window, per minute. "
    "Then one `fieldsync add`, to show the daemon still reacts (inotify) and pushes it.",
]


def render_again(path):
    """Re-renders a results file from its own raw figures (after a change of wording)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    R = json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))
    R["push"] = {int(k): v for k, v in R["push"].items()}
    report(R, datetime.datetime.fromisoformat(R["started"]), R["elapsed_s"])


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--render":
        return render_again(sys.argv[2])
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.perf_counter()
    for p in (FLOOR, RUNS, FSTOOL, os.path.join(BIN, "fieldsync"),
              os.path.join(BIN, "fieldsync-server"), os.path.join(BIN, "fieldsyncd")):
        if not os.access(p, os.X_OK):
            sys.exit("bench: %s is missing; build the release preset first (bench/run does)" % p)
    nice = int(os.environ.get("BENCH_NICE", "0") or 0)
    if nice:
        os.nice(nice)  # inherited by every process the benchmark starts
    wait = float(os.environ.get("BENCH_WAIT_QUIET", "0") or 0)
    deadline = time.monotonic() + wait
    while True:
        a = cpu_snapshot()
        time.sleep(5)
        busy = others_share(a, cpu_snapshot())
        if busy < 0.15 or time.monotonic() >= deadline:
            break
        log("other processes use %.0f%% of the CPU; waiting for a quieter machine" % (100 * busy))
    log("other processes use %.0f%% of the CPU at the start" % (100 * busy))
    work = tempfile.mkdtemp(prefix="fs-bench-")
    R = {"mode": "quick" if QUICK else "full", "config": CFG, "nice": os.nice(0),
         "others_at_start": busy,
         "load_start": " ".join(open("/proc/loadavg").read().split()[:3]),
         "machine": machine(), "versions": versions()}
    R["pouch_note"] = pouch_available()
    if R["pouch_note"]:
        log("PouchDB skipped: " + R["pouch_note"])
    try:
        n_max = max(max(CFG["push_n"]), max(CFG["curve_n"]), CFG["import_n"],
                    CFG["devices"] * CFG["pushes"] * CFG["per_push"])
        data, rows = make_data(work, n_max)
        log("import: %d records, %d runs" % (CFG["import_n"], CFG["runs"]))
        R["others_cpu"] = others = {}
        R["fsync_ms"] = fs_ms = {"start": fsync_probe(work)}
        c = cpu_snapshot()
        R["import"], import_master = bench_import(work, data)
        others["import"], c = others_share(c, cpu_snapshot()), cpu_snapshot()
        fs_ms["import"] = fsync_probe(work)
        masters = {CFG["import_n"]: import_master}
        for n in sorted(set(CFG["push_n"]) | set(CFG["curve_n"]) | {1000}):
            if n not in masters:
                log("preparing a store of %d records" % n)
                masters[n] = master_store(work, n, data)
        log("add: %d rounds of %d" % (CFG["add_rounds"], CFG["adds"]))
        c = cpu_snapshot()
        R["add"] = bench_add(work, masters[1000])
        others["add"], c = others_share(c, cpu_snapshot()), cpu_snapshot()
        fs_ms["add"] = fsync_probe(work)
        R["push"] = bench_push(work, data, masters, R["pouch_note"])
        others["push"], c = others_share(c, cpu_snapshot()), cpu_snapshot()
        fs_ms["push"] = fsync_probe(work)
        log("bytes on the wire")
        R["wire"] = bench_wire(work, data, masters[CFG["push_n"][0]], CFG["push_n"][0],
                               R["pouch_note"])
        c = cpu_snapshot()
        R["curve"] = bench_curve(work, data, masters, R["push"])
        others["curve"], c = others_share(c, cpu_snapshot()), cpu_snapshot()
        fs_ms["curve"] = fsync_probe(work)
        R["devices"] = bench_devices(work, rows)
        others["devices"], c = others_share(c, cpu_snapshot()), cpu_snapshot()
        fs_ms["devices"] = fsync_probe(work)
        log("daemon idle: %d s window" % CFG["idle_s"])
        R["daemon"] = bench_daemon(work, masters[1000])
        others["daemon"] = others_share(c, cpu_snapshot())
        fs_ms["end"] = fsync_probe(work)
    finally:
        if KEEP:
            log("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    R["load_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    R["started"] = started.isoformat()
    R["elapsed_s"] = time.perf_counter() - t_start
    report(R, started, R["elapsed_s"])


if __name__ == "__main__":
    main()
