"""``momu train rig-vae``: train the prototype rig motion VAE (models/rig_vae.py) on the rig cache (``momu data rig``)."""
from __future__ import annotations

from momu_live.commands import add_run_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rig-vae", help="train the rig motion VAE (rig features -> latents at the latent rate -> FK positions)",
        description="Trains models/rig_vae.py on the rig cache written by `momu data rig` (cache/rig: features, bones, "
                    "train stats): feature reconstruction + FK position / velocity / acceleration losses + contact BCE "
                    "+ foot-skating + KL; validates the VAE copy of the validation dances (MPJPE, jitter, bone-length SD, "
                    "skating, kinetic FD; with --data also motion-to-music clip retrieval). --contrastive-weight adds "
                    "BiCoR-VAE's rhythmic contrastive stage against the music VAE. Writes OUT/rig_vae.safetensors+json, OUT/train_state.*, OUT/log.json.",
    )
    p.add_argument("--rig", default="cache/rig", help="rig cache folder (momu data rig --out; default cache/rig)")
    p.add_argument("--data", default=None,
                   help="DwM-format folder: fit the rig cache on the fly (momu data rig) when --rig has none")
    p.add_argument("--size", default="small", help="model size: debug, small (CPU default), base")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip", type=int, default=64, help="latent frames per training crop")
    p.add_argument("--kl-weight", type=float, default=1e-4)
    p.add_argument("--heading-weight", type=float, default=2.0,
                   help="weight of the integrated heading error (rad) over a crop: heading drift of long copies")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="start from this rig-VAE checkpoint (fine-tuning, e.g. models/weights/motion_vae); its feature "
                        "and latent statistics come with it")
    p.add_argument("--contrastive-weight", type=float, default=0.0,
                   help="> 0: the rhythmic contrastive stage of BiCoR-VAE (MoMu-Diffusion Eq. 3-4) against the frozen "
                        "music VAE's latents of the same times (needs --data for the music; 0: off)")
    p.add_argument("--music-vae", default=None, metavar="CKPT",
                   help="the BiCoR-VAE whose music latents the contrastive stage and the retrieval use "
                        "(default: the shipped models/weights/vae)")
    p.add_argument("--val-seconds", type=float, default=30.0, help="first N s of each validation dance")
    p.add_argument("--evaluate", default=None, metavar="CKPT",
                   help="no training: the VAE-copy table of this checkpoint (e.g. runs/rig_vae/rig_vae) on the validation "
                        "dances against real dances, the rig fit, the position VAE's copy and a frozen pose (needs --data); "
                        "writes OUT/copy_eval.json and OUT/copy_eval.md")
    p.add_argument("--plot", default=None, metavar="PNG", help="with --evaluate: stick figures real vs copies")
    p.add_argument("--export", default=None, metavar="CKPT",
                   help="no training: write CKPT as the pipeline's motion VAE at --out (e.g. models/weights/motion_vae): "
                        "latent statistics and the training dances' median bone lengths (the generated dances' "
                        "skeleton) recomputed from the rig cache, fp32 weights")
    add_run_args(p, out="runs/rig_vae", val_every=500, ckpt_every=500)
    p.set_defaults(func=run)


def _fit_cache(data: str, out: str) -> None:
    import argparse

    from momu_live.commands import data_rig

    parser = argparse.ArgumentParser(prog="momu data")
    data_rig.register(parser.add_subparsers())
    args = parser.parse_args(["rig", "--data", data, "--out", out])
    args.func(args)


def run(args) -> int:
    import json
    from pathlib import Path

    from momu_live import MomuError

    from momu_live.models.train_rig_vae import TrainConfig, load_rig_cache, train
    from momu_live.models.training import resolve_device, run_args

    run = run_args(args)
    resolve_device(args.device)
    if not (Path(args.rig) / "index.json").exists() and args.data:
        print(f"no rig cache in {args.rig}: fitting it with `momu data rig --data {args.data} --out {args.rig}`", flush=True)
        _fit_cache(args.data, args.rig)
    dances, stats = load_rig_cache(args.rig)
    if args.export:
        from momu_live.models.train_rig_vae import export_for_pipeline

        path = export_for_pipeline(args.export, dances, args.out, args.device)
        print(f"motion VAE: {path}")
        return 0
    if args.evaluate:
        return _evaluate(args, dances)
    cfg = TrainConfig(size=args.size, steps=args.steps, batch=args.batch, lr=args.lr, clip_latent=args.clip,
                      kl_weight=args.kl_weight, heading_weight=args.heading_weight, val_seconds=args.val_seconds,
                      contrastive_weight=args.contrastive_weight, **run)
    music_vae = None
    if args.contrastive_weight > 0 and not args.data:
        raise MomuError("--contrastive-weight needs the dances' music: pass --data (the DwM-format folder)")
    if args.data:  # the music for the contrastive stage and the retrieval figures
        from momu_live.models.train_rig_vae import attach_music

        dances = attach_music(dances, args.data)
        from momu_live.models.vae import load_bicor_vae

        music_vae = load_bicor_vae(args.music_vae, args.device).eval()  # None: the shipped one
    figures = train(cfg, dances, stats, args.out, device=args.device, resume=args.resume, progress=not args.no_progress,
                    init=args.init, music_vae=music_vae)
    print(json.dumps(figures, default=float))
    return 0


def _evaluate(args, dances) -> int:
    import json
    from pathlib import Path

    from momu_live import MomuError
    from momu_live.models.rig_vae import load_rig_vae
    from momu_live.models.train_rig_vae import copy_table, plot_copy, table_markdown

    if not args.data:
        raise MomuError("--evaluate compares against the real dances: pass --data (a DwM-format folder)")
    vae = load_rig_vae(args.evaluate, args.device)
    res = copy_table(vae, dances, args.data, args.val_seconds, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = table_markdown(res["rows"])
    (out / "copy_eval.md").write_text(md)
    (out / "copy_eval.json").write_text(json.dumps({k: v for k, v in res.items() if k != "fig"}, indent=1, default=float))
    if args.plot:
        plot_copy(res["fig"], args.plot)
    print(md)
    return 0
