#!/usr/bin/env python3
"""deploy/bench.py: mknet's three architectures side by side (issue 5).

Runs every workload on
  kernel          Linux TCP/UDP: the app in namespace k1, the peer in k2, a veth pair between;
  single-process  the app as NAME-sp (stack and TAP driver as threads in the app), inside a
                  namespace holding a persistent TAP; the peer on the Linux side of that TAP;
  multi-process   mknet-supervisor + mknet-stack + mknet-tapdrv (deploy/mknet up), the app as
                  NAME (libmknet) in the root namespace; the peer inside the TAP's namespace;
always with a Linux-kernel program (NAME-kernel) as the peer. Prints a markdown table (rows =
metrics, columns = architectures and the ratios multi/single and multi/kernel) and, with
--json, writes the figures as JSON.

Called by `deploy/mknet bench` (which builds first); root (namespaces, TAP devices). Standard
library only. Everything it makes (namespaces, veth, TAP, runtime dirs, processes) is removed
on exit, also on Ctrl-C, SIGTERM or failure; processes are stopped by their PID only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
ARCHS = ("kernel", "single-process", "multi-process")

# (metric, label, format, lower_is_better)
METRICS = [
    ("bulk_app_to_peer_gbps", "bulk TCP app->peer, Gbit/s", "{:.2f}"),
    ("bulk_peer_to_app_gbps", "bulk TCP peer->app, Gbit/s", "{:.2f}"),
    ("rtt_1b_us_p50", "1-byte TCP RTT p50, us", "{:.1f}"),
    ("rtt_1b_us_p99", "1-byte TCP RTT p99, us", "{:.1f}"),
    ("rtt_1b_us_p999", "1-byte TCP RTT p99.9, us", "{:.1f}"),
    ("rtt_1b_same_cpu", "1-byte RTT: app and peer seen on one CPU (fraction)", "{:.2f}"),
    ("tps_64b_c1", "64-byte req/resp, 1 conn, trans/s", "{:.0f}"),
    ("tps_64b_c16", "64-byte req/resp, 16 conns, trans/s", "{:.0f}"),
    ("tps_64b_c64", "64-byte req/resp, 64 conns, trans/s", "{:.0f}"),
    ("conn_per_s", "connections/s, client on the peer", "{:.0f}"),
    ("conn_per_s_reverse", "connections/s, client on the app", "{:.0f}"),
    ("udp_64_pps", "UDP 64 B app->peer, datagrams/s received", "{:.0f}"),
    ("udp_64_loss", "UDP 64 B loss (fraction)", "{:.4f}"),
    ("udp_1472_pps", "UDP 1472 B app->peer, datagrams/s received", "{:.0f}"),
    ("udp_1472_loss", "UDP 1472 B loss (fraction)", "{:.4f}"),
    ("cpu_s_per_gb_bulk_app_to_peer", "CPU s per GB, bulk app->peer", "{:.2f}"),
    ("cpu_s_per_gb_bulk_peer_to_app", "CPU s per GB, bulk peer->app", "{:.2f}"),
    ("cpu_s_per_mtx_rtt_1b", "CPU s per M transactions, 1-byte RTT", "{:.1f}"),
    ("cpu_s_per_mtx_tps_64b_c1", "CPU s per M transactions, 64 B c1", "{:.1f}"),
    ("cpu_s_per_mtx_tps_64b_c16", "CPU s per M transactions, 64 B c16", "{:.1f}"),
    ("cpu_s_per_mtx_tps_64b_c64", "CPU s per M transactions, 64 B c64", "{:.1f}"),
    ("cpu_s_per_mtx_conn", "CPU s per M connections, client on the peer", "{:.0f}"),
    ("cpu_s_per_mtx_conn_reverse", "CPU s per M connections, client on the app", "{:.0f}"),
    ("cpu_s_per_mtx_udp_64", "CPU s per M datagrams received, UDP 64 B", "{:.1f}"),
    ("cpu_s_per_mtx_udp_1472", "CPU s per M datagrams received, UDP 1472 B", "{:.1f}"),
]

# Facts about a run rather than results: no ratio columns.
NO_RATIO = {"rtt_1b_same_cpu"}

# Workload sizes. --quick must finish in under 2 minutes for all three
# architectures; the full run in about 10 (RTT: >= 100k round trips, p99.9
# needs them).
PARAMS = {
    "full": {"bulk_s": 8, "rtt_count": 100000, "rtt_warmup": 2000, "tps_s": 5, "conn_s": 5,
             "conn_threads": 4, "udp_s": 5},
    "quick": {"bulk_s": 2, "rtt_count": 10000, "rtt_warmup": 500, "tps_s": 1.5, "conn_s": 1.5,
              "conn_threads": 4, "udp_s": 1.5},
}

APPS = ("mknet-bulk", "mknet-rtt", "mknet-connrate", "mknet-udp")
# --workloads groups, in the order they run.
WORKLOADS = ("bulk", "rtt", "tps", "conn", "udp")


def median(values):
    """The median of a list of numbers (the mean of the middle two for an even count); None if empty."""
    v = sorted(values)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def kv(line):
    """'a=1 b=x' -> {'a': '1', 'b': 'x'}."""
    out = {}
    for word in (line or "").split():
        if "=" in word:
            k, v = word.split("=", 1)
            out[k] = v
    return out


def num(d, key):
    try:
        return float(d[key])
    except (KeyError, ValueError, TypeError):
        return None


def proc_stat_fields(pid):
    """The fields of /proc/PID/stat from field 3 (state) on; None if the process is gone.
    Field 2 (comm) may hold spaces and parentheses: the split is after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def proc_cpu(pid):
    """utime + stime of a live process (all its threads), in seconds; None if it is gone."""
    fields = proc_stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15


def proc_cpu_now(pid):
    """The CPU a process (its main thread) last ran on; None if it is gone."""
    fields = proc_stat_fields(pid)
    try:
        return None if fields is None else int(fields[36])  # field 39, processor
    except (IndexError, ValueError):
        return None


def same_cpu_while(proc, other, timeout, period=0.02):
    """Until proc ends (at most timeout s), samples every period s which CPU proc and other last
    ran on; returns the fraction of samples that found them on the same one (None: none taken).
    The kernel's own round trip is 15 us with its two ends on one CPU here and ~60 us on two."""
    same = total = 0
    deadline = time.monotonic() + timeout
    while not proc.wait(period) and time.monotonic() < deadline:
        a, b = proc_cpu_now(proc.pid), proc_cpu_now(other.pid)
        if a is not None and b is not None:
            total += 1
            same += a == b
    return same / total if total else None


class Proc:
    """One child process, stdout+stderr into a file, reaped with wait4 so its CPU time is
    known exactly (rusage covers all its threads), stopped only by its own PID."""

    live = {}  # pid -> Proc, for the cleanup

    def __init__(self, argv, out_path, env=None):
        self.argv = argv
        self.out_path = out_path
        self.status = None
        self.cpu = None
        # A workload's log is shared by its rounds (--runs), appended to:
        # output() reads only what this process wrote, from here on. (Reading
        # the whole file once let round 2 see round 1's listen= line and start
        # a client before its server listened.)
        self.offset = os.path.getsize(out_path) if os.path.exists(out_path) else 0
        with open(out_path, "ab") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env)
        self.pid = self.popen.pid
        Proc.live[self.pid] = self

    def _reap(self, flags):
        if self.status is not None:
            return True
        try:
            pid, status, ru = os.wait4(self.pid, flags)
        except ChildProcessError:
            pid, status, ru = self.pid, -1, None
        if pid == 0:
            return False
        self.status = status
        self.cpu = (ru.ru_utime + ru.ru_stime) if ru else None
        self.popen.returncode = os.waitstatus_to_exitcode(status) if status >= 0 else -1
        Proc.live.pop(self.pid, None)
        return True

    def wait(self, timeout):
        """True if the process ended within timeout seconds."""
        deadline = time.monotonic() + timeout
        while not self._reap(os.WNOHANG):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, grace=3.0):
        """SIGTERM, then SIGKILL after grace seconds; reaps."""
        if self.status is not None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not self.wait(grace):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(5)

    @property
    def exit_code(self):
        return self.popen.returncode

    def output(self):
        """What this process wrote (not earlier rounds' lines in the same log)."""
        try:
            with open(self.out_path, "rb") as f:
                f.seek(self.offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def result(self):
        """The key=value pairs of the last result line (one with '=' that is not listen=)."""
        for line in reversed(self.output().splitlines()):
            if "=" in line and not line.startswith("listen="):
                return kv(line)
        return {}

    def wait_for_output(self, text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self._reap(os.WNOHANG):
                return text in self.output()
            time.sleep(0.01)
        return False


def run(argv, check=True, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stdout.strip()[-500:]}")
    return r


def ns_exists(name):
    r = run(["ip", "netns", "list"], check=False)
    return any(line.split()[0] == name for line in r.stdout.splitlines() if line.strip())


class Arch:
    """An architecture: where the app and the peer run, and which extra processes count."""

    name = ""
    app_ip = peer_ip = ""

    def __init__(self, bench):
        self.bench = bench
        self.made_ns = []

    def missing(self):
        """Why this architecture cannot run (a string), or None."""
        return None

    def setup(self):
        pass

    def teardown(self):
        for ns in self.made_ns:
            if ns_exists(ns):
                run(["ip", "netns", "del", ns], check=False)
        self.made_ns = []

    def add_ns(self, ns):
        run(["ip", "netns", "add", ns])
        self.made_ns.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def app_cmd(self, app, args):
        raise NotImplementedError

    def app_env(self):
        return None

    def peer_cmd(self, app, args):
        raise NotImplementedError

    def extra_pids(self):
        """{name: pid} of long-lived processes to charge CPU to (stack, driver, ...)."""
        return {}


class KernelArch(Arch):
    name = "kernel"
    app_ip, peer_ip = "198.18.200.1", "198.18.200.2"

    def setup(self):
        t = self.bench.tag
        self.k1, self.k2 = t + "k1", t + "k2"
        self.add_ns(self.k1)
        self.add_ns(self.k2)
        run(["ip", "link", "add", t + "a", "netns", self.k1, "type", "veth", "peer", "name", t + "b",
             "netns", self.k2])
        run(["ip", "-n", self.k1, "addr", "add", self.app_ip + "/24", "dev", t + "a"])
        run(["ip", "-n", self.k2, "addr", "add", self.peer_ip + "/24", "dev", t + "b"])
        run(["ip", "-n", self.k1, "link", "set", t + "a", "up"])
        run(["ip", "-n", self.k2, "link", "set", t + "b", "up"])
        run(["ip", "netns", "exec", self.k1, "ping", "-c", "1", "-W", "2", self.peer_ip])

    def app_cmd(self, app, args):
        return ["ip", "netns", "exec", self.k1, self.bench.exe(app + "-kernel")] + args

    def peer_cmd(self, app, args):
        return ["ip", "netns", "exec", self.k2, self.bench.exe(app + "-kernel")] + args


def add_tap_namespace(arch, ns, tap, linux_ip, mtu=1500):
    """A namespace holding a persistent TAP with the Linux side's address, up (as `deploy/mknet up`
    makes it, without anything attached to the TAP)."""
    arch.add_ns(ns)
    run(["ip", "-n", ns, "tuntap", "add", "mode", "tap", "name", tap])
    run(["ip", "-n", ns, "link", "set", tap, "mtu", str(mtu), "up"])
    run(["ip", "-n", ns, "addr", "add", linux_ip, "dev", tap])


class SingleProcessArch(Arch):
    name = "single-process"
    app_ip, peer_ip = "198.18.202.2", "198.18.202.1"

    def missing(self):
        absent = [a + "-sp" for a in APPS if not os.access(self.bench.exe(a + "-sp"), os.X_OK)]
        if absent:
            return "single-process: " + ", ".join(absent) + " not built"
        return None

    def setup(self):
        t = self.bench.tag
        self.ns, self.tap = t + "s", t + "st"
        add_tap_namespace(self, self.ns, self.tap, self.peer_ip + "/24")

    def app_cmd(self, app, args):
        return ["ip", "netns", "exec", self.ns, self.bench.exe(app + "-sp")] + args

    def app_env(self):
        env = dict(os.environ)
        env["MKNET_INPROCESS"] = f"tap={self.tap},ip={self.app_ip}/24"
        return env

    def peer_cmd(self, app, args):
        return ["ip", "netns", "exec", self.ns, self.bench.exe(app + "-kernel")] + args


class MultiProcessArch(Arch):
    name = "multi-process"
    app_ip, peer_ip = "198.18.201.2", "198.18.201.1"

    def missing(self):
        absent = [a for a in APPS if not os.access(self.bench.exe(a), os.X_OK)]
        if absent:
            return "multi-process: " + ", ".join(absent) + " not built"
        return None

    def setup(self):
        t = self.bench.tag
        self.ns, self.tap = t + "m", t + "mt"
        self.rt = tempfile.mkdtemp(prefix="mknet-bench-rt.")
        os.chmod(self.rt, 0o755)
        self.up = True
        # --service-cpus: the supervisor, and so the stack and the driver it
        # starts (affinity is inherited), run on those CPUs only; the app and
        # its peer stay where the scheduler puts them.
        pin = ["taskset", "-c", self.bench.args.service_cpus] if self.bench.args.service_cpus else []
        r = run(pin + [self.bench.mknet, "up", "--no-build", "--no-check", "--no-demo", "--ns", self.ns, "--tap", self.tap,
                 "--runtime-dir", self.rt, "--linux-ip", self.peer_ip + "/24", "--ip", self.app_ip + "/24"],
                check=False, env=dict(os.environ, MKNET_BUILD_DIR=self.bench.build_root))
        with open(os.path.join(self.bench.logdir, "up.log"), "w") as f:
            f.write(r.stdout)
        if r.returncode != 0:
            raise RuntimeError("deploy/mknet up failed: " + r.stdout.strip()[-800:])
        run(["ip", "netns", "exec", self.ns, "ping", "-c", "1", "-W", "2", self.app_ip])

    def teardown(self):
        if getattr(self, "up", False):
            run([self.bench.mknet, "down", "--ns", self.ns, "--runtime-dir", self.rt], check=False,
                env=dict(os.environ, MKNET_BUILD_DIR=self.bench.build_root))
            self.up = False
        if ns_exists(getattr(self, "ns", "")):
            run(["ip", "netns", "del", self.ns], check=False)
        if getattr(self, "rt", None):
            shutil.rmtree(self.rt, ignore_errors=True)
            self.rt = None

    def app_cmd(self, app, args):
        return [self.bench.exe(app)] + args

    def app_env(self):
        return dict(os.environ, MKNET_RUNTIME_DIR=self.rt)

    def peer_cmd(self, app, args):
        return ["ip", "netns", "exec", self.ns, self.bench.exe(app + "-kernel")] + args

    def extra_pids(self):
        pids = {}
        for name in ("supervisor", "stack", "tapdrv"):
            try:
                with open(os.path.join(self.rt, name + ".pid")) as f:
                    pids[name] = int(f.read().strip())
            except (OSError, ValueError):
                pass
        return pids


class Bench:
    def __init__(self, args):
        self.args = args
        self.build_root = os.path.dirname(os.path.abspath(args.build_dir))
        self.examples = os.path.join(os.path.abspath(args.build_dir), "clients", "examples")
        self.mknet = args.mknet
        self.p = PARAMS["quick" if args.quick else "full"]
        self.tag = f"mkb{os.getpid()}"
        self.logdir = tempfile.mkdtemp(prefix="mknet-bench-logs.")
        self.workloads = set(args.workloads.split(",")) if args.workloads else set(WORKLOADS)
        # One dict of figures per round; self.results is the current round's,
        # and the report gives the median over the rounds (--runs).
        self.rounds = []
        self.results = {a: {} for a in ARCHS}
        self.cpu_detail = {a: {} for a in ARCHS}
        self.notes = []
        self.same_cpu = None  # set by pair(..., placement=True)
        self.current = None

    def exe(self, name):
        return os.path.join(self.examples, name)

    # ------------------------------------------------------------ one workload

    def pair(self, arch, label, server, client, timeout, server_exits=False, placement=False):
        """Starts server = (side, app, args), waits for its listen= line, runs client = (side, app,
        args) to its end; stops the server (or, with server_exits, waits for it to finish by
        itself). side is 'app' or 'peer'. Returns (client kv, server kv, cpu seconds of every
        process involved) or raises RuntimeError. With placement, self.same_cpu becomes the
        fraction of 20-ms samples that found client and server on one CPU (None: no sample)."""
        def start(side, app, args, what):
            cmd = arch.app_cmd(app, args) if side == "app" else arch.peer_cmd(app, args)
            env = arch.app_env() if side == "app" else None
            return Proc(cmd, os.path.join(self.logdir, f"{arch.name}.{label}.{what}.log"), env)

        extra = arch.extra_pids()
        before = {n: proc_cpu(p) for n, p in extra.items()}
        srv = start(*server, "server")
        cli = None
        try:
            if not srv.wait_for_output("listen=", 15):
                raise RuntimeError(f"server did not start: {' '.join(srv.argv)}\n{srv.output()[-600:]}")
            cli = start(*client, "client")
            self.same_cpu = None
            if placement:
                self.same_cpu = same_cpu_while(cli, srv, timeout)
            if not cli.wait(timeout):
                cli.stop()
                raise RuntimeError(f"client did not finish in {timeout} s: {' '.join(cli.argv)}")
            if cli.exit_code != 0:
                raise RuntimeError(f"client failed (exit {cli.exit_code}): {' '.join(cli.argv)}\n"
                                   f"{cli.output()[-600:]}\nserver: {srv.output()[-300:]}")
            if server_exits and not srv.wait(10):
                log(f"{arch.name} {label}: server did not finish by itself; stopping it")
            srv.stop()
        finally:
            srv.stop()
            if cli is not None:
                cli.stop()
        after = {n: proc_cpu(p) for n, p in extra.items()}
        cpu = {"server(" + server[0] + ")": srv.cpu, "client(" + client[0] + ")": cli.cpu}
        for n in extra:
            if before[n] is not None and after[n] is not None and after[n] >= before[n]:
                cpu[n] = after[n] - before[n]
            else:
                cpu[n] = None
                self.notes.append(f"{arch.name} {label}: {n} (pid {extra[n]}) changed or vanished during the run")
            if arch.extra_pids().get(n) != extra[n]:
                self.notes.append(f"{arch.name} {label}: {n} was restarted during the run")
        self.cpu_detail[arch.name][label] = {k: (round(v, 3) if v is not None else None) for k, v in cpu.items()}
        total = sum(v for v in cpu.values() if v is not None)
        return cli.result(), srv.result(), total

    def workload(self, arch, label, fn):
        log(f"{arch.name}: {label}")
        try:
            fn()
        except RuntimeError as e:
            msg = str(e).strip().splitlines()
            self.notes.append(f"{arch.name} {label}: " + (msg[0] if msg else "failed"))
            log(f"{arch.name} {label} FAILED: " + "\n  ".join(msg[:12]))
        time.sleep(0.3)

    def run_arch(self, arch):
        p, R = self.p, self.results[arch.name]
        peer, app = arch.peer_ip, arch.app_ip

        def per(cpu, amount, scale):
            return cpu / (amount / scale) if amount and amount > 0 else None

        def bulk_out():
            c, _, cpu = self.pair(arch, "bulk_app_to_peer",
                                  ("peer", "mknet-bulk", ["sink", "--port", "5001", "--once", "--no-hash"]),
                                  ("app", "mknet-bulk", ["send", "--connect", f"{peer}:5001", "--seconds",
                                                         str(p["bulk_s"]), "--no-hash"]),
                                  p["bulk_s"] + 60)
            R["bulk_app_to_peer_gbps"] = num(c, "gbps")
            R["cpu_s_per_gb_bulk_app_to_peer"] = per(cpu, num(c, "bytes"), 1e9)

        def bulk_in():
            c, _, cpu = self.pair(arch, "bulk_peer_to_app",
                                  ("peer", "mknet-bulk", ["serve", "--port", "5002", "--once", "--seconds",
                                                          str(p["bulk_s"]), "--no-hash"]),
                                  ("app", "mknet-bulk", ["recv", "--connect", f"{peer}:5002", "--no-hash"]),
                                  p["bulk_s"] + 60)
            R["bulk_peer_to_app_gbps"] = num(c, "gbps")
            R["cpu_s_per_gb_bulk_peer_to_app"] = per(cpu, num(c, "bytes"), 1e9)

        def rtt():
            c, _, cpu = self.pair(arch, "rtt_1b",
                                  ("peer", "mknet-rtt", ["server", "--port", "5003", "--once"]),
                                  ("app", "mknet-rtt", ["client", "--connect", f"{peer}:5003", "--size", "1",
                                                        "--count", str(p["rtt_count"]), "--warmup",
                                                        str(p["rtt_warmup"])]),
                                  180, placement=True)
            R["rtt_1b_us_p50"], R["rtt_1b_us_p99"], R["rtt_1b_us_p999"] = (
                num(c, "p50_us"), num(c, "p99_us"), num(c, "p999_us"))
            R["rtt_1b_same_cpu"] = self.same_cpu
            n = num(c, "count")
            R["cpu_s_per_mtx_rtt_1b"] = per(cpu, n + p["rtt_warmup"] if n else None, 1e6)

        def tps(conns, port):
            def f():
                c, _, cpu = self.pair(arch, f"tps_64b_c{conns}",
                                      ("peer", "mknet-rtt", ["server", "--port", str(port)]),
                                      ("app", "mknet-rtt", ["client", "--connect", f"{peer}:{port}", "--conns",
                                                            str(conns), "--size", "64", "--seconds",
                                                            str(p["tps_s"])]),
                                      p["tps_s"] + 60)
                R[f"tps_64b_c{conns}"] = num(c, "tps")
                R[f"cpu_s_per_mtx_tps_64b_c{conns}"] = per(cpu, num(c, "transactions"), 1e6)
            return f

        def conn(reverse):
            def f():
                port = "5008" if reverse else "5007"
                srv_side, cli_side, srv_ip = ("peer", "app", peer) if reverse else ("app", "peer", app)
                key = "conn_per_s_reverse" if reverse else "conn_per_s"
                c, _, cpu = self.pair(arch, key,
                                      (srv_side, "mknet-connrate", ["server", "--port", port]),
                                      (cli_side, "mknet-connrate", ["client", "--connect", f"{srv_ip}:{port}",
                                                                    "--seconds", str(p["conn_s"]), "--conns",
                                                                    str(p["conn_threads"])]),
                                      p["conn_s"] + 60)
                R[key] = num(c, "conn_per_s")
                R["cpu_s_per_mtx_conn" + ("_reverse" if reverse else "")] = per(cpu, num(c, "connections"), 1e6)
                if num(c, "failed"):
                    t, okb = num(c, "first_failure_s"), num(c, "ok_before_failure")
                    self.notes.append(
                        f"{arch.name} {key}: {c['failed']} of {int(num(c, 'connections') + num(c, 'failed'))} "
                        f"connections failed (connect/recv timed out after 2 s); the first failed attempt ended "
                        f"{t:.2f} s in, after {okb:.0f} connections" if t is not None and okb is not None else "")
            return f

        def udp(size, port):
            def f():
                c, s, cpu = self.pair(arch, f"udp_{size}",
                                      ("peer", "mknet-udp", ["recv", "--port", str(port), "--idle-timeout", "2"]),
                                      ("app", "mknet-udp", ["send", "--connect", f"{peer}:{port}", "--size",
                                                            str(size), "--seconds", str(p["udp_s"])]),
                                      p["udp_s"] + 60, server_exits=True)
                sent, received = num(c, "sent"), num(s, "received")
                R[f"udp_{size}_pps"] = num(s, "pps")
                R[f"udp_{size}_loss"] = (1 - received / sent) if sent and received is not None else None
                R[f"cpu_s_per_mtx_udp_{size}"] = per(cpu, received, 1e6)
                if num(s, "bad"):
                    self.notes.append(f"{arch.name} udp_{size}: {s['bad']} datagrams failed verification")
            return f

        table = {"bulk": [("bulk app->peer", bulk_out), ("bulk peer->app", bulk_in)],
                 "rtt": [("1-byte RTT", rtt)],
                 "tps": [("64-byte transactions, 1 conn", tps(1, 5004)),
                         ("64-byte transactions, 16 conns", tps(16, 5005)),
                         ("64-byte transactions, 64 conns", tps(64, 5006))],
                 "conn": [("connection rate, client on the peer", conn(False)),
                          ("connection rate, client on the app", conn(True))],
                 "udp": [("UDP 64 B", udp(64, 5009)), ("UDP 1472 B", udp(1472, 5010))]}
        for group in WORKLOADS:
            if group in self.workloads:
                for label, fn in table[group]:
                    self.workload(arch, label, fn)

    # ------------------------------------------------------------ the whole run

    def run(self):
        """--runs N rounds, each running every selected architecture once (interleaved, so that
        a change in the machine's state between rounds, e.g. where the host puts the two vCPUs,
        hits every architecture alike); self.results becomes the median of each figure."""
        archs = [KernelArch(self), SingleProcessArch(self), MultiProcessArch(self)]
        only = set(self.args.only.split(",")) if self.args.only else set(ARCHS)
        skip = set()
        for arch in archs:
            why = arch.missing() if arch.name in only else None
            if why:
                self.notes.append(why + "; its column is empty")
                log(why + "; skipping it")
                skip.add(arch.name)
        for r in range(self.args.runs):
            if self.args.runs > 1:
                log(f"round {r + 1} of {self.args.runs}")
            self.results = {a: {} for a in ARCHS}
            self.rounds.append(self.results)
            self.run_round([a for a in archs if a.name in only and a.name not in skip])
        self.results = {a: {key: median([rd[a][key] for rd in self.rounds if rd[a].get(key) is not None])
                            for key, _, _ in METRICS} for a in ARCHS}

    def run_round(self, archs):
        for arch in archs:
            start = time.monotonic()
            log(f"{arch.name}: setting up")
            self.current = arch
            try:
                arch.setup()
                self.run_arch(arch)
            except RuntimeError as e:
                self.notes.append(f"{arch.name}: " + str(e).strip().splitlines()[0])
                log(f"{arch.name} FAILED: {e}")
            finally:
                arch.teardown()
                self.current = None
            log(f"{arch.name}: done in {time.monotonic() - start:.0f} s")

    def cleanup(self):
        for proc in list(Proc.live.values()):
            proc.stop(grace=1)
        if self.current is not None:
            self.current.teardown()
            self.current = None
        if not self.args.keep_logs:
            shutil.rmtree(self.logdir, ignore_errors=True)

    # ------------------------------------------------------------ output

    @staticmethod
    def fmt(v, f):
        return "-" if v is None else f.format(v)

    def table(self):
        head = "| metric | kernel | single-process | multi-process | multi/single | multi/kernel |"
        rows = [head, "|---|---:|---:|---:|---:|---:|"]
        for key, label, f in METRICS:
            k, s, m = (self.results[a].get(key) for a in ARCHS)
            if k is None and s is None and m is None and len(self.workloads) < len(WORKLOADS):
                continue  # a workload --workloads left out

            def ratio(a, b):
                return "-" if a is None or b is None or b == 0 or key in NO_RATIO else f"{a / b:.2f}"
            rows.append(f"| {label} | {self.fmt(k, f)} | {self.fmt(s, f)} | {self.fmt(m, f)} | "
                        f"{ratio(m, s)} | {ratio(m, k)} |")
        return "\n".join(rows)

    def machine(self):
        model = ""
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        model = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        mem_gb = None
        try:
            with open("/proc/meminfo") as f:
                mem_gb = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
        except (OSError, ValueError, IndexError):
            pass
        commit = run(["git", "-C", os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rev-parse",
                      "--short", "HEAD"], check=False).stdout.strip()
        return {"cpus": os.cpu_count(), "cpu_model": model, "mem_gb": mem_gb, "kernel": platform.release(),
                "commit": commit or None}

    def report(self, date, elapsed):
        m = self.machine()
        title = (f"mknet bench{' --quick' if self.args.quick else ''}: {date}, {m['cpus']} CPUs ({m['cpu_model']}), "
                 f"Linux {m['kernel']}, commit {m['commit']}, {elapsed:.0f} s"
                 + (f", median of {self.args.runs} rounds" if self.args.runs > 1 else "")
                 + (f", multi-process services on CPUs {self.args.service_cpus}" if self.args.service_cpus else ""))
        print()
        print(title)
        print()
        print(self.table())
        print()
        print("Rates: higher is better; latency, loss and CPU: lower is better. CPU = user + sys seconds of "
              "every process involved (app, peer, and for multi-process the stack, driver and supervisor).")
        for n in self.notes:
            print(f"- note: {n}")
        if self.args.json:
            doc = {"machine": m, "date": date, "command": self.args.command, "quick": self.args.quick,
                   "params": self.p, "seconds": round(elapsed, 1), "runs": self.args.runs,
                   "service_cpus": self.args.service_cpus,
                   "workloads": sorted(self.workloads)}
            for a in ARCHS:
                doc[a] = {key: (round(self.results[a][key], 6) if self.results[a].get(key) is not None else None)
                          for key, _, _ in METRICS}
            if self.args.runs > 1:
                # Every round's own figures; the architecture sections hold their medians.
                doc["rounds"] = [{a: {k: (round(v, 6) if v is not None else None) for k, v in rd[a].items()}
                                  for a in ARCHS} for rd in self.rounds]
            doc["cpu_detail"] = self.cpu_detail  # the last round's
            doc["notes"] = self.notes
            with open(self.args.json, "w") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")
            log(f"wrote {self.args.json}")


def parse_cpu_list(text):
    """'0', '0-1', '0,2-3' -> a set of CPU numbers; an empty set if malformed."""
    cpus = set()
    for part in text.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            return set()
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            return set()
        cpus.update(range(lo, hi + 1))
    return cpus


def main():
    ap = argparse.ArgumentParser(prog="deploy/mknet bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (all three architectures in < 2 minutes)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--only", metavar="ARCHS", help="comma-separated subset of: " + ",".join(ARCHS))
    ap.add_argument("--workloads", metavar="LIST", help="comma-separated subset of: " + ",".join(WORKLOADS))
    ap.add_argument("--runs", type=int, default=1, metavar="N",
                    help="N rounds over the architectures (interleaved); every figure is the median")
    ap.add_argument("--keep-logs", action="store_true", help="keep every program's output (path printed)")
    ap.add_argument("--service-cpus", metavar="LIST",
                    help="multi-process: run the supervisor, stack and driver on these CPUs (taskset -c LIST)")
    ap.add_argument("--build-dir", required=True, help="the release build tree ($MKNET_BUILD_DIR/release)")
    ap.add_argument("--mknet", required=True, help="path of deploy/mknet (for up/down)")
    ap.add_argument("--command", default="deploy/mknet bench", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only and not set(args.only.split(",")) <= set(ARCHS):
        ap.error("--only takes " + ",".join(ARCHS))
    if args.workloads and not set(args.workloads.split(",")) <= set(WORKLOADS):
        ap.error("--workloads takes " + ",".join(WORKLOADS))
    if args.runs < 1 or args.runs > 20:
        ap.error("--runs takes 1..20")
    if args.service_cpus is not None:
        cpus = parse_cpu_list(args.service_cpus)
        if not cpus:
            ap.error(f"--service-cpus takes a CPU list such as 0 or 0-1 or 0,2 (got '{args.service_cpus}')")
        if not cpus <= os.sched_getaffinity(0):
            ap.error(f"--service-cpus {args.service_cpus}: this process may run only on CPUs "
                     + ",".join(str(c) for c in sorted(os.sched_getaffinity(0))))
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces, TAP devices)")

    bench = Bench(args)

    def on_signal(sig, _frame):
        # Once: a second Ctrl-C must not cut the clean-up short.
        for other in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(other, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {sig}")
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and an
    # explicit kill -INT must still clean up.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    start = time.monotonic()
    try:
        bench.run()
        bench.report(date, time.monotonic() - start)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        bench.cleanup()
        sys.exit(130)
    finally:
        bench.cleanup()
    if args.keep_logs:
        log(f"logs in {bench.logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
