"""The ``momu`` entry point as a process, ``main()`` called repeatedly in one process, the live start-up line."""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path


def _console_script() -> list[str]:
    exe = Path(sys.executable).with_name("momu")  # the installed console script (pyproject [project.scripts])
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "momu_live.cli"]


def test_entry_point_process_help_and_exit_status():
    r = subprocess.run(_console_script() + ["--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for cmd in ("demo", "pose", "generate", "live", "eval", "train", "bench", "data", "presets", "devices"):
        assert cmd in r.stdout
    r = subprocess.run(_console_script() + ["presets", "show", "nope"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown preset 'nope'") and r.stdout == ""
    r = subprocess.run(_console_script() + ["generate", "joint"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "required" in r.stderr  # argparse usage error


def test_main_returns_statuses_and_leaves_the_process_as_it_was(momu_cli):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for _ in range(2):
        assert momu_cli("--version").returncode == 0
        r = momu_cli("generate", "joint")
        assert r.returncode == 2 and "--out-dir" in r.stderr
        r = momu_cli("eval")  # a group without a command: its help
        assert r.returncode == 0 and "beats" in r.stdout
        assert momu_cli("presets").returncode == 0
    assert root.handlers == handlers and root.level == level


def test_live_start_up_line_names_the_real_osc_port(momu_cli):
    sigint = signal.getsignal(signal.SIGINT)
    common = ("live", "--source", "none", "--mode", "beats", "--duration", "0.3", "--control-port", "0")
    r = momu_cli(*common, "--preset", "touchdesigner")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stderr.splitlines() if "momu live:" in x)
    assert "OSC to 127.0.0.1:7000," in line and "preset port" not in line, line
    r = momu_cli(*common, "--osc-port", "9123")
    line = next(x for x in r.stderr.splitlines() if "momu live:" in x)
    assert r.returncode == 0 and "OSC to 127.0.0.1:9123," in line, line
    assert signal.getsignal(signal.SIGINT) is sigint  # the daemon's signal handlers are put back
