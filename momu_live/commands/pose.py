"""``momu pose``: extract a canonical-skeleton motion file from a dance video with MediaPipe."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pose",
        help="extract 3-D pose (canonical 18 joints) from a video with MediaPipe",
        description=(
            "Run MediaPipe Pose over a video and write a motion .npz (joints [T,18,3] metres y up, fps, joint_names, "
            "joints2d [T,18,2] normalised image coords, confidence [T,18], meta). Frames without a person: gaps up to "
            "--max-gap seconds are interpolated; longer ones hold the last pose with confidence 0 and are reported."
        ),
    )
    p.add_argument("--video", required=True, help="input video (any format OpenCV/ffmpeg reads)")
    p.add_argument("--out", required=True, help="output motion .npz")
    p.add_argument("--model-complexity", type=int, default=1, choices=(0, 1, 2),
                   help="MediaPipe pose model: 1 is bundled; 0/2 are downloaded on first use (fail offline)")
    p.add_argument("--task-file", default=None, help="use the MediaPipe Tasks API with this pose_landmarker .task model")
    p.add_argument("--max-gap", type=float, default=0.5, metavar="S",
                   help="interpolate gaps up to S seconds (default 0.5); longer gaps hold the last pose")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="start at S seconds")
    p.add_argument("--seconds", type=float, default=None, metavar="S", help="process at most S seconds")
    p.add_argument("--fps", type=float, default=None, help="resample the result to this frame rate")
    p.add_argument("--no-root", action="store_true", help="keep the pelvis at the origin (no image-based root trajectory)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also write a PNG summary (stick figures, confidence, gaps, root)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from momu_live import MomuError
    from momu_live.pose import extract_video

    out = Path(args.out)
    if out.exists() and not args.force:
        raise MomuError(f"{out} exists; pass --force to overwrite")
    if out.suffix != ".npz":
        raise MomuError(f"--out must end in .npz (got {out.name})")
    if args.max_gap < 0:
        raise MomuError("--max-gap must be >= 0 seconds")
    motion = extract_video(
        args.video, model_complexity=args.model_complexity, task_file=args.task_file, max_gap_s=args.max_gap,
        start_s=args.start, max_seconds=args.seconds, progress=not args.no_progress, root_from_image=not args.no_root,
    )
    if args.fps:
        motion = motion.resample(args.fps)
    motion.save(out)
    if args.plot:
        from momu_live.pose import plot_motion_report

        print(f"plot: {plot_motion_report(motion, args.plot)}")
    m = motion.meta
    held = [g for g in m["gaps"] if g["filled"] == "held"]
    interp = [g for g in m["gaps"] if g["filled"] == "interpolated"]
    print(f"{out}: {motion.n_frames} frames at {motion.fps:.3f} fps ({motion.seconds:.2f} s); "
          f"person detected in {100 * m['detected_fraction']:.1f}% of frames; "
          f"{len(interp)} short gap(s) interpolated, {len(held)} long gap(s) held")
    for g in held:
        print(f"  no person {g['start_s']:.2f}-{g['start_s'] + g['seconds']:.2f} s: last pose held, confidence 0")
    return 0
