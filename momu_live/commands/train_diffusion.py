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
    p.add_argument("--warmup", type=int, default=500, help="linear warm-up steps (fine-tunes: fewer)")
    p.add_argument("--encode-only", action="store_true", help="only write OUT/latents.npz")
    p.add_argument("--motion-vae", default=None, metavar="CKPT",
                   help="rig motion VAE checkpoint (momu train rig-vae): motion latents from it on the rig cache (--rig) "
                        "instead of the BiCoR-VAE's motion half")
    p.add_argument("--rig", default="cache/rig", help="rig cache folder for --motion-vae (momu data rig; default cache/rig)")
    p.add_argument("--rhythm", action="store_true",
                   help="add the rhythm control (beat / bar phase and tempo of the true music's beat grid per latent "
                        "frame, models/rhythm_control.py); --data must be a DwM folder")
    p.add_argument("--corpus", default=None, metavar="LATENTS",
                   help="music-only corpus latents (momu data corpus --encode): music pre-training crops mixed into "
                        "every step (motion condition dropped); rhythm control when both files have one")
    p.add_argument("--corpus-frac", type=float, default=0.5, help="corpus crops per step as a fraction of --batch")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="fine-tune from this DiT checkpoint (e.g. models/weights/dit); new modules start at zero")
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
        rig = None
        if args.motion_vae:
            from momu_live.models.rig_vae import load_rig_vae

            rig_vae = load_rig_vae(args.motion_vae, args.device)
            rig_vae.source_sha256 = hashlib.sha256(Path(args.motion_vae).with_suffix(".safetensors").read_bytes()).hexdigest()
            if not (Path(args.rig) / "index.json").exists():
                raise MomuError(f"no rig cache in {args.rig}; make it with `momu data rig --data DWM --out {args.rig}`")
            rig = (rig_vae, args.rig)
        lat = td.encode_pack(data, vae, args.device, progress=not args.no_progress, rig=rig, rhythm=args.rhythm)
        td.save_latents(lat, lat_path)
        print(f"latents: {lat_path} ({len(lat['ids'])} dances)")
    if args.encode_only:
        return 0
    cfg = td.TrainConfig(size=args.size, steps=args.steps, batch=args.batch, clip=args.clip, lr=args.lr,
                         warmup=args.warmup, init=args.init or "", corpus_frac=args.corpus_frac, **run)
    meta = {"vae_sha256": str(lat.get("vae_sha256", "")), "motion_kind": str(lat.get("motion_kind", "position")),
            "motion_vae_sha256": str(lat.get("motion_vae_sha256", "")), "rhythm_control": td.has_rhythm(lat)}
    corpus = None
    if args.corpus:
        corpus = td.load_latents(args.corpus)
        meta["corpus"] = {"path": str(args.corpus), "tracks": int(len(corpus["ids"])), "frac": args.corpus_frac}
    path = td.train(lat, out, cfg, args.device, resume=args.resume, progress=not args.no_progress, meta=meta,
                    corpus=corpus)
    print(f"checkpoint: {path}")
    return 0
