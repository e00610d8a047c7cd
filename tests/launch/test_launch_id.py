"""test_launch_id — TESSERA_LAUNCH_ID parsing and the exact match the cleanup kills by.

  PYTHONPATH=scripts python3 -m unittest tests/launch/test_launch_id.py
"""

import unittest

from tessera_launch import launch_id


class LaunchId(unittest.TestCase):
    def test_parse(self):
        rows = [
            ("/runs/exp:1:4242", ("/runs/exp", 1, 4242)),
            ("/runs/exp:v2:3:17", ("/runs/exp:v2", 3, 17)),  # ':' in the run directory
            ("/r/a:b:c:12:99", ("/r/a:b:c", 12, 99)),
            ("/runs/exp", None), ("/runs/exp:1", None), (":1:2", None), ("/runs/exp:x:2", None),
            ("/runs/exp:1:", None), ("/runs/exp:-1:2", None), ("", None),
        ]
        for value, want in rows:
            with self.subTest(value=value):
                self.assertEqual(launch_id.parse(value), want)

    def test_make_parse_round_trip(self):
        for run_dir in ("/runs/exp", "/runs/exp:v2", "/a b/c"):
            self.assertEqual(launch_id.parse(launch_id.make(run_dir, 7, 123)),
                             (run_dir, 7, 123))

    def test_same_run(self):
        # the cleanup of run R kills a process whose launch id is V only when same_run(V, R)
        rows = [
            ("/runs/exp:1:100", "/runs/exp", True),
            ("/runs/exp:9:555", "/runs/exp", True),  # another attempt, another launcher
            ("/runs/exp:v2:1:100", "/runs/exp", False),  # a run whose name extends this one's
            ("/runs/exp2:1:100", "/runs/exp", False),
            ("/runs/exp/sub:1:100", "/runs/exp", False),
            ("/runs/ex:1:100", "/runs/exp", False),
            ("/runs/exp:v2:1:100", "/runs/exp:v2", True),
            ("/runs/exp:1:100", "/runs/exp:v2", False),
            ("/runs/exp:", "/runs/exp", False),
            ("garbage", "/runs/exp", False),
        ]
        for value, run_dir, want in rows:
            with self.subTest(value=value, run_dir=run_dir):
                self.assertEqual(launch_id.same_run(value, run_dir), want)

    def test_from_environ(self):
        rows = [
            (b"PATH=/bin\0TESSERA_LAUNCH_ID=/r/x:1:2\0HOME=/\0", "/r/x:1:2"),
            (b"TESSERA_LAUNCH_ID=/r/x:1:2", "/r/x:1:2"),
            (b"PATH=/bin\0TESSERA_LAUNCH_IDX=/r/x:1:2\0", None),
            (b"PATH=/bin\0A=TESSERA_LAUNCH_ID=/r/x:1:2\0", None),
            (b"", None),
        ]
        for data, want in rows:
            with self.subTest(data=data):
                self.assertEqual(launch_id.from_environ(data), want)


if __name__ == "__main__":
    unittest.main()
