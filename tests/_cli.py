"""``momu`` in the test process: ``run_momu(*args, cwd=None, setenv=None) -> CliResult``.

``momu_live.cli.main`` is the console script's own entry point: the same argument parsing, handlers,
messages and exit status, without the seconds of interpreter and import start-up a subprocess costs.
Keep subprocesses for what is about the process itself (entry point, signals, exit on kill, an
environment read at library load such as JACK's).
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CliResult:
    """What a test reads of a ``momu`` run (the fields of ``subprocess.CompletedProcess`` it used)."""

    returncode: int
    stdout: str
    stderr: str


def run_momu(*args, cwd: str | Path | None = None, setenv: dict[str, str] | None = None) -> CliResult:
    """``momu ARGS`` in this process: stdout/stderr captured, cwd and environment put back afterwards."""
    from momu_live.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_env = os.getcwd(), {k: os.environ.get(k) for k in (setenv or {})}
    try:
        os.environ.update({k: str(v) for k, v in (setenv or {}).items()})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([str(a) for a in args])
    finally:
        os.chdir(old_cwd)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return CliResult(rc, out.getvalue(), err.getvalue())
