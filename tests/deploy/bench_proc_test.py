#!/usr/bin/env python3
"""Unit tests of deploy/bench.py: its Proc, its CPU-list parser, and its placement sampling. Proc: a workload's log is shared by the rounds of
`bench --runs N` and appended to, so what a Proc reads must be only what its own
process wrote. (It once read the whole file: round 2's wait_for_output("listen=")
matched round 1's line, the client started before the mknet server listened, and
every connection was refused.) Run by ctest as deploy_bench_proc."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy"))
import bench  # noqa: E402


class ProcOutputTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="mknet-bench-proc-test.")
        self.log = os.path.join(self.dir.name, "multi-process.conn.server.log")

    def tearDown(self):
        for p in list(bench.Proc.live.values()):
            p.stop(grace=1)
        self.dir.cleanup()

    def test_round_two_does_not_see_round_one(self):
        first = bench.Proc(["sh", "-c", "echo listen=0.0.0.0:5007; echo mode=a conn_per_s=111"], self.log)
        self.assertTrue(first.wait(5))
        self.assertEqual(first.result(), {"mode": "a", "conn_per_s": "111"})

        # Round 2's server prints listen= only after a pause: until then its
        # Proc must not find the text round 1 left in the log.
        second = bench.Proc(["sh", "-c", "sleep 0.5; echo listen=0.0.0.0:5007; echo mode=b conn_per_s=222"],
                            self.log)
        self.assertEqual(second.output(), "")
        self.assertFalse(second.wait_for_output("listen=", 0.2))
        self.assertTrue(second.wait_for_output("listen=", 5))
        self.assertTrue(second.wait(5))
        self.assertEqual(second.output(), "listen=0.0.0.0:5007\nmode=b conn_per_s=222\n")
        self.assertEqual(second.result(), {"mode": "b", "conn_per_s": "222"})
        # The log keeps both rounds for --keep-logs.
        with open(self.log) as f:
            self.assertEqual(f.read().count("listen="), 2)

    def test_output_of_a_process_that_never_listens(self):
        with open(self.log, "w") as f:
            f.write("listen=0.0.0.0:1\n")
        p = bench.Proc(["sh", "-c", "echo 'mknet-connrate: listen on port 5007: Address in use' >&2; exit 1"],
                       self.log)
        self.assertFalse(p.wait_for_output("listen=", 5))
        self.assertEqual(p.exit_code, 1)
        self.assertIn("Address in use", p.output())


class CpuListTest(unittest.TestCase):
    def test_lists_and_ranges(self):
        self.assertEqual(bench.parse_cpu_list("0"), {0})
        self.assertEqual(bench.parse_cpu_list("0-1"), {0, 1})
        self.assertEqual(bench.parse_cpu_list("0,2-4, 7"), {0, 2, 3, 4, 7})

    def test_malformed_is_empty(self):
        for bad in ("", "a", "1-", "-1", "3-1", "0,,1", "0;1", "1.5"):
            self.assertEqual(bench.parse_cpu_list(bad), set(), bad)


class PlacementTest(unittest.TestCase):
    """proc_cpu_now reads the CPU a process last ran on; same_cpu_while samples two of them."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="mknet-bench-placement-test.")

    def tearDown(self):
        for p in list(bench.Proc.live.values()):
            p.stop(grace=1)
        self.dir.cleanup()

    def pinned(self, cpu, seconds, name):
        return bench.Proc(["taskset", "-c", str(cpu), "sh", "-c", f"sleep {seconds}"],
                          os.path.join(self.dir.name, name))

    def test_cpu_of_a_pinned_process(self):
        p = self.pinned(0, 5, "a.log")
        deadline = bench.time.monotonic() + 5
        while bench.proc_cpu_now(p.pid) != 0 and bench.time.monotonic() < deadline:
            bench.time.sleep(0.01)  # until taskset has exec'd sh on CPU 0
        self.assertEqual(bench.proc_cpu_now(p.pid), 0)
        p.stop()
        self.assertIsNone(bench.proc_cpu_now(p.pid))
        self.assertIn(bench.proc_cpu_now(os.getpid()), range(os.cpu_count()))

    @unittest.skipIf(os.cpu_count() < 2, "needs two CPUs")
    def test_same_cpu_fraction(self):
        a, b, c = self.pinned(0, 0.6, "a.log"), self.pinned(0, 5, "b.log"), self.pinned(1, 5, "c.log")
        bench.time.sleep(0.1)  # all three have exec'd on their CPUs
        self.assertEqual(bench.same_cpu_while(a, b, 5), 1.0)
        d = self.pinned(0, 0.6, "d.log")
        bench.time.sleep(0.1)
        self.assertEqual(bench.same_cpu_while(d, c, 5), 0.0)
        # A process that has ended: no sample at all.
        self.assertIsNone(bench.same_cpu_while(a, b, 5))


if __name__ == "__main__":
    unittest.main(verbosity=2)
