"""test_lab — the lab's pure parts: the fault schedule, the chaos report's parsing and pairing,
host naming, the shaping parameters, the CPU limits' parsing and quotas. No root, no namespaces,
no cgroups.

  PYTHONPATH=scripts python3 -m unittest tests/lab/test_lab.py
"""

import unittest
from unittest import mock

from tessera_lab import cpu
from tessera_lab.chaos import parse_schedule
from tessera_lab.check import within_cap
from tessera_lab.common import LabError
from tessera_lab.faults import next_host_name
from tessera_lab.links import tbf_params
from tessera_lab.report import attribute, last_val_loss, longest_wait, per_kind, redone
from tessera_lab.svg import recovery_chart


class Schedule(unittest.TestCase):
    def test_good(self):
        text = "# seconds, action, host\n29 add\n3 kill h2   # a node lost\n\n7.5 rate h1 10\n"
        self.assertEqual(parse_schedule(text, "s"), [(3.0, "kill", "h2", None, 3),
                                                     (7.5, "rate", "h1", "10", 5),
                                                     (29.0, "add", None, None, 2)])

    def test_bad(self):
        rows = [
            ("x kill h1\n", 's:1: "x": expected seconds after the start'),
            ("3 explode h1\n", "s:1: expected SECONDS ACTION [HOST] [ARG] with ACTION one of"),
            ("3 kill\n", "s:1: expected SECONDS ACTION"),
            ("3 rate h1\n", "s:1: expected SECONDS ACTION"),
            ("3 add h5\n", "s:1: expected SECONDS ACTION"),
            ("1 kill h1\n4\n", "s:2: expected SECONDS ACTION"),
            ("3 slow h1\n", "s:1: expected SECONDS ACTION"),
            ("3 cpu h1\n", "s:1: expected SECONDS ACTION"),
            ("3 slow h1 0.5 2\n", "s:1: expected SECONDS ACTION"),
            ("3 slow h1 0\n", 's:1: slow: FACTOR "0": expected a number above 0'),
            ("3 slow h1 fast\n", 's:1: slow: FACTOR "fast": expected a number above 0'),
            ("3 cpu h1 -1\n", 's:1: cpu: CORES "-1": expected 0 (unlimited) or 0.05'),
            ("3 rate h1 ten\n", 's:1: rate: MBIT "ten": expected Mbit/s'),
        ]
        for text, want in rows:
            with self.subTest(text=text):
                with self.assertRaises(LabError) as e:
                    parse_schedule(text, "s")
                self.assertTrue(str(e.exception).startswith(want), str(e.exception))


    def test_cpu_faults(self):
        text = "5 slow h2 0.5\n9 cpu h3 0.25\n12 slow h2 1\n15 cpu h3 0\n"
        self.assertEqual(parse_schedule(text, "s"), [(5.0, "slow", "h2", "0.5", 1),
                                                     (9.0, "cpu", "h3", "0.25", 2),
                                                     (12.0, "slow", "h2", "1", 3),
                                                     (15.0, "cpu", "h3", "0", 4)])


@mock.patch("os.cpu_count", lambda: 2)
class Cpu(unittest.TestCase):
    def test_cpu_list(self):
        self.assertEqual(cpu.parse_cpu_list("0.4,0.4,0.2,0.1", 4), [0.4, 0.4, 0.2, 0.1])
        self.assertEqual(cpu.parse_cpu_list("0.5", 3), [0.5, 0.5, 0.5])
        self.assertEqual(cpu.parse_cpu_list("1, 0", 2), [1.0, 0.0])
        self.assertEqual(cpu.parse_cpu_list("2", 1), [2.0])
        rows = [("0.4,0.4", 3, '--cpu "0.4,0.4": expected one value for all hosts or 3 values'),
                ("0.4,x", 2, '--cpu "x": expected a number of cores'),
                ("", 2, '--cpu "": expected a number of cores'),
                ("3", 2, '--cpu "3": expected 0 (unlimited) or 0.05 to 2 cores'),
                ("-0.5", 2, '--cpu "-0.5": expected 0 (unlimited)'),
                ("0.005", 2, '--cpu "0.005": expected 0 (unlimited)'),
                ("nan", 2, '--cpu "nan": expected 0 (unlimited)')]
        for text, n, want in rows:
            with self.subTest(text=text):
                with self.assertRaises(LabError) as e:
                    cpu.parse_cpu_list(text, n)
                self.assertTrue(str(e.exception).startswith(want), str(e.exception))

    def test_quota(self):
        self.assertEqual(cpu.PERIOD_US, 20000)
        for cores, want in ((0, -1), (0.4, 8000), (0.1, 2000), (1, 20000), (1.5, 30000),
                            (0.333, 6660), (0.05, 1000), (0.004, 1000)):
            with self.subTest(cores=cores):
                self.assertEqual(cpu.quota_us(cores), want)

    def test_slowed(self):
        self.assertAlmostEqual(cpu.slowed(0.4, 0.5), 0.2)
        self.assertEqual(cpu.slowed(0.4, 1), 0.4)  # restores the base
        self.assertAlmostEqual(cpu.slowed(0.2, 2), 0.4)
        self.assertEqual(cpu.slowed(0.1, 0.01), 0.05)  # the kernel's floor
        self.assertEqual(cpu.slowed(0, 0.25), 0.5)  # unlimited: the machine's 2 cores
        self.assertEqual(cpu.slowed(0, 1), 0)
        self.assertEqual(cpu.slowed(0, 3), 0)

    def test_factor(self):
        self.assertEqual(cpu.parse_factor("0.5"), 0.5)
        self.assertEqual(cpu.parse_factor("100"), 100)
        for bad in ("0", "-1", "101", "inf", "nan", "x", None):
            with self.subTest(bad=bad):
                with self.assertRaises(LabError) as e:
                    cpu.parse_factor(bad)
                self.assertIn("expected a number above 0 and at most 100", str(e.exception))

    def test_ratios(self):
        self.assertEqual(cpu.ratios({"h1": 40.0, "h2": 20.0, "h3": None, "h4": 10.0}),
                         {"h1": 1.0, "h2": 0.5, "h3": None, "h4": 0.25})
        self.assertEqual(cpu.ratios({"h1": None}), {"h1": None})

    def test_show(self):
        self.assertEqual(cpu.show(0), "unlimited")
        self.assertEqual(cpu.show(1), "1 core")
        self.assertEqual(cpu.show(0.25), "0.25 cores")


class Report(unittest.TestCase):
    def test_redone(self):
        m = lambda step, el: f'{{"step": {step}, "loss": 1.0, "elapsed_s": {el}}}'
        rows = [
            ([m(1, 0.1), m(2, 0.2), m(3, 0.3)], []),
            ([m(1, 0.1), m(12, 1.2), m(11, 0.1), m(12, 0.2)], [2]),  # resumed from 10
            ([m(5, 0.5), m(6, 0.1), m(9, 0.4), m(8, 0.2)], [0, 2]),
            (["not json", m(1, 0.1)], []),
        ]
        for lines, want in rows:
            with self.subTest(lines=lines):
                self.assertEqual(redone(lines), want)

    def test_last_val_loss(self):
        self.assertEqual(last_val_loss(['{"step": 1}', '{"val_loss": 3.5}', '{"step": 2}',
                                        '{"val_loss": 2.25e0}']), 2.25)
        self.assertIsNone(last_val_loss(['{"step": 1}']))

    FAULTS = [{"t": 10, "action": "kill", "host": "h2"},
              {"t": 20, "action": "revive", "host": "h2"},
              {"t": 30, "action": "partition", "host": "h3"},
              {"t": 31, "action": "heal", "host": "h3"}]
    EVENTS = [{"t": 11, "event": "detected", "attempt": 1},
              {"t": 11.5, "event": "end", "attempt": 1, "job_ended": 11.4},
              {"t": 12, "event": "start", "attempt": 2},
              {"t": 14, "event": "first_step", "attempt": 2},
              {"t": 25, "event": "stop_requested", "kind": "join"},
              {"t": 26, "event": "start", "attempt": 3},
              {"t": 27.5, "event": "first_step", "attempt": 3}]

    def test_attribute(self):
        self.assertEqual(attribute(self.FAULTS, self.EVENTS), [
            ("kill", "h2", "1.00", "1.00", "2.00", "4.00"),
            ("revive", "h2", "5.00", "1.00", "1.50", "7.50"),
            ("partition", "h3", "-", "-", "-", "-"),  # healed before anyone noticed
            ("heal", "h3", "-", "-", "-", "-")])
        self.assertEqual(attribute([], self.EVENTS), [])

    def test_longest_wait(self):
        self.assertEqual(longest_wait(self.EVENTS), {1: 11.4 - 11})
        self.assertEqual(longest_wait([{"t": 5, "event": "end", "attempt": 1}]), {})

    def test_per_kind(self):
        rows = [("kill", "h1", "1.00", "2.00", "3.00", "6.00"),
                ("kill", "h2", "3.00", "2.00", "1.00", "6.00"),
                ("kill", "h3", "-", "-", "-", "-"),
                ("add", "", "0.50", "1.00", "2.00", "3.50")]
        got = per_kind(rows)
        self.assertEqual([(k, n, a) for k, n, a, _, _ in got], [("kill", 3, 2), ("add", 1, 1)])
        self.assertEqual(got[0][3][0], "2.00 (1.00-3.00)")
        self.assertEqual(got[0][4], [2.0, 2.0, 2.0])

    def test_chart(self):
        svg = recovery_chart([("kill", [1.0, 0.5, 2.0]), ("add", [0.2, 0.1, 1.0])])
        self.assertTrue(svg.startswith("<svg ") and svg.endswith("</svg>\n"))
        self.assertIn(">kill</text>", svg)
        self.assertEqual(svg.count("<rect "), 1 + 6 + 3)  # background, bars, legend


class Small(unittest.TestCase):
    def test_next_host_name(self):
        self.assertEqual(next_host_name(["h1", "h2", "h3"]), "h4")
        self.assertEqual(next_host_name(["h1", "h7", "h2"]), "h8")

    def test_tbf_params(self):
        self.assertEqual(tbf_params(100), (50000, 1250000))
        self.assertEqual(tbf_params(1), (16 * 1024, 64 * 1024))  # the floors

    def test_within_cap(self):
        for got, ok in ((10.0, True), (8.5, True), (8.4, False), (10.5, True), (10.6, False)):
            with self.subTest(got=got):
                self.assertEqual(within_cap(got, 10), ok)


if __name__ == "__main__":
    unittest.main()
