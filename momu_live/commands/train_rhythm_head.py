"""``momu train rhythm-head``: fit the rhythm head (models/rhythm_head.py) on a latents file with a rhythm control."""
from __future__ import annotations

from momu_live.commands import add_run_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rhythm-head", help="train the rhythm head (the music's beat / bar phase from the dancer's motion latents)",
        description="Trains models/rhythm_head.py on LATENTS (momu train diffusion --data DWM --rhythm --encode-only "
                    "[--motion-vae CKPT]): motion latents in, the true music's beat and bar phase (sin, cos) out. "
                    "Validates the mean beat-phase error on the validation dances (0.25 beats = chance). Writes "
                    "OUT/rhythm_head.safetensors+json (the best validation), OUT/train_state.*, OUT/log.json.",
    )
    p.add_argument("--data", required=True, help="latents file with a rhythm control (OUT/latents.npz)")
    p.add_argument("--size", default="small", help="debug or small")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--clip", type=int, default=64, help="latent frames per training crop")
    p.add_argument("--lr", type=float, default=2e-3)
    add_run_args(p, out="runs/rhythm_head", val_every=250, ckpt_every=250)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from momu_live.models.rhythm_head import TrainConfig, train_head
    from momu_live.models.train_diffusion import load_latents
    from momu_live.models.training import resolve_device, run_args

    run = run_args(args)
    resolve_device(args.device)
    lat = load_latents(args.data)
    cfg = TrainConfig(size=args.size, steps=args.steps, batch=args.batch, clip=args.clip, lr=args.lr, **run)
    last = train_head(lat, args.out, cfg, args.device, args.resume, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in last.items() if k != "per_dance"}, default=float))
    return 0
