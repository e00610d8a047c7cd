"""policy — after a job has ended and been classified: exit, give up, or restart (and after
what pause); a pure function of its inputs (docs/fault-tolerance.md, steps 6 and 7).

Progress is measured by the newest checkpoint: a restart that got further than every earlier
one resets the count of restarts in a row without progress; --max-restarts of those in a row
end the run, and each of them waits longer first (--backoff, doubling, at most 60 s), so that a
job that cannot start does not spin.
"""

from dataclasses import dataclass, field
from typing import Optional

from .codes import EXIT_OK, EXIT_PEER_LOST

MAX_WAIT_S = 60.0


@dataclass(frozen=True)
class Situation:
    kind: str  # the verdict of classify()
    code: int  # its exit code
    stop_kind: Optional[str] = None  # the planned stop under way: None, user, drain or join
    interrupted: bool = False  # the launcher got SIGINT/SIGTERM
    stopped_before_up: bool = False  # one SIGINT/SIGTERM before every rank was up
    newest_ckpt: Optional[int] = None  # the newest checkpoint step the job wrote
    best_step: int = -1  # the newest checkpoint step of any earlier attempt
    no_progress: int = 0  # restarts in a row without a new checkpoint so far
    max_restarts: int = 3
    backoff: float = 1.0


@dataclass(frozen=True)
class Decision:
    action: str  # exit, give_up or restart
    code: int = EXIT_OK  # the launcher's exit code (exit, give_up)
    message: str = ""  # the launcher's line
    fields: dict = field(default_factory=dict)  # of its event record
    wait: float = 0.0  # seconds before the restart
    best_step: int = -1  # the progress after this decision
    no_progress: int = 0


def backoff_wait(no_progress, backoff):
    """before the n-th restart in a row without progress: backoff x 2^(n-1) s, at most 60"""
    return min(backoff * 2 ** (no_progress - 1), MAX_WAIT_S) if no_progress > 0 else 0.0


def too_few_hosts(n_hosts, min_hosts):
    """before a job starts: a give-up Decision when fewer than --min-hosts hosts answer"""
    if n_hosts >= min_hosts:
        return None
    return Decision("give_up", EXIT_PEER_LOST,
                    f"giving up: {n_hosts} host{' answers' if n_hosts == 1 else 's answer'}, fewer than "
                    f"--min-hosts {min_hosts}", {"reason": "too few hosts"})


def decide(s):
    keep = dict(best_step=s.best_step, no_progress=s.no_progress)

    def leave(exit_code, message):
        return Decision("exit", exit_code, message, {"code": exit_code}, **keep)

    def give_up(exit_code, message, **fields):
        return Decision("give_up", exit_code, message, fields, **keep)

    if s.stopped_before_up:
        return leave(EXIT_OK, "stopped before the job was up (nothing to save)")
    if s.kind == "finished":
        return leave(EXIT_OK, "the run finished")
    if s.kind == "stopped" and s.stop_kind in (None, "user"):
        return leave(EXIT_OK, "stopped on request; continue with the same command")
    if s.kind == "interrupted":
        return leave(s.code, f"stopped at once (exit {s.code})")
    if s.kind not in ("stopped", "peer_lost"):
        return give_up(s.code, f"giving up: {s.kind} is not retried (exit {s.code})",
                       reason=s.kind, code=s.code)
    if s.kind == "peer_lost" and (s.interrupted or s.stop_kind == "user"):
        return leave(s.code, "the job failed while stopping; not restarting (committed "
                             "checkpoints stay: run the same command to continue)")
    step = s.newest_ckpt if s.newest_ckpt is not None else -1
    if s.kind == "stopped" or step > s.best_step:
        return Decision("restart", best_step=max(s.best_step, step), no_progress=0)
    n = s.no_progress + 1
    if n > s.max_restarts:
        return Decision("give_up", s.code, f"giving up: {n} restarts in a row without a new "
                        f"checkpoint (--max-restarts {s.max_restarts})",
                        {"reason": "no progress"}, best_step=s.best_step, no_progress=n)
    return Decision("restart", wait=backoff_wait(n, s.backoff), best_step=s.best_step,
                    no_progress=n)
