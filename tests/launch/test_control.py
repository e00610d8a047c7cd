"""test_control — launcher.pid (a stale pid never blocks a run), the STOP file check, request
names and the host argument of drain/admit.

  PYTHONPATH=scripts python3 -m unittest tests/launch/test_control.py
"""

import os
import socket
import stat
import subprocess
import tempfile
import unittest

from tessera_launch import control
from tessera_launch.codes import InputError


class PidFile(unittest.TestCase):
    def test_proc_start_time(self):
        tail = " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 19 20"
        rows = [
            ("77 (python3)" + tail, 424242),
            ("77 (a) b (c))" + tail, 424242),  # a process name with ' ' and ')'
            ("77 (x) S 1", None),
            ("", None),
        ]
        for text, want in rows:
            with self.subTest(text=text):
                self.assertEqual(control.proc_start_time(text), want)

    def test_parse_pidfile(self):
        rows = [("123 4567\n", (123, 4567)), ("123\n", (123, None)), ("123 x\n", (123, None)),
                ("", None), ("x 1\n", None), ("-5\n", None)]
        for text, want in rows:
            with self.subTest(text=text):
                self.assertEqual(control.parse_pidfile(text), want)

    def test_owns_run(self):
        launcher = ["/usr/bin/python3", "/src/tessera/scripts/launch", "run", "--hostfile", "h"]
        rows = [
            ((10, 500), 500, launcher, True),
            ((10, 500), 501, launcher, False),  # the pid now belongs to a later process
            ((10, 500), None, [], False),  # no such process
            ((10, 500), 500, ["sleep", "1000"], True),  # the start time is proof enough
            ((10, None), 500, launcher, True),  # an older pid file: the command line decides
            ((10, None), 500, ["sleep", "1000"], False),
            ((10, None), 500, ["/src/scripts/launch", "status", "/runs/x"], False),
            ((10, None), None, launcher, False),
            (None, 500, launcher, False),
        ]
        for recorded, start, argv, want in rows:
            with self.subTest(recorded=recorded, start=start, argv=argv):
                self.assertEqual(control.owns_run(recorded, start, argv), want)

    def test_launcher_pid_on_this_machine(self):
        with tempfile.TemporaryDirectory() as run:
            os.makedirs(os.path.join(run, "launch"))
            path = control.pidfile_path(run)
            self.assertIsNone(control.launcher_pid(run))  # no file
            control.write_pidfile(run)  # this process, with its start time
            self.assertEqual(control.launcher_pid(run), os.getpid())
            # a live process that is no launcher: a sleep, recorded as the old launchers did
            # (pid only), and with a start time that is not its own
            p = subprocess.Popen(["sleep", "30"])
            try:
                for text in (f"{p.pid}\n", f"{p.pid} 1\n"):
                    with open(path, "w") as f:
                        f.write(text)
                    self.assertIsNone(control.launcher_pid(run), text)
            finally:
                p.kill()
                p.wait()
            with open(path, "w") as f:  # a process that is gone
                f.write(f"{p.pid}\n")
            self.assertIsNone(control.launcher_pid(run))


class StopFile(unittest.TestCase):
    def test_problem_by_mode(self):
        rows = [(None, None), (stat.S_IFREG | 0o644, None), (stat.S_IFDIR | 0o755, "a directory"),
                (stat.S_IFLNK | 0o777, "a symbolic link"), (stat.S_IFIFO | 0o644, "a named pipe"),
                (stat.S_IFSOCK | 0o755, "a socket"), (stat.S_IFCHR | 0o666, "a device"),
                (stat.S_IFBLK | 0o660, "a device")]
        for mode, want in rows:
            with self.subTest(mode=mode):
                self.assertEqual(control.stop_file_problem(mode), want)

    def test_check_stop_file(self):
        with tempfile.TemporaryDirectory() as run:
            stop = os.path.join(run, "STOP")
            self.assertIsNone(control.check_stop_file(run))
            open(stop, "w").close()  # a stop request: the ranks serve and remove it
            self.assertIsNone(control.check_stop_file(run))
            os.unlink(stop)
            os.mkdir(stop)
            msg = control.check_stop_file(run)
            self.assertTrue(msg.startswith(f"warning: {stop} is a directory, not a regular file: "
                                           f"no stop request"), msg)
            self.assertNotIn("\n", msg)
            os.rmdir(stop)
            os.mkfifo(stop)
            self.assertIn("a named pipe", control.check_stop_file(run))
            os.unlink(stop)
            s = socket.socket(socket.AF_UNIX)
            s.bind(stop)
            s.close()
            self.assertIn("a socket", control.check_stop_file(run))
            os.unlink(stop)
            os.symlink("nowhere", stop)  # a link, dangling or not, is no request either
            self.assertIn("a symbolic link", control.check_stop_file(run))


class Requests(unittest.TestCase):
    def test_parse_request(self):
        rows = [("stop", ("stop", None)), ("drain@b", ("drain", "b")), ("admit@n1.lab",
                ("admit", "n1.lab")), ("drain@", None), ("drain", None), ("stop@b", None),
                ("drain@-G", None), ("kill@b", None), (".drain@b.tmp", None)]
        for name, want in rows:
            with self.subTest(name=name):
                self.assertEqual(control.parse_request(name), want)

    def test_host_argument(self):
        with tempfile.TemporaryDirectory() as run:
            for host in ("", "a/b", "-G", "../x", "a b"):
                with self.subTest(host=host):
                    with self.assertRaises(InputError) as e:
                        control.request(run, "drain", host)
                    self.assertEqual(str(e.exception).split(": expected")[0],
                                     f"drain: \"{host}\"")
            with self.assertRaises(InputError) as e:  # a good name: no launcher runs
                control.request(run, "admit", "b")
            self.assertIn("no launcher runs this run", str(e.exception))
            self.assertEqual(os.listdir(run), [])


if __name__ == "__main__":
    unittest.main()
