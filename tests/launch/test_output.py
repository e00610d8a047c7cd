"""test_output — what the launcher reads in a job's output lines.

  PYTHONPATH=scripts python3 -m unittest tests/launch/test_output.py
"""

import unittest

from tessera_launch.output import scan


class Scan(unittest.TestCase):
    def test_lines(self):
        rows = [
            ("tessera[0]: run directory: /runs/x", [("ready",)]),
            ("tessera[1]: run directory: /runs/x", []),
            ("tessera[0]: step   12/300 | loss 5.1", [("step", 12)]),
            ("tessera[0]: resumed from step 10 (held by rank 1)", [("resumed", 10)]),
            ("tessera[0]: no intact checkpoint in ckpt/a: starting fresh", [("fresh",)]),
            ("tessera[0]: checkpoint step 15: 3 files", [("ckpt", 15)]),
            ("tessera[1]: fault injection: rank 1 kills itself at step 12 (inside)",
             [("fault", 1)]),
            ("tessera[1]: exit 75 (peer_lost) at step 26", [("exit", 1, 75, "peer_lost", 26)]),
            ("tessera[0]: exit 2 (bad_input) at step -1", [("exit", 0, 2, "bad_input", -1)]),
            ("mpirun noticed that process rank 1 with PID 4242 on node x exited on signal 9 "
             "(Killed).", [("signal", 1, 9)]),
            ("  Process name: [[8367,1],3]", [("process", 3)]),
            ("  Exit code:    70", [("exit_code", 70)]),
            ("tessera[0]: Exit code: 70 is what it said", []),
            ("hello", []),
        ]
        for line, want in rows:
            with self.subTest(line=line):
                self.assertEqual(scan(line), want)


if __name__ == "__main__":
    unittest.main()
