"""py-libp2p's routine noise stays at DEBUG; its stray top-level packages are never imported.

Both run in a child process (noisy_session.py) with plain ``logging.basicConfig`` on stderr, as
the CLI would: pytest's own log capture attaches handlers even to loggers that do not propagate,
so it cannot show what an operator would see.
"""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("noisy_session.py")
REPO = Path(__file__).resolve().parents[3]


def run_session(level):
    env = {k: v for k, v in os.environ.items() if k != "LIBP2P_DEBUG"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), level],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_routine_events_are_logged_at_debug_only():
    stdout, stderr = run_session("INFO")
    assert stderr == ""
    # The libp2p wheel's top-level examples, docs and interop packages were never imported.
    assert stdout.strip() == "[]"

    _, stderr = run_session("DEBUG")
    relayed = [line for line in stderr.splitlines() if line.startswith("DEBUG:gridnode.net.libp2p")]
    assert relayed, "py-libp2p's records are kept, at DEBUG"
    assert not any(
        line.startswith(("WARNING", "ERROR", "CRITICAL")) for line in stderr.splitlines()
    )
