"""launch_id — TESSERA_LAUNCH_ID=<run_dir>:<attempt>:<launcher pid>, set in every rank of an
attempt. The cleanup kills the processes of a run by it: every attempt's and every launcher's,
but only of that very run directory (a run "exp" must never touch a run "exp:v2")."""

VAR = "TESSERA_LAUNCH_ID"


def make(run_dir, attempt, pid):
    return f"{run_dir}:{attempt}:{pid}"


def parse(value):
    """(run_dir, attempt, pid), or None when `value` is not a launch id (the run directory may
    itself hold ':'; the last two fields are whole numbers)"""
    parts = value.rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


def same_run(value, run_dir):
    """does the launch id `value` belong to the run in `run_dir`?"""
    p = parse(value)
    return p is not None and p[0] == run_dir


def from_environ(data):
    """the launch id in a process's environment (/proc/PID/environ bytes), or None"""
    key = VAR.encode() + b"="
    for v in data.split(b"\0"):
        if v.startswith(key):
            return v[len(key):].decode("utf-8", "surrogateescape")
    return None
