"""``momu eval vae``: reconstruction, alignment and speed figures of a BiCoR-VAE checkpoint."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "vae", help="evaluate a BiCoR-VAE: mel L1 (+ vocoded), MPJPE, bone error, cross-modal retrieval, throughput",
        description="Scores a BiCoR-VAE on the validation dances of a DwM-format folder or a pack (all dances when "
                    "the folder has none of the fixed validation dances). Retrieval: every motion clip (8 latent "
                    "frames = 0.74 s, hop 8) against its music clip and 31 others drawn from other times and dances of the "
                    "evaluated dances (_all keys: against every clip).",
    )
    p.add_argument("--data", required=True, help="DwM-format folder or pack")
    p.add_argument("--weights", default=None, help="checkpoint (default models/weights/vae.safetensors)")
    p.add_argument("--split", choices=("val", "train", "all"), default="val")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (throughput is measured with these)")
    p.add_argument("--candidates", type=int, default=32, help="music clips per motion clip in retrieval (>= 32)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the throughput test")
    p.add_argument("--no-vocoder", action="store_true", help="skip mel_l1_vocoded")
    p.add_argument("--vocoder", default="hifigan", choices=("hifigan", "fast", "griffinlim"),
                   help="vocoder for mel_l1_vocoded (default HiFi-GAN universal)")
    p.add_argument("--vocode-seconds", type=float, default=10.0, help="vocode the first S seconds of each dance")
    p.add_argument("--plot", default=None, help="write a PNG: original vs reconstructed mel and joint trajectories")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def load_vocoder_fn(name: str, device):
    """(callable mel (1, 80, N) -> wav, None) from models/vocoder.py, or (None, reason)."""
    try:
        from momu_live.models.vocoder import load_vocoder
    except ModuleNotFoundError:
        return None, "models/vocoder.py not available in this checkout"
    try:
        v = load_vocoder(name, device=device)
    except Exception as exc:  # weights missing, no network for the first conversion, ...
        return None, f"vocoder {name!r} could not be loaded: {exc}"
    import torch

    def call(mel):
        with torch.no_grad():
            return v(mel)

    return call, None


def run(args) -> int:
    import json
    import time

    import numpy as np
    import torch

    from momu_live import MomuError
    from momu_live.models.packing import load_dances
    from momu_live.models.train_vae import evaluate
    from momu_live.models.vae import load_bicor_vae, motion_features_torch

    torch.set_num_threads(args.threads)
    vae = load_bicor_vae(args.weights, args.device)
    dances = load_dances(args.data, progress=not args.json)
    if args.split != "all":
        sel = [d for d in dances if d.split == args.split]
        dances = sel or dances  # a folder without validation dances: all of it
    if not dances:
        raise MomuError(f"no dances in {args.data}")
    vocoder, reason = (None, "--no-vocoder") if args.no_vocoder else load_vocoder_fn(args.vocoder, args.device)
    from momu_live.models.timebase import DEFAULT_TIMEBASE, time_to_frame

    res = evaluate(vae, dances, args.device, vocoder=vocoder, candidates=args.candidates,
                   vocode_frames=max(8, time_to_frame(args.vocode_seconds, DEFAULT_TIMEBASE.mel_rate)))
    res["vocoder"] = args.vocoder if vocoder is not None else None
    if vocoder is None:
        res["mel_l1_vocoded_reason"] = reason
    res["dances"] = [d.name for d in dances]
    # throughput: encode + decode of `seconds` of music and motion, CPU threads as given
    longest = max(dances, key=lambda d: d.n_latent)
    n_lat = int(round(args.seconds * DEFAULT_TIMEBASE.sample_rate / DEFAULT_TIMEBASE.samples_per_latent))  # latent frames in `seconds`
    reps = -(-n_lat // longest.n_latent)
    mel = torch.from_numpy(np.tile(longest.mel.astype(np.float32), (1, reps))[:, : 8 * n_lat])[None].to(args.device)
    joints = torch.from_numpy(np.tile(longest.motion.astype(np.float32), (reps, 1, 1))[: 2 * n_lat])[None].to(args.device)
    with torch.no_grad():
        feats = motion_features_torch(joints)
        vae.decode_music(vae.encode_music(mel[..., :64])[0])  # warm-up
        times = []
        for _ in range(3):  # best of 3: the figure is the model's speed, not the machine's load
            t0 = time.perf_counter()
            vae.decode_music(vae.encode_music(mel)[0])
            vae.decode_motion(vae.encode_motion(feats)[0])
            times.append(time.perf_counter() - t0)
        dt = min(times)
    res["throughput_x_realtime"] = args.seconds / dt
    res["throughput_seconds"] = args.seconds
    res["threads"] = args.threads
    res["weights"] = str(args.weights or "models/weights/vae.safetensors")
    if args.plot:
        _plot(vae, dances[0], args.plot, args.device)
        res["plot"] = args.plot
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>24}: {v:.4f}" if isinstance(v, float) else f"{k:>24}: {v}")
    return 0


def _plot(vae, dance, path, device):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from momu_live.models.vae import features_to_joints_torch, motion_features_torch

    n = min(dance.n_latent, 64)
    mel = torch.from_numpy(dance.mel[:, : 8 * n].astype("float32"))[None].to(device)
    joints = torch.from_numpy(dance.motion[: 2 * n].astype("float32"))[None].to(device)
    with torch.no_grad():
        rec = vae.decode_music(vae.encode_music(mel)[0])[0].cpu()
        feats = motion_features_torch(joints)
        jr = features_to_joints_torch(vae.decode_motion(vae.encode_motion(feats)[0]))[0].cpu()
        jt = features_to_joints_torch(feats)[0].cpu()
    fig, ax = plt.subplots(3, 1, figsize=(10, 8))
    ax[0].imshow(mel[0].cpu(), origin="lower", aspect="auto")
    ax[0].set_title(f"{dance.name}: log-mel")
    ax[1].imshow(rec, origin="lower", aspect="auto")
    ax[1].set_title("BiCoR-VAE reconstruction")
    for j, name in ((6, "l_wrist"), (12, "l_ankle")):
        ax[2].plot(jt[:, j, 1], label=f"{name} y")
        ax[2].plot(jr[:, j, 1], "--", label=f"{name} y (rec)")
    ax[2].set_title("root-relative joint height (m)")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
