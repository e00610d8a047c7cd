"""stops — planned stops inside a running launcher: who asked (the user, a drain, a join), when
the request went to mpirun (SIGUSR1, which it forwards to every rank without escalating), and
the launcher's own SIGINT/SIGTERM (the first asks for a planned stop, the second stops at once).
"""

import os
import signal

from .logbook import now


class Stops:
    def __init__(self, log):
        self.log = log
        self.kind = None  # "user", "drain", "join" while a planned stop is under way
        self.sent = None  # when SIGUSR1 went to mpirun
        self.hosts = set()  # hosts a drain removes
        self.interrupts = 0  # SIGINT/SIGTERM received
        self.handled = 0  # of those, logged and acted on
        self.pending = []  # signal names not yet handled

    def reset(self):
        """before a job starts"""
        self.kind, self.sent, self.hosts = None, None, set()

    def ask(self, kind, why):
        # a user stop outranks a drain or a join: the launcher then exits after the checkpoint
        if self.kind is None or kind == "user":
            self.kind = kind
        self.log(f"{why}: the ranks finish the step, checkpoint and exit", "stop_requested",
                 kind=kind)
        self.sent = None  # (re)send

    def deliver(self, att):
        """SIGUSR1 to mpirun, which forwards it to every rank (SIGTERM would kill them); sent
        once the ranks train, so that none meets it before its handler is installed"""
        if self.kind and self.sent is None and att.ready is not None:
            try:
                os.kill(att.proc.pid, signal.SIGUSR1)
                self.sent = now()
                self.log(f"attempt {att.number}: SIGUSR1 to mpirun", "stop_sent",
                         attempt=att.number)
            except OSError:
                pass

    def on_signal(self, sig, frame):
        # only flags here: the main loop logs and acts (handle_signals), so a signal that lands
        # inside a write or a lock cannot break them
        self.interrupts += 1
        self.pending.append(signal.Signals(sig).name)

    def install(self):
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)

    def handle_signals(self, att=None):
        while self.pending:
            name = self.pending.pop(0)
            self.handled += 1
            if self.handled == 1:
                self.log(f"{name}: planned stop (the ranks checkpoint first; {name} again stops "
                         f"at once)", "signal", signal=name)
                self.kind = "user"
                self.sent = None
                if att and att.ready is None:  # nothing trained yet in this job: nothing to save
                    att.kill("stop before the job is up")
            else:
                self.log(f"{name} again: stopping at once (committed checkpoints stay intact)",
                         "signal", signal=name)
                if att:
                    att.kill("stop at once")
