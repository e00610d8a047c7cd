"""tessera_launch — the launcher behind scripts/launch: keeps a tessera training running across
node loss, planned stops and hosts joining (docs/fault-tolerance.md).

Modules, by concern:
  codes       exit codes, crash signals, the launcher's input error, where the checkout is
  logbook     the launcher's log lines (stderr, launch.log) and event records (events.jsonl)
  hosts       the hostfile (parsing, strict host names), probing, which hosts a job gets
  launch_id   TESSERA_LAUNCH_ID: make it, parse it, tell whether a process belongs to a run
  statusfile  the ranks' status files (rank-R.status)
  output      what mpirun's output says (ranks ready, steps, checkpoints, failures)
  job         one mpirun job: its command line, process, output reader, kill
  cleanup     after a job, on every host: leftover processes, shared memory, status files
  classify    how a job ended (pure)
  policy      what the launcher does next: exit, give up or restart, and after what pause (pure)
  control     files other commands share with a running launcher: requests, launcher.pid, STOP
  stops       planned stops and signals inside a running launcher
  supervisor  the loop: start, watch, clean up, classify, decide, restart
  cli         the command line of scripts/launch

The decisions (classify, policy, host choice, launch-id matching, the pid file) are pure
functions; tests/launch/test_*.py test them table by table.
"""
