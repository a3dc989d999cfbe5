"""``momu train diffusion``: encode a pack with the frozen BiCoR-VAE once, then train the latent DiT."""
from __future__ import annotations

from momu_live.commands import add_run_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "diffusion", help="train the diffusion transformer (motion<->music, rectified flow)",
        description="Encodes PACK with the frozen VAE into OUT/latents.npz (once; reused on --resume), then trains "
                    "the DiT on random aligned crops (both directions, condition dropout for CFG). Writes "
                    "OUT/dit.safetensors+json (EMA weights), OUT/train_state.*, OUT/log.json.",
    )
    p.add_argument("--data", required=True, help="a pack (momu data pack), a DwM-format folder, or a latents.npz")
    p.add_argument("--vae", default=None, help="VAE checkpoint (default: shipped models/weights/vae)")
    p.add_argument("--size", default="small", help="DiT size: debug, small, base")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--clip", type=int, default=64, help="latent frames per training crop")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--encode-only", action="store_true", help="only write OUT/latents.npz")
    add_run_args(p, out="runs/dit", val_every=1000, ckpt_every=2000)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from momu_live import MomuError
    from momu_live.models import train_diffusion as td
    from momu_live.models.training import resolve_device, run_args

    run = run_args(args)
    if args.steps < 1:
        raise MomuError(f"--steps must be >= 1, got {args.steps}")
    resolve_device(args.device)
    out = Path(args.out)
    lat_path = out / "latents.npz"
    data = Path(args.data)
    if data.suffix == ".npz" and data.name != "pack.npz":
        lat = td.load_latents(data)
    elif lat_path.exists() and args.resume:
        lat = td.load_latents(lat_path)
    else:
        from momu_live.models.vae import load_bicor_vae

        if not data.exists():
            raise MomuError(f"--data {data} does not exist")
        import hashlib

        from momu_live.models.vae import default_weights_path

        vae = load_bicor_vae(args.vae, args.device)
        vpath = Path(args.vae).with_suffix(".safetensors") if args.vae else default_weights_path()
        vae.source_sha256 = hashlib.sha256(vpath.read_bytes()).hexdigest()
        lat = td.encode_pack(data, vae, args.device, progress=not args.no_progress)
        td.save_latents(lat, lat_path)
        print(f"latents: {lat_path} ({len(lat['ids'])} dances)")
    if args.encode_only:
        return 0
    cfg = td.TrainConfig(size=args.size, steps=args.steps, batch=args.batch, clip=args.clip, lr=args.lr, **run)
    meta = {"vae_sha256": str(lat.get("vae_sha256", ""))}
    path = td.train(lat, out, cfg, args.device, resume=args.resume, progress=not args.no_progress, meta=meta)
    print(f"checkpoint: {path}")
    return 0
