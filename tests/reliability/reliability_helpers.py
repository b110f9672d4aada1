"""Helpers of the reliability tests: running `agsm` as a real process and killing it at a chosen moment."""
import subprocess
import sys
import time


def agsm_command(*args):
    return [sys.executable, "-m", "agsm.cli", *map(str, args)]


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 240) -> None:
    """SIGKILL `proc` as soon as ready() is true; fail if it ends (or the time runs out) first."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"the process ended before {what}: {proc.stderr.read() if proc.stderr else ''}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    proc.kill()
    proc.wait()
