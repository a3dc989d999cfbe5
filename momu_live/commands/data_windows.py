"""``momu data windows``: cut a corpus (DwM format, AIST++, a folder of dance videos) into aligned clips."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "windows",
        help="cut DwM / AIST++ / video-folder dances into aligned motion+audio clips (.npz)",
        description=(
            "Load a corpus, resample motion to the model rate (21.53 fps) and cut aligned windows on latent "
            "boundaries: motion float16 [N,T,18,3] (canonical, metres, y up) and audio int16 [N,T*1024] at 22.05 kHz, "
            "with names, start frames and the train/val split by dance. Video folders get their pose extracted once "
            "(MediaPipe) and cached."
        ),
    )
    p.add_argument("--data", required=True, help="corpus folder")
    p.add_argument("--format", default="auto", choices=("auto", "dwm", "aist", "videos"),
                   help="auto: index.csv -> dwm, keypoints3d/ -> aist, else a folder of videos")
    p.add_argument("--wav-dir", default=None, help="AIST++ music folder (default <data>/wavs or <data>/../wavs)")
    p.add_argument("--seconds", type=float, default=6.0, help="clip length in seconds (rounded down to whole latent frames)")
    p.add_argument("--hop", type=float, default=None, help="seconds between clip starts (default: --seconds, no overlap)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N dances")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--plot", default=None, metavar="PNG", help="also plot one clip: feet speed against the audio envelope")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.set_defaults(func=run)


def _detect(data) -> str:
    if (data / "index.csv").exists() and (data / "skeleton.json").exists():
        return "dwm"
    if (data / "keypoints3d").is_dir():
        return "aist"
    return "videos"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from momu_live import MomuError
    from momu_live.models import datasets as D
    from momu_live.models.timebase import DEFAULT_TIMEBASE

    data, out = Path(args.data), Path(args.out)
    if not data.is_dir():
        raise MomuError(f"--data {data} is not a folder")
    if out.exists() and not args.force:
        raise MomuError(f"{out} exists; pass --force to overwrite")
    if out.suffix != ".npz":
        raise MomuError(f"--out must end in .npz (got {out.name})")
    fmt = _detect(data) if args.format == "auto" else args.format
    val: set[str] = set()
    if fmt == "dwm":
        ids = D.dwm_ids(data)[: args.limit]
        pairs = D.load_dwm(data, ids)
        val = {p.name for p in D.split_pairs(pairs)[1]} if set(D.DWM_VALIDATION) <= set(ids) else set()
    elif fmt == "aist":
        pairs = D.load_aist(data, wav_dir=args.wav_dir)[: args.limit]
        try:
            val = set(D.aist_split(data, "crossmodal_val")) | set(D.aist_split(data, "crossmodal_test"))
        except MomuError:
            val = set()
    else:
        pairs = D.load_video_folder(data)[: args.limit]
    clips = D.make_clips(pairs, args.seconds, args.hop)
    if not clips:
        raise MomuError(f"no {args.seconds} s clip fits in any of the {len(pairs)} dances; use a shorter --seconds")
    tb = DEFAULT_TIMEBASE
    arrays = {
        "motion": np.stack([c.motion for c in clips]).astype(np.float16),  # (N, T, 18, 3)
        "wav": (np.clip(np.stack([c.wav for c in clips]), -1, 1) * 32767).astype(np.int16),  # (N, T * 1024)
        "names": np.array([c.name for c in clips]),
        "starts": np.array([c.start for c in clips], dtype=np.int64),
        "split": np.array(["val" if c.name in val else "train" for c in clips]),
        "sample_rate": np.int64(tb.sample_rate),
        "motion_rate": np.array(str(tb.motion_rate)),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        np.savez(f, **arrays)
    n_val = int((arrays["split"] == "val").sum())
    T = clips[0].motion.shape[0]
    print(f"{fmt}: {len(pairs)} dances -> {len(clips)} clips of {T} frames ({T / float(tb.motion_rate):.3f} s, "
          f"{T * 1024} samples); train {len(clips) - n_val}, val {n_val} -> {out}")
    print(f"{'dance':<32} {'seconds':>8} {'clips':>6} {'split':>6}")
    for p in pairs:
        n = sum(c.name == p.name for c in clips)
        print(f"{p.name:<32} {p.motion.seconds:>8.1f} {n:>6} {'val' if p.name in val else 'train':>6}")
    if args.plot:
        print(f"plot: {_plot_clip(clips[len(clips) // 2], args.plot)}")
    return 0


def _plot_clip(clip, path):
    """Feet speed of the clip against its audio RMS envelope, on one time axis."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from momu_live.models.skeleton import FEET
    from momu_live.models.timebase import DEFAULT_TIMEBASE

    tb = DEFAULT_TIMEBASE
    fps = float(tb.motion_rate)
    spf = tb.hop_length * tb.motion_per_mel
    t = np.arange(clip.motion.shape[0]) / fps
    speed = np.linalg.norm(np.diff(clip.motion[:, list(FEET)], axis=0), axis=-1).mean(-1) * fps  # (T-1,)
    rms = np.sqrt((clip.wav.reshape(-1, spf) ** 2).mean(-1))  # (T,) one value per motion frame
    fig, ax = plt.subplots(figsize=(11, 3.5))
    ax.plot(t[1:], speed, label="mean feet speed (m/s)")
    ax2 = ax.twinx()
    ax2.plot(t, rms, color="tab:orange", alpha=0.7, label="audio RMS")
    ax.set_xlabel(f"time in clip (s); clip starts at {clip.start / fps:.2f} s of {clip.name}")
    ax.set_ylabel("feet speed (m/s)")
    ax2.set_ylabel("audio RMS")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
