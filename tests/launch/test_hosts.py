"""test_hosts — host names, the hostfile, and which hosts a job gets.

  PYTHONPATH=scripts python3 -m unittest tests/launch/test_hosts.py
"""

import unittest

from tessera_launch.codes import InputError
from tessera_launch.hosts import (outside, parse_hostfile_text, rank_hosts, review,
                                  valid_host)


class HostNames(unittest.TestCase):
    def test_valid(self):
        rows = [
            ("a", True), ("nodeA", True), ("node-a", True), ("node_a", True), ("n1.lab", True),
            ("gpu-07.dc1.example.org", True), ("10.0.0.7", True), ("h1", True), ("7", True),
            ("-G", False), ("-oProxyCommand=x", False), ("--help", False), ("a-", False),
            ("-a", False), ("_a", False), ("a_", False), ("a..b", False), (".a", False),
            ("a.", False), ("", False), ("a/b", False), ("a b", False), ("a:1", False),
            ("fe80::1", False), ("a;b", False), ("$(x)", False), ("é", False),
            ("a" * 63, True), ("a" * 64, False), (".".join(["a" * 63] * 4), False),
            (".".join(["a" * 62] * 4), True),
        ]
        for name, ok in rows:
            with self.subTest(name=name):
                self.assertEqual(valid_host(name), ok)


class Hostfile(unittest.TestCase):
    def test_good(self):
        rows = [
            ("a\nb\n", [("a", 1), ("b", 1)]),
            ("# hosts\na slots=2\n\n  b   slots=1  # the second\n", [("a", 2), ("b", 1)]),
            ("a max_slots=4\n", [("a", 1)]),
            ("a slots=3 max_slots=4\n", [("a", 3)]),
            ("10.0.0.1 slots=2\n", [("10.0.0.1", 2)]),
            ("", []),
        ]
        for text, want in rows:
            with self.subTest(text=text):
                self.assertEqual(parse_hostfile_text(text, "hosts"), want)

    def test_bad(self):
        rows = [
            ("a\nb slots=x\n", 'hosts:2: "slots=x": expected slots=N with N >= 1'),
            ("a slots=0\n", 'hosts:1: "slots=0": expected slots=N'),
            ("a\n-G\n", 'hosts:2: "-G": expected a host name'),
            ("--probe slots=1\n", 'hosts:1: "--probe": expected a host name'),
            ("a/b\n", 'hosts:1: "a/b": expected a host name'),
            ("a\n# x\na slots=2\n", 'hosts:3: host "a" is listed twice'),
        ]
        for text, want in rows:
            with self.subTest(text=text):
                with self.assertRaises(InputError) as e:
                    parse_hostfile_text(text, "hosts")
                self.assertTrue(str(e.exception).startswith(want), str(e.exception))
                self.assertNotIn("\n", str(e.exception))


class Choice(unittest.TestCase):
    LISTED = [("a", 1), ("b", 2), ("c", 1), ("d", 1)]

    def test_review(self):
        # drained, dead before, probe results -> chosen, newly dead, back
        rows = [
            (set(), set(), dict(a=True, b=True, c=True, d=True),
             [("a", 1), ("b", 2), ("c", 1), ("d", 1)], [], []),
            (set(), set(), dict(a=True, b=False, c=True, d=True),
             [("a", 1), ("c", 1), ("d", 1)], ["b"], []),
            (set(), {"b"}, dict(a=True, b=False, c=True, d=True),
             [("a", 1), ("c", 1), ("d", 1)], [], []),  # still dead: no news
            (set(), {"b"}, dict(a=True, b=True, c=True, d=True),
             [("a", 1), ("b", 2), ("c", 1), ("d", 1)], [], ["b"]),
            ({"c"}, set(), dict(a=True, b=True, d=True),
             [("a", 1), ("b", 2), ("d", 1)], [], []),  # drained: not probed, left out
            (set(), set(), dict(a=False, b=False, c=False, d=False), [], ["a", "b", "c", "d"], []),
        ]
        for drained, dead, alive, chosen, gone, back in rows:
            with self.subTest(drained=drained, dead=dead, alive=alive):
                self.assertEqual(review(self.LISTED, drained, dead, alive), (chosen, gone, back))

    def test_outside(self):
        self.assertEqual(outside(self.LISTED, {"a", "b"}, set()), ["c", "d"])
        self.assertEqual(outside(self.LISTED, {"a", "b"}, {"d"}), ["c"])
        self.assertEqual(outside(self.LISTED, {"a", "b", "c", "d"}, set()), [])

    def test_rank_hosts(self):
        self.assertEqual(rank_hosts([("a", 1), ("b", 2), ("c", 1)]),
                         {0: "a", 1: "b", 2: "b", 3: "c"})
        self.assertEqual(rank_hosts([]), {})


if __name__ == "__main__":
    unittest.main()
