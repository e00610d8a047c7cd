"""tessera_lab — the lab behind scripts/lab: several real hosts on one machine (network
namespaces on a bridge, shaped links), faults, and chaos runs of the launcher (docs/lab.md).

Modules, by concern:
  common    the lab's error, shell commands, log lines, where the checkout and its tools are
  state     the lab's state folder (state.json, the hostfile, UTS files, down markers)
  links     the subnet and the bandwidth shaping of a link (tc tbf)
  hosts     a host: its namespaces and veth pair, its processes, the probe, mpirun's options
  cpu       a host's CPU limit (a cgroup v1 cpu controller group), the speeds measurement
  bringup   up, down, status of the whole lab
  faults    node loss and return, partitions, rates, CPU limits, pauses, kills during a
            checkpoint write
  check     proof that the shaping works (throughput, byte counters)
  chaos     a launcher run under a fault schedule
  report    a chaos run's assertions and per-fault recovery times
  svg       the recovery-time chart
  cli       the command line of scripts/lab
"""
