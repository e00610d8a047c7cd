"""test_cleanup — `scripts/launch host-cleanup` kills the processes of its run and of no other:
run "exp" must leave run "exp:v2" (whose launch id begins with "exp:") alone. Real processes.

  PYTHONPATH=scripts python3 -m unittest tests/launch/test_cleanup.py
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

LAUNCH = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "launch")


def sleeper(launch_id):
    env = dict(os.environ, TESSERA_LAUNCH_ID=launch_id)
    return subprocess.Popen(["sleep", "60"], env=env)


class HostCleanup(unittest.TestCase):
    def test_kills_exactly_its_run(self):
        with tempfile.TemporaryDirectory() as top:
            exp = os.path.join(top, "exp")
            procs = {
                "exp attempt 1": (sleeper(f"{exp}:1:100"), True),
                "exp attempt 2, another launcher": (sleeper(f"{exp}:2:200"), True),
                "exp:v2": (sleeper(f"{exp}:v2:1:300"), False),
                "exp2": (sleeper(f"{exp}2:1:100"), False),
                "exp/sub": (sleeper(f"{exp}/sub:1:100"), False),
            }
            try:
                r = subprocess.run([sys.executable, LAUNCH, "host-cleanup", "--id",
                                    f"{exp}:3:400"], capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                killed = set(json.loads(r.stdout)["killed"])
                time.sleep(0.1)
                for name, (p, want_killed) in procs.items():
                    with self.subTest(name):
                        self.assertEqual(p.pid in killed, want_killed)
                        self.assertEqual(p.poll() is not None, want_killed)
            finally:
                for p, _ in procs.values():
                    p.kill()
                    p.wait()

    def test_collects_statuses(self):
        with tempfile.TemporaryDirectory() as run:
            with open(os.path.join(run, "rank-1.status"), "w") as f:
                f.write("reason internal\nstep 12\nexit_code 70\n")
            with open(os.path.join(run, "rank-x.status"), "w") as f:
                f.write("reason finished\n")
            r = subprocess.run([sys.executable, LAUNCH, "host-cleanup", "--id",
                                f"{run}:1:1", "--run-dir", run, "--archive", "attempt-1"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            rep = json.loads(r.stdout)
            self.assertEqual(rep["statuses"], {"1": {"reason": "internal", "step": 12,
                                                     "exit_code": 70}})
            self.assertTrue(os.path.exists(os.path.join(run, "launch", "attempt-1",
                                                        "rank-1.status")))
            self.assertFalse(os.path.exists(os.path.join(run, "rank-1.status")))


if __name__ == "__main__":
    unittest.main()
