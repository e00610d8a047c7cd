"""supervisor — the launcher's loop: check the config, start a job, watch it (requests, stops,
joins, deadlines), clean up after it, classify its end, decide, and restart or exit."""

import dataclasses
import os
import shlex
import subprocess
import sys
import time
import tomllib

from . import cleanup, control, launch_id
from .classify import JobEnd, classify, hosts_to_probe
from .codes import EXIT_INPUT, EXIT_OK, ROOT, InputError
from .hosts import HostTable, outside, probe, rank_hosts
from .job import Attempt, mpirun_command
from .logbook import Logbook, now
from .policy import Situation, decide, too_few_hosts
from .stops import Stops

SSH = "ssh -o BatchMode=yes -o ConnectTimeout=5 {host}"


class Launcher:
    def __init__(self, args, train_args):
        self.a = args
        self.train_args = train_args
        self.log = Logbook()
        self.hosts = HostTable(args.hostfile, self.log)
        self.stops = Stops(self.log)
        self.attempt = None
        self.attempts = 0
        self.no_progress = 0
        self.best_step = -1
        self.last_start = 0.0
        self.run_dir = None
        self.env = dict(os.environ)

    # -- set-up -------------------------------------------------------------------------------
    def tessera(self):
        if self.a.tessera:
            return os.path.abspath(self.a.tessera)
        built = os.path.join(ROOT, "build", "tessera")
        return built if os.access(built, os.X_OK) else "tessera"

    def check_config(self, world):
        """`tessera config` for this world size: the resolved config, or bad input (exit 2)"""
        cmd = [self.tessera(), "config", self.config_path] + self.overrides + [f"--world={world}"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, start_new_session=True)
        except OSError as e:
            raise InputError(f"{cmd[0]}: cannot run tessera: {e.strerror} (build it, or give "
                             f"--tessera PATH)")
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            return None
        return tomllib.loads(r.stdout)

    def setup(self):
        if not self.train_args:
            raise InputError("run: missing CONFIG after -- (usage: scripts/launch run --hostfile "
                             "FILE [options] -- CONFIG [--section.key=value ...])")
        self.config_path = os.path.abspath(self.train_args[0])
        self.overrides = list(self.train_args[1:])
        for a in self.overrides:
            if a == "--resume" or a.startswith("--resume=") or a.startswith("--run.resume"):
                raise InputError(f"{a}: the launcher resumes by itself (--resume auto); "
                                 f"leave it out")
            if not a.startswith("--"):
                raise InputError(f"\"{a}\": expected --section.key=value after CONFIG")
        self.hosts.reload(first=True)
        cfg = self.check_config(max(1, sum(s for _, s in self.hosts.listed)))
        if cfg is None:
            return EXIT_INPUT
        run_dir = os.path.abspath(os.path.join(cfg["run"]["out_dir"], cfg["run"]["name"]))
        self.timeout_s = float(cfg["comm"]["timeout_s"])
        self.launch_dir = os.path.join(run_dir, "launch")
        os.makedirs(self.launch_dir, exist_ok=True)
        other = control.launcher_pid(run_dir)
        if other is not None and other != os.getpid():
            raise InputError(f"{run_dir}: another launcher (pid {other}) runs this run already")
        control.write_pidfile(run_dir)
        self.run_dir = run_dir
        control.clear_requests(run_dir)
        self.log.open(self.launch_dir)
        n_slots = sum(s for _, s in self.hosts.listed)
        self.log(f"run directory {run_dir}; hostfile {self.hosts.path} "
                 f"({len(self.hosts.listed)} hosts, {n_slots} slots); "
                 f"deadline comm.timeout_s = {self.timeout_s:g} s, grace {self.a.grace:g} s",
                 "launcher_start", hosts=self.hosts.names())
        if int(cfg["ckpt"]["replicas"]) < 2:
            self.log("warning: ckpt.replicas = 1: a lost host may take the only checkpoint copy "
                     "with it (2 or more survive the loss of one host)")
        if int(cfg["ckpt"]["every"]) <= 0:
            self.log("warning: ckpt.every = 0: a restart after a failure starts from the last "
                     "planned stop or from scratch")
        stop_warning = control.check_stop_file(run_dir)
        if stop_warning:
            self.log(stop_warning)
        return None

    def close(self):
        if self.run_dir:
            control.remove_pidfile(self.run_dir)
        self.log.close()

    # -- hosts --------------------------------------------------------------------------------
    def probe_cmd(self):
        if self.a.probe:
            return self.a.probe
        return "true" if self.a.local else SSH + " true"

    def choose_hosts(self):
        return self.hosts.choose(self.probe_cmd(), self.a.probe_timeout)

    def remote_prefix(self, host):
        if self.a.local:
            return []
        return shlex.split((self.a.remote or SSH).replace("{host}", host))

    # -- one job ------------------------------------------------------------------------------
    def start(self, hosts):
        self.attempts += 1
        # the run directory names the run on every host; the cleanup after any attempt kills
        # every process of the run (a host that froze may come back with an older attempt's)
        att = Attempt(self.attempts, hosts, launch_id.make(self.run_dir, self.attempts,
                                                           os.getpid()), self.log)
        self.env[launch_id.VAR] = att.launch_id
        train = [self.tessera(), "train", self.config_path] + self.overrides + ["--resume", "auto"]
        cmd = mpirun_command(self.a.mpirun, self.a.mpirun_args, self.a.local, self.env, train,
                             hosts)
        with open(os.path.join(self.launch_dir, f"attempt-{att.number}.cmd"), "w") as f:
            f.write(shlex.join(cmd) + "\n")
        world = sum(s for _, s in hosts)
        att.start(cmd, self.env)
        self.last_start = att.started
        self.attempt = att
        self.log(f"attempt {att.number}: mpirun (pid {att.proc.pid}) on {len(hosts)} host"
                 f"{'s' if len(hosts) != 1 else ''} ({', '.join(h for h, _ in hosts)}), "
                 f"{world} rank{'s' if world != 1 else ''}", "start", attempt=att.number,
                 hosts=[h for h, _ in hosts], world=world)
        # a fault is injected into the first attempt only: a restart must not meet it again
        self.env.pop("TESSERA_FAULT", None)
        return att

    def take_requests(self, att):
        """planned stops asked for through `scripts/launch stop|drain|admit`"""
        for kind, host in control.take_requests(self.run_dir):
            if kind == "stop":
                self.stops.ask("user", "stop requested")
            elif kind == "drain":
                if host not in {h for h, _ in att.hosts}:
                    self.log(f"drain {host}: not a host of the running job; ignored")
                    continue
                self.stops.hosts.add(host)
                self.stops.ask("drain", f"drain of host {host} requested")
            elif kind == "admit" and host in self.hosts.drained:
                self.hosts.drained.discard(host)
                self.log(f"host {host}: admitted again; it joins like a new host", "admit",
                         host=host)

    def want_join(self, att):
        """listed hosts outside the job (new, or dead and back) that answer now"""
        if not self.a.join or att.first_step is None or self.stops.kind:
            return
        in_job = {h for h, _ in att.hosts}
        if not outside(self.hosts.listed, in_job, self.hosts.drained):
            return
        if now() - self.hosts.last_probe < self.a.probe_interval:
            return
        if now() - self.last_start < self.a.join_interval:
            return
        back = self.hosts.returning(in_job, self.probe_cmd(), self.a.probe_timeout)
        if back:
            self.stops.ask("join", f"host{'s' if len(back) > 1 else ''} {', '.join(back)} "
                           f"can join")

    def watch(self, att):
        """until mpirun has ended (on its own or killed)"""
        stop_deadline = self.a.stop_timeout
        while True:
            try:
                att.proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            if att.proc.poll() is not None:
                break
            t = now()
            self.stops.handle_signals(att)
            self.take_requests(att)
            self.stops.deliver(att)
            self.hosts.reload()
            self.want_join(att)
            with att.lock:
                detected = att.detected
            if detected and t - detected > self.timeout_s + self.a.grace:
                att.kill(f"mpirun still runs {t - detected:.1f} s after the failure "
                         f"(deadline {self.timeout_s:g} s + grace {self.a.grace:g} s)")
            if att.ready is None and t - att.started > self.a.start_timeout:
                # a host that hangs while the job starts (inside MPI_Init) is seen by no deadline
                with att.lock:
                    att.detect(t, f"no rank ready {self.a.start_timeout:g} s after the start")
                att.kill(f"the job did not start within --start-timeout "
                         f"{self.a.start_timeout:g} s")
            if self.stops.sent and t - self.stops.sent > stop_deadline:
                att.kill(f"the ranks did not stop within {stop_deadline:g} s")
        att.reap()

    # -- after the job ------------------------------------------------------------------------
    def cleanup(self, att):
        """on every host of the job: kill what is left, remove stale shared memory and session
        folders, collect the status files; {rank: status}, hosts that did not answer"""
        statuses, unreachable = {}, []
        hosts = ["localhost"] if self.a.local else [h for h, _ in att.hosts]
        reports = cleanup.cleanup_hosts(hosts, self.remote_prefix,
                                        sys.executable if self.a.local else "python3",
                                        att.launch_id, self.run_dir, f"attempt-{att.number}",
                                        self.a.probe_timeout + 5)
        for h in hosts:
            rep = reports[h]
            if rep is None:
                unreachable.append(h)
                continue
            for r, st in rep["statuses"].items():
                statuses[int(r)] = st
            if rep["killed"] or rep["removed"]:
                self.log(f"cleanup on {h}: killed {len(rep['killed'])} leftover process"
                         f"{'es' if len(rep['killed']) != 1 else ''}"
                         f"{' ' + str(rep['killed']) if rep['killed'] else ''}, removed "
                         f"{len(rep['removed'])} stale Open MPI file(s)", "cleanup", host=h,
                         killed=rep["killed"], removed=len(rep["removed"]))
        if unreachable:
            self.log(f"cleanup: no answer from {', '.join(unreachable)}", "cleanup_unreachable",
                     hosts=unreachable)
        return statuses, unreachable

    def finish_attempt(self, att):
        statuses, unreachable = self.cleanup(att)
        with att.lock:
            end = JobEnd(rc=att.rc, world=sum(s for _, s in att.hosts), statuses=statuses,
                         markers=tuple(att.failures), exits=tuple(att.exits),
                         signals=tuple(att.signals), rank_hosts=rank_hosts(att.hosts),
                         killed_by_us=att.killed_by_us, kill_why=att.kill_why,
                         stop_sent=bool(self.stops.sent), interrupts=self.stops.interrupts,
                         # with --local one cleanup serves every host name
                         unanswered=frozenset(h for h, _ in att.hosts) if self.a.local
                         and unreachable else frozenset(unreachable))
        ask = hosts_to_probe(end)
        if ask:  # a rank ended without saying why: is its host still there?
            alive = probe(ask, self.probe_cmd(), self.a.probe_timeout)
            end = dataclasses.replace(end, alive=frozenset(h for h in ask if alive[h]))
        kind, code, why = classify(end)
        t_det = att.detected or att.ended
        self.log(f"attempt {att.number} ended: mpirun exit {att.rc}, {kind}: {why}", "end",
                 attempt=att.number, rc=att.rc, kind=kind, why=why,
                 resumed_from=att.resumed_from, newest_ckpt=att.newest_ckpt,
                 detected=round(t_det, 3), job_ended=round(att.ended, 3))
        return kind, code, unreachable, t_det

    def pause(self, wait):
        if wait > 0:
            self.log(f"no new checkpoint since the last restart: waiting {wait:g} s")
            until = now() + wait
            while now() < until and not self.stops.interrupts:
                time.sleep(0.1)

    # -- the loop -----------------------------------------------------------------------------
    def run(self):
        code = self.setup()
        if code is not None:
            return code
        self.stops.install()
        hosts = self.choose_hosts()
        while True:
            self.stops.handle_signals()
            if self.stops.interrupts:
                self.log("stopped before the next job started", "exit", code=EXIT_OK)
                return EXIT_OK
            few = too_few_hosts(len(hosts), self.a.min_hosts)
            if few:
                self.log(few.message, few.action, **few.fields)
                return few.code
            world = sum(s for _, s in hosts)
            if self.check_config(world) is None:
                self.log(f"giving up: the config does not fit {world} ranks (see above)",
                         "give_up", reason="bad input")
                return EXIT_INPUT
            self.stops.reset()
            self.stops.handle_signals()  # a signal since the check above
            if self.stops.interrupts:
                self.log("stopped before the next job started", "exit", code=EXIT_OK)
                return EXIT_OK
            att = self.start(hosts)
            self.watch(att)
            self.stops.handle_signals(att)
            kind, code, unreachable, t_det = self.finish_attempt(att)
            stop_kind, stop_hosts = self.stops.kind, set(self.stops.hosts)
            d = decide(Situation(
                kind=kind, code=code, stop_kind=stop_kind,
                interrupted=self.stops.interrupts > 0,
                stopped_before_up=self.stops.handled == 1 and att.ready is None,
                newest_ckpt=att.newest_ckpt, best_step=self.best_step,
                no_progress=self.no_progress, max_restarts=self.a.max_restarts,
                backoff=self.a.backoff))
            self.best_step, self.no_progress = d.best_step, d.no_progress
            if d.action != "restart":
                self.log(d.message, d.action, **d.fields)
                return d.code
            self.pause(d.wait)
            for h in stop_hosts:  # a drained host stays out even if its stop went wrong
                self.hosts.drained.add(h)
                self.log(f"host {h}: drained; the run goes on without it", "drained", host=h)
            self.hosts.reload()
            hosts = self.choose_hosts()
            for h in unreachable:
                if any(h == x for x, _ in hosts):
                    self.log(f"host {h}: cleanup got no answer but the probe does; keeping it")
            self.log(f"restarting ({kind}) {now() - t_det:.2f} s after "
                     f"{'the failure was detected' if kind == 'peer_lost' else 'the stop'}",
                     "restart", after=kind, since_detect=round(now() - t_det, 3))
