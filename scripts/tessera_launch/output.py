"""output — what a line of the job's output (mpirun's and the ranks', merged) says; pure.

`scan(line)` returns the facts in it, each a tuple whose first item names it:
  ("ready",)                     rank 0 named the run directory: every rank is past MPI_Init
  ("step", N)                    a training step's log line
  ("resumed", N) / ("fresh",)    where the attempt started from
  ("ckpt", N)                    a checkpoint of step N was committed
  ("fault", R)                   rank R's fault injection fired
  ("exit", R, CODE, REASON, S)   rank R's "exit CODE (REASON) at step S" line
  ("signal", R, SIG)             mpirun: rank R exited on signal SIG
  ("process", R)                 mpirun names the first rank that exited non-zero ...
  ("exit_code", CODE)            ... and, on a later line, its exit code
"""

import re

PATTERNS = (
    ("ready", re.compile(r"tessera\[0\]: run directory: "), ()),
    ("step", re.compile(r"tessera\[\d+\]: step +(\d+)/\d+"), (int,)),
    ("resumed", re.compile(r"resumed from step (\d+)"), (int,)),
    ("fresh", re.compile(r"no intact checkpoint .* starting fresh"), ()),
    ("ckpt", re.compile(r"tessera\[\d+\]: checkpoint step (\d+):"), (int,)),
    ("fault", re.compile(r"tessera\[(\d+)\]: fault injection: "), (int,)),
    ("exit", re.compile(r"tessera\[(\d+)\]: exit (\d+) \((\w+)\) at step (-?\d+)"),
     (int, int, str, int)),
    ("signal", re.compile(r"rank (\d+) with PID \d+ on node \S+ exited on signal (\d+)"),
     (int, int)),
    ("process", re.compile(r"^\s*Process name: \[\[\d+,\d+\],(\d+)\]\s*$"), (int,)),
    ("exit_code", re.compile(r"^\s*Exit code: +(\d+)\s*$"), (int,)),
)


def scan(line):
    facts = []
    for name, rx, types in PATTERNS:
        m = rx.search(line)
        if m:
            facts.append((name,) + tuple(t(v) for t, v in zip(types, m.groups())))
    # "resumed" and "fresh" exclude each other (as before: a resume line wins)
    if any(f[0] == "resumed" for f in facts):
        facts = [f for f in facts if f[0] != "fresh"]
    return facts
