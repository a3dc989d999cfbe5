"""``momu train vae``: train BiCoR-VAE (stage 1 music VAE, stage 2 motion VAE + rhythmic contrastive loss)."""
from __future__ import annotations

from momu_live.commands import add_run_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "vae", help="train BiCoR-VAE (aligned music/motion latents)",
        description="Stage 1 trains the music VAE (L1 + multi-resolution spectral + KL + adversarial loss on mels); "
                    "stage 2 the motion VAE against the frozen music encoder (positions + velocities + KL + rhythmic "
                    "contrastive loss). Writes OUT/vae.safetensors+json, OUT/train_state.*, OUT/log.json. Runs under "
                    "torchrun (DDP) when launched so.",
    )
    p.add_argument("--stage", choices=("1", "2", "both"), default="both")
    p.add_argument("--data", required=True, help="a pack (momu data pack) or a DwM-format folder")
    p.add_argument("--size", default="small", help="model size: debug, small (CPU default), base (GPU)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=2000, help="steps per stage")
    p.add_argument("--steps2", type=int, default=None, help="stage-2 steps with --stage both (default --steps)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--clip", type=int, default=32, help="latent frames per training crop")
    p.add_argument("--no-contrastive", action="store_true", help="stage 2 without the rhythmic contrastive loss (ablation)")
    p.add_argument("--contrastive-weight", type=float, default=0.2)
    p.add_argument("--adv-start", type=int, default=500)
    p.add_argument("--init", default=None, help="start from this vae checkpoint (e.g. a stage-1 run's OUT/vae)")
    p.add_argument("--corpus", default=None, metavar="DIR",
                   help="stage 1: also train the music VAE on this music corpus (momu data corpus --out DIR; "
                        "docs/corpus.md); its held-out tunes add corpus_val_mel_l1 to the validation")
    p.add_argument("--corpus-frac", type=float, default=1.0,
                   help="with --corpus: corpus crops per step as a fraction of --batch (added to the dances' crops)")
    p.add_argument("--corpus-hours", type=float, default=None,
                   help="with --corpus: read at most this many hours of it (a seeded random draw of tracks; memory: "
                        "about 0.1 GB per hour)")
    add_run_args(p, out="runs/vae", val_every=250, ckpt_every=500)
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from dataclasses import replace
    from pathlib import Path

    from momu_live import MomuError
    from momu_live.models.packing import load_dances
    from momu_live.models.train_vae import TrainConfig, train
    from momu_live.models.training import resolve_device, run_args

    run = run_args(args)
    resolve_device(args.device)
    dances = load_dances(args.data, progress=not args.no_progress)
    tr = [d for d in dances if d.split == "train"]
    va = [d for d in dances if d.split == "val"]
    if not tr:
        raise MomuError(f"{args.data} has no training dances")
    corpus = corpus_val = None
    if args.corpus:
        if args.stage == "2":
            raise MomuError("--corpus trains the music VAE: use it with --stage 1 or both")
        from momu_live.models.corpus import corpus_mels

        corpus, corpus_val = [], []
        for _, mel, split in corpus_mels(args.corpus, progress=not args.no_progress, max_hours=args.corpus_hours):
            (corpus_val if split == "val" else corpus).append(mel)
        if not corpus:
            raise MomuError(f"{args.corpus} has no training tracks")
    base = TrainConfig(size=args.size, steps=args.steps, batch=args.batch, lr=args.lr, clip_latent=args.clip,
                       contrastive=not args.no_contrastive, contrastive_weight=args.contrastive_weight,
                       adv_start=args.adv_start, corpus_frac=args.corpus_frac if args.corpus else 0.0, **run)
    out = Path(args.out)
    stages = [1, 2] if args.stage == "both" else [int(args.stage)]
    init = args.init
    figures = {}
    for stage in stages:
        cfg = replace(base, stage=stage, steps=(args.steps2 or args.steps) if stage == 2 and args.stage == "both" else args.steps)
        sub = out / f"stage{stage}" if args.stage == "both" else out
        if stage == 2 and args.stage == "both":
            init = str(out / "stage1" / "vae")
        figures = train(cfg, tr, va, sub, device=args.device, resume=args.resume, init=init,
                        progress=not args.no_progress, corpus=corpus if stage == 1 else None,
                        corpus_val=corpus_val if stage == 1 else None)
    print(json.dumps(figures))
    return 0
