"""``momu data rig``: fit the rig (models/rig.py) to every dance of a DwM-format folder; compact per-dance features."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rig",
        help="fit the rig (root trajectory + 6-D joint rotations + foot contacts) to DwM dances; per-dance .npz features",
        description=(
            "For each dance of a DwM-format folder: canonical joints, resampled to the model rate (21.53 fps; "
            "--native keeps the source rate), inverse kinematics (analytic swing init + Adam refinement, models/rig.py), "
            "written as OUT/<id>.npz (features float32 [T, 86], bones [17], start, fps, meta: load with "
            "momu_live.models.rig.load_rig). OUT/index.json holds the config, the train/val split, each fit's error "
            "(MPJPE of the rig's FK against the input joints) and feature normalisation stats of the train dances."
        ),
    )
    p.add_argument("--data", required=True, help="DwM-format folder (index.csv, skeleton.json, <id>/motion.npy, meta.json)")
    p.add_argument("--out", default="cache/rig", help="output folder (default cache/rig, git-ignored)")
    p.add_argument("--ids", nargs="*", default=None, help="only these dances")
    p.add_argument("--split", choices=("train", "val"), default=None, help="only the train or the validation dances")
    p.add_argument("--native", action="store_true", help="fit at the source frame rate instead of the model rate")
    p.add_argument("--frames", type=int, default=None, help="only the first N frames of each dance (quick checks)")
    p.add_argument("--iters", type=int, default=150, help="refinement steps (0: analytic IK only)")
    p.add_argument("--mirror", action="store_true",
                   help="also fit each training dance's mirror image (left <-> right, skeleton.mirror) as <id>_mirror "
                        "(split train, 'mirror_of' in the index): augmentation for the rig VAE and the DiT")
    p.add_argument("--plot", default=None, metavar="PNG", help="stick-figure comparison (input vs FK of the fit) of --plot-dance")
    p.add_argument("--plot-dance", default=None, help="dance for --plot (default: the first fitted validation dance)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _load_canonical(root, did, names):
    import json

    import numpy as np

    from momu_live.models.motion import Motion
    from momu_live.models.skeleton import to_canonical

    meta = json.loads((root / did / "meta.json").read_text())
    joints = np.load(root / did / "motion.npy").astype(np.float32)  # (T, 23, 3)
    m = Motion(joints=joints, fps=float(meta["fps"]), joint_names=tuple(names), meta={"source": "dwm", "id": did})
    return to_canonical(m), meta.get("genre", "")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time
    from pathlib import Path

    import numpy as np

    from momu_live import MomuError
    from momu_live.models import datasets as D
    from momu_live.models.packing import validation_ids
    from momu_live.models.rig import IkConfig, RigConfig, RigStats, fit_rig, to_features

    root, out = Path(args.data), Path(args.out)
    if not (root / "index.csv").exists() or not (root / "skeleton.json").exists():
        raise MomuError(f"--data {root} is not a DwM-format folder (index.csv and skeleton.json needed)")
    all_ids = D.dwm_ids(root)
    ids = args.ids or all_ids
    unknown = sorted(set(ids) - set(all_ids))
    if unknown:
        raise MomuError(f"unknown dance ids {unknown[:5]}; see {root / 'index.csv'}")
    val = validation_ids(all_ids)
    if args.split:
        ids = [i for i in ids if (i in val) == (args.split == "val")]
    if not ids:
        raise MomuError("no dances selected")
    names = json.loads((root / "skeleton.json").read_text())["joint_names"]
    cfg, ik = RigConfig(), IkConfig(iters=args.iters)
    out.mkdir(parents=True, exist_ok=True)
    entries, train_feats, plot_data = [], [], None
    t_all = time.perf_counter()
    from momu_live.models.skeleton import mirror

    jobs = [(did, did, False) for did in ids]
    if args.mirror:  # mirror images of the training dances only (validation stays untouched)
        jobs += [(f"{did}_mirror", did, True) for did in ids if did not in val]
    for k, (did, src, flip) in enumerate(jobs):
        motion, genre = _load_canonical(root, src, names)
        if not args.native:
            motion = motion.resample(float(cfg.fps))
        joints = motion.joints[: args.frames] if args.frames else motion.joints
        if flip:
            joints = mirror(joints)  # (T, 18, 3) left <-> right
        rig = fit_rig(joints, motion.fps, cfg, ik)
        split = "val" if src in val else "train"
        rig.meta.update({"id": did, "genre": genre, "split": split, "source": "dwm", **({"mirror_of": src} if flip else {})})
        rig.save(out / f"{did}.npz", cfg)
        fit = rig.meta["fit"]
        entries.append({"id": did, **({"mirror_of": src} if flip else {}), "split": split, "genre": genre,
                        "frames": rig.n_frames, "fps": rig.fps,
                        "mpjpe_mm": round(fit["refined"]["mpjpe_mm"], 3), "analytic_mpjpe_mm": round(fit["analytic"]["mpjpe_mm"], 3),
                        "p95_mm": round(fit["refined"]["p95_mm"], 2), "max_mm": round(fit["refined"]["max_mm"], 2),
                        "per_joint_mm": fit["refined"]["per_joint_mm"], "bones_m": rig.bones.round(5).tolist(),
                        "seconds": fit["seconds"]})
        if split == "train":
            train_feats.append(to_features(rig, cfg))
        want = args.plot_dance or next((i for i in ids if i in val), ids[0])
        if args.plot and did == want:
            plot_data = (did, joints, rig)
        if not args.no_progress:
            print(f"[{k + 1}/{len(jobs)}] {did} ({split}): {rig.n_frames} frames at {rig.fps:.3f} fps, MPJPE "
                  f"{fit['refined']['mpjpe_mm']:.1f} mm (analytic {fit['analytic']['mpjpe_mm']:.1f}), {fit['seconds']:.1f} s",
                  file=sys.stderr, flush=True)
    index = {"config": {"rate": str(cfg.fps), "native": bool(args.native), "iters": ik.iters, "frames": args.frames,
                        "contact_speed": cfg.contact_speed, "contact_margin": cfg.contact_margin},
             "dances": entries}
    if train_feats:
        index["stats"] = RigStats.fit(train_feats).to_dict()
    (out / "index.json").write_text(json.dumps(index, indent=1))
    for split in ("train", "val"):
        e = [x for x in entries if x["split"] == split]
        if e:
            frames = np.array([x["frames"] for x in e], float)
            mp = np.array([x["mpjpe_mm"] for x in e])
            print(f"{split}: {len(e)} dances, MPJPE {np.sum(mp * frames) / frames.sum():.2f} mm (frame-weighted), "
                  f"per dance {mp.min():.1f}-{mp.max():.1f} mm")
    print(f"wrote {len(entries)} rigs and index.json to {out} in {time.perf_counter() - t_all:.0f} s")
    if plot_data is not None:
        path = plot_fit(*plot_data, Path(args.plot))
        print(f"plot: {path}")
    return 0


def plot_fit(name: str, joints, rig, path, n_poses: int = 6, seconds: float = 2.4):
    """Stick figures (front and side view) of input joints vs the rig's FK, plus bone lengths over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from momu_live.models.skeleton import BONES, CANONICAL_JOINTS
    from momu_live.models.rig import bone_lengths_of

    X = np.asarray(joints, np.float64)  # (T, J, 3)
    P = rig.positions()  # (T, J, 3)
    T = X.shape[0]
    err = np.linalg.norm(P - X, axis=-1) * 1000  # (T, J)
    t0 = int(np.argmax(np.convolve(np.linalg.norm(np.diff(X[:, 0], axis=0), axis=-1), np.ones(10), "same")))  # a moving stretch
    span = max(1, int(round(seconds * rig.fps)))
    t0 = int(np.clip(t0 - span // 2, 0, max(0, T - span)))
    frames = np.linspace(t0, min(T - 1, t0 + span), n_poses).round().astype(int)
    fig = plt.figure(figsize=(14, 10))
    for row, (axes, label) in enumerate((((0, 1), "front (x, y)"), ((2, 1), "side (z, y)"))):
        ax = fig.add_subplot(3, 1, row + 1)
        for k, f in enumerate(frames):
            dx = 1.25 * k
            for src, style in ((X[f], dict(color="0.55", lw=4.5, alpha=0.8)), (P[f], dict(color="crimson", lw=1.4))):
                cx = src[:, axes[0]] - X[f, 0, axes[0]] + dx
                for p, c in BONES:
                    ax.plot(cx[[p, c]], src[[p, c], axes[1]], solid_capstyle="round", **style)
            ax.text(dx, -0.08, f"{f / rig.fps:.2f} s\n{err[f].mean():.1f} mm", ha="center", va="top", fontsize=8)
        ax.set_aspect("equal")
        ax.set_ylim(-0.45, 1.9)
        ax.set_title(f"{name}: {label}; grey = input joints, red = FK of the fitted rig", fontsize=10)
        ax.set_xticks([])
    ax = fig.add_subplot(3, 2, 5)
    bl_in, bl_fit = bone_lengths_of(X), bone_lengths_of(P)
    t = np.arange(T) / rig.fps
    for k, (p, c) in enumerate(BONES):
        if CANONICAL_JOINTS[c] in ("l_knee", "l_ankle", "r_elbow"):
            line, = ax.plot(t, bl_in[:, k], lw=0.8, label=f"{CANONICAL_JOINTS[p]}-{CANONICAL_JOINTS[c]} input")
            ax.plot(t, bl_fit[:, k], lw=1.6, color=line.get_color(), ls="--", label="fit")
    ax.set_xlabel("s")
    ax.set_ylabel("bone length (m)")
    ax.legend(fontsize=7, ncol=3)
    ax = fig.add_subplot(3, 2, 6)
    ax.plot(t, err.mean(1), lw=0.8, color="crimson")
    ax.set_xlabel("s")
    ax.set_ylabel("MPJPE per frame (mm)")
    ax.set_title(f"mean {err.mean():.1f} mm, p95 {np.percentile(err, 95):.1f} mm", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
