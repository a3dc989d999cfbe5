"""The ``momu`` console script.

Each subcommand lives in ``momu_live/commands/<name>.py`` and exposes
``register(subparsers)``; registration must stay cheap (no torch/mediapipe import), the heavy
imports happen inside the handler.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys

from momu_live import MomuError, __version__

# Order shown in `momu --help`.  Plain commands: momu_live/commands/<name>.py with register().
COMMANDS = ["demo", "pose", "generate", "live", "devices", "presets"]
# Command groups: `momu <group> <name>` where each <name> is a module
# momu_live/commands/<group>_<name>.py with register(subparsers) (so features land independently).
GROUPS = {
    "eval": "score motion/music pairs, datasets and models",
    "train": "train the VAE, diffusion model and vocoder",
    "bench": "speed and memory benchmarks (tables, --json)",
    "data": "prepare corpora and training arrays",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="momu",
        description="momu-live: beat-synchronous motion<->music generation, live.",
    )
    parser.add_argument("--version", action="version", version=f"momu-live {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"momu_live.commands.{name}")
        except ModuleNotFoundError as exc:  # command not built yet in this checkout
            if exc.name == f"momu_live.commands.{name}":
                continue
            raise
        mod.register(sub)
    for group, help_text in GROUPS.items():
        gp = sub.add_parser(group, help=help_text, description=help_text)
        gsub = gp.add_subparsers(dest=f"{group}_command", metavar="WHAT")
        for name in _group_members(group):
            importlib.import_module(f"momu_live.commands.{group}_{name}").register(gsub)
    return parser


def _group_members(group: str) -> list[str]:
    import pkgutil

    import momu_live.commands as pkg

    prefix = f"{group}_"
    return sorted(m.name[len(prefix):] for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith(prefix))


class _StderrHandler(logging.StreamHandler):
    """Log records to whatever ``sys.stderr`` is when they are emitted (in-process callers may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler assigns it; the property always answers sys.stderr
        pass


@contextlib.contextmanager
def _process_state(verbose: bool):
    """What a command may change for its process (root log level and handler, torch threads, SIGINT/SIGTERM
    handlers), put back afterwards so that ``main()`` can be called again in the same process."""
    import signal
    import threading

    root = logging.getLogger()
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    main_thread = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        for s, h in handlers.items():
            if h is not None and signal.getsignal(s) is not h:
                signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    """Run ``momu ARGS`` and return its exit status (0 ok, 2 bad input or usage, 130 interrupted).

    Safe to call repeatedly in one process (tests do): argparse's exits become return values and
    the process-wide settings a command touches are restored (``_process_state``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (argparse printed them)
        return _exit_code(exc)
    with _process_state(args.verbose):
        if not getattr(args, "func", None):
            if args.command in GROUPS:
                try:
                    parser.parse_args([args.command, "--help"])
                except SystemExit as exc:
                    return _exit_code(exc)
            parser.print_help()
            return 0 if args.command is None else 2
        try:
            rc = args.func(args)
        except MomuError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except SystemExit as exc:  # a sub-parser's usage error inside a handler
            return _exit_code(exc)
        return int(rc or 0)


def _exit_code(exc: SystemExit) -> int:
    """The status ``sys.exit`` would give the process for ``exc`` (a message is printed and means 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
