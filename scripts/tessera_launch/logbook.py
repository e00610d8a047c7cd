"""logbook — every launcher line goes to stderr and RUN_DIR/launch/launch.log with a timestamp;
events also go to RUN_DIR/launch/events.jsonl as records with a Unix time `t`."""

import json
import os
import sys
import time


def now():
    return time.time()


def stamp(t=None):
    t = now() if t is None else t
    return time.strftime("%H:%M:%S", time.localtime(t)) + ".%03d" % int((t % 1) * 1000)


class Logbook:
    def __init__(self):
        self.log_file = None
        self.events = None

    def open(self, launch_dir):
        self.log_file = open(os.path.join(launch_dir, "launch.log"), "a")
        self.events = open(os.path.join(launch_dir, "events.jsonl"), "a")

    def __call__(self, msg, event=None, **fields):
        t = now()
        line = f"launch {stamp(t)}: {msg}"
        print(line, file=sys.stderr, flush=True)
        if self.log_file:
            self.log_file.write(line + "\n")
            self.log_file.flush()
        if event and self.events:
            rec = {"t": round(t, 3), "event": event}
            rec.update(fields)
            self.events.write(json.dumps(rec) + "\n")
            self.events.flush()

    def close(self):
        for f in (self.log_file, self.events):
            if f:
                f.close()
        self.log_file = self.events = None
