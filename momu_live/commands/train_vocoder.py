"""``momu train vocoder``: train the fast iSTFT vocoder (Vocos-style) on music."""
from __future__ import annotations

from momu_live.commands import add_run_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "vocoder", help="train the fast iSTFT vocoder (live default) on music",
        description="Trains models/vocoder.py FastVocoder with log-mel L1 + multi-resolution STFT losses on random "
                    "crops. Writes OUT/vocoder_fast.safetensors+json (load with --vocoder-weights or copy to "
                    "models/weights/), OUT/train_state.*, OUT/log.json. --make-pack writes a compact int16 audio pack "
                    "from a DwM folder and/or music corpus folders (--corpus, from `momu data corpus`) and exits; "
                    "--evaluate reports a checkpoint's validation numbers on a pack or DwM folder.",
    )
    p.add_argument("--export", default=None, metavar="CKPT", help="write CKPT (e.g. runs/vocoder/vocoder_fast) as the shipped "
                   "fp16 weights models/weights/vocoder_fast (or --out) and exit")
    p.add_argument("--evaluate", nargs="+", default=None, metavar="CKPT", help="print the validation mel L1 / MR-STFT "
                   "of these checkpoints on --data (DwM val, and corpus_val per source for packs with a corpus) and exit")
    p.add_argument("--export-note", default="", help="with --export: a 'trained_on' note for the weights' JSON")
    p.add_argument("--data", default=None, help="an audio pack (.npz from --make-pack) or a DwM-format folder")
    p.add_argument("--make-pack", default=None, metavar="OUT.npz", help="write an int16 audio pack from --data (DwM folder) "
                   "and/or --corpus folders and exit")
    p.add_argument("--corpus", action="append", default=[], metavar="DIR", help="with --make-pack: a music corpus folder "
                   "(index.csv + wav/ from `momu data corpus`) whose tracks go to train/ (held-out tunes to corpus_val/); "
                   "repeatable or comma-separated")
    p.add_argument("--seconds-per-dance", type=float, default=28.0, help="with --make-pack: seconds of each training dance")
    p.add_argument("--pack-offset", type=float, default=8.0, help="with --make-pack: start second within each dance")
    p.add_argument("--corpus-seconds", type=float, default=30.0,
                   help="with --make-pack: cap per corpus track (a sounding excerpt near the middle)")
    p.add_argument("--corpus-tracks", type=int, default=0, help="with --make-pack: training tracks per corpus source "
                   "(seeded choice; 0: all)")
    p.add_argument("--corpus-val", type=int, default=4, help="with --make-pack: tunes per corpus source held out to corpus_val/")
    p.add_argument("--pack-max-mib", type=float, default=64.0, help="with --make-pack: refuse a larger pack (0: no limit)")
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
    from pathlib import Path

    from momu_live import MomuError
    from momu_live.models.train_vocoder import (PackConfig, TrainConfig, folder_kind, pack_manifest, pack_sources,
                                                pack_training_audio, train)
    from momu_live.models.training import resolve_device, run_args

    run = run_args(args)
    if args.export:
        from momu_live.models.train_vocoder import export_weights

        dst = None if args.out == "runs/vocoder" else args.out
        print(f"wrote {export_weights(args.export, dst, note=args.export_note)}")
        return 0
    corpora = [c for arg in args.corpus for c in arg.split(",") if c]
    if args.make_pack:
        if not args.data and not corpora:
            raise MomuError("--make-pack needs --data (a DwM folder) and/or --corpus (a music corpus folder)")
        if args.data and Path(args.data).is_dir() and folder_kind(args.data) == "corpus":  # --data is a corpus folder
            corpora, dwm = [args.data, *corpora], None
        else:
            dwm = args.data
        pcfg = PackConfig(seconds_per_dance=args.seconds_per_dance, offset_s=args.pack_offset,
                          corpus_seconds=args.corpus_seconds, corpus_tracks=args.corpus_tracks, corpus_val=args.corpus_val,
                          seed=args.seed, max_mib=args.pack_max_mib)
        out = pack_training_audio(args.make_pack, dwm=dwm, corpora=corpora, cfg=pcfg, progress=not args.no_progress)
        summary = {split: {src: {"tracks": d["tracks"], "hours": d["hours"]} for src, d in by.items()}
                   for split, by in pack_sources(out).items()}
        skipped = (pack_manifest(out) or {}).get("skipped", {})
        print(json.dumps({"wrote": str(out), "mib": round(out.stat().st_size / 2**20, 2), "sources": summary,
                          "skipped": skipped}))
        return 0
    if corpora:
        raise MomuError("--corpus only goes with --make-pack; pack the corpus, then train with --data PACK.npz")
    if not args.data:
        raise MomuError("--data is required (an audio pack from --make-pack or a DwM-format folder)")
    if args.evaluate:
        from momu_live.models.train_vocoder import evaluate_checkpoint

        for ckpt in args.evaluate:
            print(json.dumps(evaluate_checkpoint(ckpt, args.data, args.device)))
        return 0
    cfg = TrainConfig(size=args.size, steps=args.steps, batch=args.batch, segment=args.segment, lr=args.lr, warmup=args.warmup,
                      device=resolve_device(args.device), **run)
    last = train(args.data, args.out, cfg, resume=args.resume, progress=not args.no_progress, init=args.init)
    print(json.dumps(last))
    return 0
