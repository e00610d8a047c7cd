"""test_policy — decide() and too_few_hosts(): what the launcher does after a job, row by row
of docs/fault-tolerance.md ("What survives what", "How the launcher decides" steps 5-7, the
launcher's exit codes).

  PYTHONPATH=scripts python3 -m unittest tests/launch/test_policy.py
"""

import signal
import unittest

from tessera_launch.classify import JobEnd, classify
from tessera_launch.policy import Situation, backoff_wait, decide, too_few_hosts

TWO = {0: "a", 1: "b"}
LOST = {0: {"reason": "peer_lost", "peer": 1, "exit_code": 75}}
STOPPED = {0: {"reason": "stopped"}, 1: {"reason": "stopped"}}

# "What survives what": event, how the job ended, the launcher's situation, action, exit code
SURVIVES = [
    ("a rank is killed", JobEnd(rc=137, world=2, signals=((1, signal.SIGKILL),)),
     dict(newest_ckpt=10), "restart", None),
    ("a node is lost or partitioned", JobEnd(rc=75, world=2, statuses=LOST),
     dict(newest_ckpt=10), "restart", None),
    ("a node is lost: mpirun 205", JobEnd(rc=205, world=2), dict(newest_ckpt=10), "restart",
     None),
    ("a rank hangs: mpirun killed after the deadline",
     JobEnd(rc=-9, world=2, statuses=LOST, killed_by_us=True, kill_why="deadline"),
     dict(newest_ckpt=10), "restart", None),
    ("a rank dies while a checkpoint is written",
     JobEnd(rc=137, world=2, signals=((0, signal.SIGKILL),)), dict(newest_ckpt=5), "restart",
     None),
    ("SIGTERM/Ctrl-C to the launcher: planned stop",
     JobEnd(rc=0, world=2, statuses=STOPPED, stop_sent=True, interrupts=1),
     dict(stop_kind="user", interrupted=True), "exit", 0),
    ("launch stop", JobEnd(rc=0, world=2, statuses=STOPPED, stop_sent=True),
     dict(stop_kind="user"), "exit", 0),
    ("a stop while the job is still starting",
     JobEnd(rc=-9, world=2, killed_by_us=True, kill_why="stop before the job is up",
            interrupts=1), dict(stop_kind="user", interrupted=True, stopped_before_up=True),
     "exit", 0),
    ("the job fails during a user stop",
     JobEnd(rc=137, world=2, signals=((1, signal.SIGKILL),), stop_sent=True, interrupts=1),
     dict(stop_kind="user", interrupted=True), "exit", 75),
    ("the job fails during `launch stop`",
     JobEnd(rc=75, world=2, statuses=LOST, stop_sent=True), dict(stop_kind="user"), "exit", 75),
    ("Ctrl-C a second time", JobEnd(rc=-9, world=2, killed_by_us=True, interrupts=2,
                                    kill_why="stop at once"),
     dict(stop_kind="user", interrupted=True), "exit", 130),
    ("launch drain HOST", JobEnd(rc=0, world=2, statuses=STOPPED, stop_sent=True),
     dict(stop_kind="drain"), "restart", None),
    ("a new or returning host joins", JobEnd(rc=0, world=2, statuses=STOPPED, stop_sent=True),
     dict(stop_kind="join"), "restart", None),
    ("SIGTERM to a node without a drain",
     JobEnd(rc=143, world=2, signals=((1, signal.SIGTERM),)), dict(newest_ckpt=10), "restart",
     None),
    ("bad input", JobEnd(rc=2, world=2, statuses={0: {"reason": "bad_input"}}), {}, "give_up",
     2),
    ("a crash", JobEnd(rc=139, world=2, signals=((1, signal.SIGSEGV),)), {}, "give_up", 139),
    ("an abort", JobEnd(rc=134, world=2, signals=((1, signal.SIGABRT),)), {}, "give_up", 134),
    ("an internal error", JobEnd(rc=70, world=2, statuses={1: {"reason": "internal"}}), {},
     "give_up", 70),
    ("an exit without a status on a live host",
     JobEnd(rc=70, world=2, exits=((1, 70),), rank_hosts=TWO, alive=frozenset("ab")), {},
     "give_up", 70),
    ("a system error", JobEnd(rc=1, world=2, statuses={0: {"reason": "system"}}), {}, "give_up",
     1),
    ("the run finished", JobEnd(rc=0, world=2, statuses={0: {"reason": "finished"},
                                                         1: {"reason": "finished"}}),
     {}, "exit", 0),
]


class Policy(unittest.TestCase):
    def test_what_survives_what(self):
        for name, end, extra, action, code in SURVIVES:
            with self.subTest(name):
                v = classify(end)
                d = decide(Situation(kind=v.kind, code=v.code, **extra))
                self.assertEqual(d.action, action, (v, d))
                if code is not None:
                    self.assertEqual(d.code, code, (v, d))
                self.assertNotIn("\n", d.message)

    def test_messages_and_events(self):
        rows = [
            (Situation("finished", 0), "exit", "the run finished", {"code": 0}),
            (Situation("stopped", 0), "exit", "stopped on request; continue with the same "
             "command", {"code": 0}),
            (Situation("bug", 70), "give_up", "giving up: bug is not retried (exit 70)",
             {"reason": "bug", "code": 70}),
            (Situation("bad_input", 2), "give_up", "giving up: bad_input is not retried (exit 2)",
             {"reason": "bad_input", "code": 2}),
            (Situation("system", 1), "give_up", "giving up: system is not retried (exit 1)",
             {"reason": "system", "code": 1}),
            (Situation("interrupted", 130), "exit", "stopped at once (exit 130)", {"code": 130}),
            (Situation("peer_lost", 75, interrupted=True), "exit", "the job failed while "
             "stopping; not restarting (committed checkpoints stay: run the same command to "
             "continue)", {"code": 75}),
            (Situation("stopped", 0, stopped_before_up=True), "exit", "stopped before the job "
             "was up (nothing to save)", {"code": 0}),
        ]
        for s, action, message, fields in rows:
            with self.subTest(s.kind):
                d = decide(s)
                self.assertEqual((d.action, d.message, d.fields), (action, message, fields))

    def test_progress_and_backoff(self):
        # (newest checkpoint of the job, best before, restarts in a row before, max)
        #   -> action, best after, restarts in a row after, wait
        rows = [
            ((10, -1, 0, 3), ("restart", 10, 0, 0.0)),  # progress
            ((15, 10, 2, 3), ("restart", 15, 0, 0.0)),  # progress resets the count
            ((10, 10, 0, 3), ("restart", 10, 1, 1.0)),  # none: 1 x backoff
            ((None, 10, 1, 3), ("restart", 10, 2, 2.0)),  # no checkpoint at all
            ((10, 10, 2, 3), ("restart", 10, 3, 4.0)),
            ((10, 10, 3, 3), ("give_up", 10, 4, 0.0)),  # the 4th in a row > --max-restarts 3
            ((None, -1, 0, 0), ("give_up", -1, 1, 0.0)),  # --max-restarts 0: never
            ((5, 10, 0, 3), ("restart", 10, 1, 1.0)),  # an older checkpoint is no progress
        ]
        for (newest, best, n, mx), want in rows:
            with self.subTest(newest=newest, best=best, n=n, mx=mx):
                d = decide(Situation("peer_lost", 75, newest_ckpt=newest, best_step=best,
                                     no_progress=n, max_restarts=mx, backoff=1.0))
                self.assertEqual((d.action, d.best_step, d.no_progress, d.wait), want)
                if d.action == "give_up":
                    self.assertEqual(d.code, 75)
                    self.assertEqual(d.fields, {"reason": "no progress"})
                    self.assertIn(f"--max-restarts {mx}", d.message)
        # a planned stop for a drain or a join is progress whatever the checkpoint
        d = decide(Situation("stopped", 0, stop_kind="drain", best_step=20, no_progress=2))
        self.assertEqual((d.action, d.no_progress, d.wait), ("restart", 0, 0.0))

    def test_backoff_wait(self):
        rows = [(0, 1.0, 0.0), (1, 1.0, 1.0), (2, 1.0, 2.0), (3, 0.5, 2.0), (7, 1.0, 60.0),
                (30, 1.0, 60.0), (2, 0.0, 0.0)]
        for n, backoff, want in rows:
            with self.subTest(n=n, backoff=backoff):
                self.assertEqual(backoff_wait(n, backoff), want)

    def test_too_few_hosts(self):
        self.assertIsNone(too_few_hosts(2, 2))
        self.assertIsNone(too_few_hosts(3, 1))
        d = too_few_hosts(1, 2)
        self.assertEqual((d.action, d.code, d.fields), ("give_up", 75, {"reason": "too few hosts"}))
        self.assertEqual(d.message, "giving up: 1 host answers, fewer than --min-hosts 2")
        self.assertEqual(too_few_hosts(0, 1).message,
                         "giving up: 0 hosts answer, fewer than --min-hosts 1")


if __name__ == "__main__":
    unittest.main()
