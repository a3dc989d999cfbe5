"""``momu train vocoder``: train the fast iSTFT vocoder (Vocos-style) on music."""
from __future__ import annotations

from momu_live.commands import add_run_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "vocoder", help="train the fast iSTFT vocoder (live default) on music",
        description="Trains models/vocoder.py FastVocoder with log-mel L1 + multi-resolution STFT losses on random "
                    "crops. Writes OUT/vocoder_fast.safetensors+json (load with --vocoder-weights or copy to "
                    "models/weights/), OUT/train_state.*, OUT/log.json. --make-pack writes a compact int16 audio pack "
                    "from a DwM folder (for the GPU box) and exits.",
    )
    p.add_argument("--export", default=None, metavar="CKPT", help="write CKPT (e.g. runs/vocoder/vocoder_fast) as the shipped "
                   "fp16 weights models/weights/vocoder_fast (or --out) and exit")
    p.add_argument("--data", default=None, help="an audio pack (.npz from --make-pack) or a DwM-format folder")
    p.add_argument("--make-pack", default=None, metavar="OUT.npz", help="write an int16 audio pack from --data (DwM) and exit")
    p.add_argument("--seconds-per-dance", type=float, default=28.0, help="with --make-pack: seconds of each training dance")
    p.add_argument("--pack-offset", type=float, default=8.0, help="with --make-pack: start second within each dance")
    p.add_argument("--size", default="small", help="model size: debug, small (shipped), base")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--segment", type=int, default=128, help="mel frames per training crop")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--init", default=None, help="start from this vocoder_fast checkpoint")
    add_run_args(p, out="runs/vocoder", val_every=500, ckpt_every=1000)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    import torch

    from momu_live import MomuError
    from momu_live.models.train_vocoder import TrainConfig, pack_dwm_audio, train

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.export:
        from momu_live.models.train_vocoder import export_weights

        dst = None if args.out == "runs/vocoder" else args.out
        print(f"wrote {export_weights(args.export, dst)}")
        return 0
    if not args.data:
        raise MomuError("--data is required (an audio pack from --make-pack or a DwM-format folder)")
    if args.make_pack:
        out = pack_dwm_audio(args.data, args.make_pack, seconds_per_dance=args.seconds_per_dance, offset_s=args.pack_offset, progress=not args.no_progress)
        print(f"wrote {out}")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise MomuError("--device cuda but no CUDA device is available; use --device cpu")
    cfg = TrainConfig(size=args.size, steps=args.steps, batch=args.batch, segment=args.segment, lr=args.lr, warmup=args.warmup,
                      val_every=args.val_every, ckpt_every=args.ckpt_every, seed=args.seed,
                      max_minutes=args.max_minutes, device=args.device)
    last = train(args.data, args.out, cfg, resume=args.resume, progress=not args.no_progress, init=args.init)
    print(json.dumps(last))
    return 0
