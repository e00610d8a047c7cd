"""test_classify — classify(), row by row of docs/fault-tolerance.md: "How the launcher decides"
(step 5, the classes) and the events of "What survives what" as the launcher sees them.

  PYTHONPATH=scripts python3 -m unittest tests/launch/test_classify.py
"""

import signal
import unittest

from tessera_launch.classify import JobEnd, classify, hosts_to_probe, silent_exits


def st(reason, peer=-1, code=None):
    codes = {"finished": 0, "stopped": 0, "bad_input": 2, "peer_lost": 75, "system": 1,
             "internal": 70}
    return {"reason": reason, "step": 12, "peer": peer,
            "exit_code": codes[reason] if code is None else code}


TWO = {0: "a", 1: "b"}  # rank: host of a 2-rank job on hosts a and b

# name, JobEnd, kind, code, a piece of the why
ROWS = [
    # finished: mpirun 0, every rank finished
    ("finished", JobEnd(rc=0, world=2, statuses={0: st("finished"), 1: st("finished")}),
     "finished", 0, "every rank finished"),
    ("finished, statuses not collected", JobEnd(rc=0, world=2), "finished", 0, "mpirun exited 0"),
    # stopped: mpirun 0, ranks stopped (a user stop, a drain or a join: policy tells them apart)
    ("stopped", JobEnd(rc=0, world=2, statuses={0: st("stopped"), 1: st("stopped")},
                       stop_sent=True), "stopped", 0, "stopped with a checkpoint"),
    ("stopped by a STOP file", JobEnd(rc=0, world=2, statuses={0: st("stopped")}),
     "stopped", 0, "stopped with a checkpoint"),
    ("stop sent, no status collected", JobEnd(rc=0, world=2, stop_sent=True),
     "stopped", 0, "stopped"),
    # bad input: a rank bad_input, or mpirun 2 with no lost peer
    ("bad input status", JobEnd(rc=2, world=2, statuses={0: st("bad_input")}),
     "bad_input", 2, "bad input"),
    ("bad input line only", JobEnd(rc=2, world=2, markers=((1, 2, "bad_input", -1),)),
     "bad_input", 2, "bad input"),
    ("mpirun 2, no status (a config error before the run directory)",
     JobEnd(rc=2, world=2, exits=((0, 2),), rank_hosts=TWO, alive=frozenset("ab")),
     "bad_input", 2, "bad input"),
    ("mpirun 2 with a lost peer is a lost peer",
     JobEnd(rc=2, world=2, statuses={0: st("peer_lost", peer=1)}),
     "peer_lost", 75, "ranks waited for rank 1"),
    # bug: a crash signal, or a rank internal
    ("SIGSEGV", JobEnd(rc=139, world=2, signals=((1, signal.SIGSEGV),)), "bug", 139, "SIGSEGV"),
    ("SIGBUS", JobEnd(rc=135, world=2, signals=((1, signal.SIGBUS),)), "bug", 135, "SIGBUS"),
    ("SIGFPE", JobEnd(rc=136, world=2, signals=((1, signal.SIGFPE),)), "bug", 136, "SIGFPE"),
    ("SIGILL", JobEnd(rc=132, world=2, signals=((0, signal.SIGILL),)), "bug", 132, "SIGILL"),
    ("SIGABRT (ts_panic)", JobEnd(rc=134, world=2, signals=((0, signal.SIGABRT),)),
     "bug", 134, "SIGABRT"),
    ("a crash outranks its peers' lost-peer statuses",
     JobEnd(rc=139, world=2, statuses={0: st("peer_lost", peer=1)},
            signals=((1, signal.SIGSEGV),)), "bug", 139, "crashed"),
    ("internal status", JobEnd(rc=70, world=2, statuses={1: st("internal")},
                               exits=((1, 70),), rank_hosts=TWO, alive=frozenset("ab")),
     "bug", 70, "internal error"),
    ("internal status beside lost peers",
     JobEnd(rc=70, world=3, statuses={0: st("peer_lost", peer=1), 1: st("internal")}),
     "bug", 70, "internal error"),
    ("internal line, status not collected",
     JobEnd(rc=70, world=2, markers=((1, 70, "internal", 12),)), "bug", 70, "internal error"),
    # bug: a rank exited non-zero without a status file, on a host that still answers
    ("exit 70 without a status, host answers",
     JobEnd(rc=70, world=2, exits=((1, 70),), rank_hosts=TWO, alive=frozenset("ab")),
     "bug", 70, "rank 1 exited 70 without a status file on host b, which still answers"),
    ("exit 1 without a status, host answers",
     JobEnd(rc=1, world=2, exits=((0, 1),), rank_hosts=TWO, alive=frozenset("a")),
     "bug", 70, "rank 0 exited 1 without a status file on host a"),
    ("exit 3 without a status beside a peer's lost-peer status",
     JobEnd(rc=3, world=2, statuses={0: st("peer_lost", peer=1)}, exits=((1, 3),),
            rank_hosts=TWO, alive=frozenset("ab")), "bug", 70, "rank 1 exited 3"),
    # system: a rank system and no lost peer
    ("system", JobEnd(rc=1, world=2, statuses={0: st("system")}), "system", 1, "system call"),
    ("system beside a lost peer is a lost peer",
     JobEnd(rc=1, world=2, statuses={0: st("system"), 1: st("peer_lost", peer=0)}),
     "peer_lost", 75, "ranks waited for rank 0"),
    # peer lost: anything else
    ("peer_lost statuses", JobEnd(rc=75, world=3, statuses={0: st("peer_lost", peer=2),
                                                            1: st("peer_lost", peer=2)}),
     "peer_lost", 75, "ranks waited for rank 2"),
    ("peer_lost, no pending collective", JobEnd(rc=75, world=2, statuses={0: st("peer_lost")}),
     "peer_lost", 75, "mpirun exited 75 and no rank said why"),
    ("exit 75 without a status (a deadline inside MPI_Init)",
     JobEnd(rc=75, world=2, exits=((1, 75),), rank_hosts=TWO, alive=frozenset("ab")),
     "peer_lost", 75, "mpirun exited 75"),
    ("rank SIGKILLed (OOM, kill -9, node crash)",
     JobEnd(rc=137, world=2, signals=((1, signal.SIGKILL),)), "peer_lost", 75, "signal 9"),
    ("rank SIGTERMed (a node shut down without a drain)",
     JobEnd(rc=143, world=2, signals=((1, signal.SIGTERM),)), "peer_lost", 75, "signal 15"),
    ("mpirun 205: a node's daemon lost", JobEnd(rc=205, world=2),
     "peer_lost", 75, "a node's daemon was lost"),
    ("mpirun killed after the deadline (a hung rank, a partition)",
     JobEnd(rc=-9, world=2, statuses={0: st("peer_lost", peer=1)}, killed_by_us=True,
            kill_why="mpirun still runs 6.1 s after the failure"),
     "peer_lost", 75, "mpirun killed: mpirun still runs"),
    ("mpirun killed at start-up", JobEnd(rc=-9, world=2, killed_by_us=True,
                                         kill_why="the job did not start"),
     "peer_lost", 75, "the job did not start"),
    ("no status at all", JobEnd(rc=1, world=2), "peer_lost", 75,
     "mpirun exited 1 and no rank said why"),
    ("exit 70 on a host whose cleanup did not answer: its status may be there, unread",
     JobEnd(rc=70, world=2, exits=((1, 70),), rank_hosts=TWO, alive=frozenset("ab"),
            unanswered=frozenset("b")), "peer_lost", 75, "mpirun exited 70 and no rank said why"),
    ("exit 70 without a status, host gone",
     JobEnd(rc=70, world=2, exits=((1, 70),), rank_hosts=TWO, alive=frozenset("a")),
     "peer_lost", 75, "rank 1 exited 70 without a status file on host b, which does not answer"),
    # the launcher's own stop
    ("second SIGINT: killed at once", JobEnd(rc=-9, world=2, killed_by_us=True, interrupts=2,
                                             kill_why="stop at once"),
     "interrupted", 130, "stopped at once"),
    ("one SIGINT, the job failed while stopping",
     JobEnd(rc=137, world=2, signals=((1, signal.SIGKILL),), stop_sent=True, interrupts=1),
     "peer_lost", 75, "signal 9"),
]


class Classify(unittest.TestCase):
    def test_rows(self):
        for name, end, kind, code, why in ROWS:
            with self.subTest(name):
                v = classify(end)
                self.assertEqual((v.kind, v.code), (kind, code), v.why)
                self.assertIn(why, v.why)
                self.assertNotIn("\n", v.why)

    def test_silent_exits(self):
        rows = [
            ("none", JobEnd(rc=0), []),
            ("exit 70, no word", JobEnd(rc=70, exits=((1, 70),), rank_hosts=TWO), [(1, 70, "b")]),
            ("exit 70 with a status", JobEnd(rc=70, exits=((1, 70),), rank_hosts=TWO,
                                             statuses={1: st("internal")}), []),
            ("exit 70 with an exit line", JobEnd(rc=70, exits=((1, 70),), rank_hosts=TWO,
                                                 markers=((1, 70, "internal", 3),)), []),
            ("2 and 75 explain themselves", JobEnd(rc=2, exits=((0, 2), (1, 75)),
                                                   rank_hosts=TWO), []),
            ("a rank of no known host", JobEnd(rc=70, exits=((5, 70),), rank_hosts=TWO),
             [(5, 70, None)]),
            ("its host's cleanup did not answer", JobEnd(rc=70, exits=((1, 70),),
                                                         rank_hosts=TWO, unanswered={"b"}), []),
        ]
        for name, end, want in rows:
            with self.subTest(name):
                self.assertEqual(silent_exits(end), want)

    def test_hosts_to_probe(self):
        end = JobEnd(rc=70, exits=((1, 70), (0, 1), (5, 70)), rank_hosts=TWO)
        self.assertEqual(hosts_to_probe(end), ["a", "b"])
        self.assertEqual(hosts_to_probe(JobEnd(rc=137, signals=((1, 9),))), [])


if __name__ == "__main__":
    unittest.main()
