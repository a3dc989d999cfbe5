"""CLI subcommands: one module per command, each with ``register(subparsers)``."""


def add_run_args(p, out: str, val_every: int, ckpt_every: int) -> None:
    """The flags every ``momu train <what>`` shares (seed, schedule of validation/checkpoints,
    wall-time cap, output folder and resume, threads, progress)."""
    p.add_argument("--val-every", type=int, default=val_every, help="validate every N steps")
    p.add_argument("--ckpt-every", type=int, default=ckpt_every, help="checkpoint every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop (with a checkpoint) after this wall time; 0: no limit")
    p.add_argument("--out", default=out, help=f"run folder (default {out})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
