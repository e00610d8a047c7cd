"""codes — the launcher's exit codes (those of tessera, docs/exit-codes.md, plus 130), the
signals that mean a crash, the error that ends the launcher with exit 2, and where it lives."""

import os
import signal

EXIT_OK, EXIT_SYSTEM, EXIT_INPUT, EXIT_INTERNAL, EXIT_PEER_LOST = 0, 1, 2, 70, 75
EXIT_INTERRUPTED = 130  # stopped at once: a second SIGINT/SIGTERM to the launcher

CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
                           signal.SIGABRT})

# the checkout: scripts/tessera_launch/codes.py -> the repository root
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
# the entry point, which every host runs for its cleanup (`launch host-cleanup`)
LAUNCH_SCRIPT = os.path.join(ROOT, "scripts", "launch")


class InputError(Exception):
    """bad input to the launcher itself: one line, exit 2"""
