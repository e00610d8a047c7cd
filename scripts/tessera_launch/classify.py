"""classify — how a job ended, from what the launcher saw of it; a pure function of its inputs
(docs/fault-tolerance.md, "How the launcher decides", step 5).

Every rank says why it ended in its status file (or, when the file could not be collected, in
its "exit N (reason)" line). A rank that exits non-zero without saying why, on a host that still
answers the probe, is a bug in tessera (an exit path that does not report), never a lost peer:
restarting would hide it. Exit codes 2 and 75 are exempt: they are the trainer's own words for
bad input and a lost peer, and both can come before a rank knows its run directory (a config
error; a deadline inside MPI_Init).
"""

import signal
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple, Sequence

from .codes import (CRASH_SIGNALS, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK,
                    EXIT_PEER_LOST, EXIT_SYSTEM)

# codes a rank may exit with before it can write a status file, each with its own meaning
SELF_EXPLAINED = (EXIT_INPUT, EXIT_PEER_LOST)


@dataclass(frozen=True)
class JobEnd:
    """what the launcher knows when a job has ended"""
    rc: int  # mpirun's exit code
    world: int = 0  # ranks in the job
    statuses: Mapping[int, Mapping] = field(default_factory=dict)  # rank: status file
    markers: Sequence[tuple] = ()  # (rank, code, reason, step): "exit N (reason)" lines
    exits: Sequence[tuple] = ()  # (rank, code): mpirun's report of a rank exiting non-zero
    signals: Sequence[tuple] = ()  # (rank, signal): mpirun's report of a rank killed
    rank_hosts: Mapping[int, str] = field(default_factory=dict)  # rank: host
    alive: frozenset = frozenset()  # hosts that answered the probe after the job
    unanswered: frozenset = frozenset()  # hosts whose cleanup got no answer: statuses unknown
    killed_by_us: bool = False  # the launcher SIGKILLed mpirun ...
    kill_why: str = ""  # ... for this reason
    stop_sent: bool = False  # a planned stop was delivered to the job
    interrupts: int = 0  # SIGINT/SIGTERM the launcher received


class Verdict(NamedTuple):
    kind: str  # finished, stopped, interrupted, bad_input, bug, system, peer_lost
    code: int  # the launcher's exit code should it stop here
    why: str  # one line


def reasons_by_rank(end):
    """{rank: reason}: the status file's, else the rank's exit line's"""
    out = {m[0]: m[2] for m in end.markers}
    out.update({r: st.get("reason") for r, st in end.statuses.items()})
    return out


def silent_exits(end):
    """[(rank, code, host)]: ranks reported exiting non-zero that left no word of why (on a host
    whose status files were collected: elsewhere the word may be there, unread)"""
    said = reasons_by_rank(end)
    return [(r, code, end.rank_hosts.get(r)) for r, code in end.exits
            if code != 0 and code not in SELF_EXPLAINED and r not in said
            and end.rank_hosts.get(r) not in end.unanswered]


def hosts_to_probe(end):
    """the hosts whose liveness classify() needs to know"""
    return sorted({h for _, _, h in silent_exits(end) if h is not None})


def classify(end):
    reasons = set(reasons_by_rank(end).values())
    sig = {s for _, s in end.signals}
    rc = end.rc
    if rc == 0:  # every rank exited 0: it finished, or stopped with a checkpoint
        if "stopped" in reasons or (end.stop_sent and "finished" not in reasons):
            return Verdict("stopped", EXIT_OK, "the ranks stopped with a checkpoint")
        if len(end.statuses) == end.world and reasons == {"finished"}:
            return Verdict("finished", EXIT_OK, "every rank finished")
        return Verdict("finished", EXIT_OK, "mpirun exited 0")
    crash = sorted(s for s in sig if s in CRASH_SIGNALS)
    if crash:
        return Verdict("bug", 128 + crash[0], f"a rank crashed (signal {crash[0]}, "
                                               f"{signal.Signals(crash[0]).name})")
    if "bad_input" in reasons or (rc == EXIT_INPUT and "peer_lost" not in reasons and not sig):
        return Verdict("bad_input", EXIT_INPUT, "bad input (see the error above)")
    if "internal" in reasons:
        return Verdict("bug", EXIT_INTERNAL, "a rank hit an internal error (a bug)")
    silent = silent_exits(end)
    for r, code, host in silent:
        if host in end.alive:
            return Verdict("bug", EXIT_INTERNAL,
                           f"rank {r} exited {code} without a status file on host {host}, "
                           f"which still answers: a bug in tessera (an exit that does not say "
                           f"why), not a lost peer")
    if "system" in reasons and "peer_lost" not in reasons:
        return Verdict("system", EXIT_SYSTEM, "a rank failed on a system call (disk, memory)")
    if end.killed_by_us and end.interrupts > 1:
        return Verdict("interrupted", EXIT_INTERRUPTED, "stopped at once")
    what = []
    lost = sorted({st.get("peer") for st in end.statuses.values()
                   if st.get("reason") == "peer_lost" and isinstance(st.get("peer"), int)
                   and st.get("peer") >= 0})
    if lost:
        what.append(f"ranks waited for rank{'s' if len(lost) > 1 else ''} "
                    f"{', '.join(map(str, lost))}")
    for r, code, host in silent:
        what.append(f"rank {r} exited {code} without a status file on host {host}, which "
                    f"does not answer")
    if sig:
        what.append(f"rank(s) killed by signal {', '.join(map(str, sorted(sig)))}")
    if end.killed_by_us:
        what.append(f"mpirun killed: {end.kill_why}")
    if rc == 205:
        what.append("a node's daemon was lost")
    if not what:
        what.append(f"mpirun exited {rc} and no rank said why")
    return Verdict("peer_lost", EXIT_PEER_LOST, "; ".join(what))
