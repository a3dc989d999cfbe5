"""The ``momu`` console script.

Each subcommand lives in ``momu_live/commands/<name>.py`` and exposes
``register(subparsers)``; registration must stay cheap (no torch/mediapipe import), the heavy
imports happen inside the handler.
"""
from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        if args.command in GROUPS:
            parser.parse_args([args.command, "--help"])
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
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
