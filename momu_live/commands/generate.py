"""``momu generate motion2music|music2motion|joint``: offline generation with the shipped models."""
from __future__ import annotations

VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
# What each output flag writes, and the file names it accepts (the format follows the flag, not the name).
OUT_EXT = {
    "--out motion2music": (".wav",),  # 16-bit PCM WAV
    "--out music2motion": (".npz",),  # motion .npz
    "--mux": (".mp4", ".mkv", ".mov"),  # H.264 + AAC
    "--render": (".mp4", ".mkv", ".mov"),
    "--bvh": (".bvh",),
}


def _common(p) -> None:
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default: the task's offline setting, models/generation.OFFLINE_SAMPLER: 16 "
                        "for music2motion, 4 for motion2music and joint, as the live engine)")
    p.add_argument("--sampler", default=None,
                   help="euler, ddpm, ddim, heun, dpmpp_2m (default: the task's offline setting: ddpm on the flow "
                        "schedule for music2motion, euler otherwise)")
    p.add_argument("--schedule", default=None, choices=("flow", "karras", "ddpm"),
                   help="noise schedule (default: the task's offline setting, or the named --sampler's usual one)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free / cross guidance weight (default 3.5)")
    p.add_argument("--tc", type=float, default=0.5, help="joint: cross-guidance switch time Tc as a fraction of T")
    p.add_argument("--seconds", type=float, default=None, help="length (joint: required; others: crop the input)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--weights", default=None,
                   help="folder with dit and/or vae .safetensors + .json (the other one: shipped models/weights)")
    p.add_argument("--vocoder", default="fast", help="fast (default), hifigan or griffinlim")
    p.add_argument("--window", type=int, default=0, help="generate in live windows of N latent frames (0: one pass)")
    p.add_argument("--overlap", type=int, default=4, help="window: inpainted prefix frames with --window")
    p.add_argument("--blend", type=int, default=4, help="window: cross-faded frames per border with --window")
    p.add_argument("--beat-strength", type=float, default=0.0,
                   help="beat guidance onto the beat grid (x the default step, models/guidance.py; default 0: off, the "
                        "rhythm control alone follows the grid; 1: the v0.1 default). Off by default since v0.2.1: on "
                        "the validation dances it lowered beat F against the true music and raised dance jitter "
                        "(docs/MODEL_CARD.md)")
    p.add_argument("--rhythm", choices=("on", "off"), default="on",
                   help="on: the beat grid also sets the DiT's rhythm control (weights trained with one, "
                        "models/rhythm_control.py); off: the model alone (with --beat-strength 0: no grid at all)")
    p.add_argument("--bpm", type=float, default=None,
                   help="tempo of the beat grid (joint: guides only with --bpm; others: instead of the input's own beat)")
    p.add_argument("--genre", default=None, help="ballroom genre hint (waltz, tango, cha-cha, rumba): tempo prior and metre")
    p.add_argument("--meter", type=int, default=None, help="beats per bar of the grid (default: 3 for waltz, else 4)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (none either when stderr is not a terminal)")


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate music from motion, motion from music, or both",
                              description="Generate with the MoMu diffusion model (BiCoR-VAE latents + DiT).")
    sub = p.add_subparsers(dest="task", metavar="TASK")
    a = sub.add_parser("motion2music", help="music for a dance (video or motion .npz)")
    a.add_argument("--motion", required=True, help="dance video (pose extracted) or motion .npz")
    a.add_argument("--out", required=True, help="output .wav")
    a.add_argument("--mux", default=None, help="also write this .mp4: the input video (or a skeleton render) + the music")
    _common(a)
    a.set_defaults(func=run)
    b = sub.add_parser("music2motion", help="a dance for a piece of music")
    b.add_argument("--music", required=True, help="audio file")
    b.add_argument("--out", required=True, help="output motion .npz")
    b.add_argument("--render", default=None, help="also write a skeleton video with the music (.mp4)")
    b.add_argument("--bvh", default=None, help="also export a BVH rig (Blender imports it)")
    _common(b)
    b.set_defaults(func=run)
    c = sub.add_parser("joint", help="music and dance together from nothing")
    c.add_argument("--out-dir", required=True, help="folder for music.wav, motion.npz, dance.mp4")
    c.add_argument("--no-render", action="store_true", help="skip dance.mp4")
    _common(c)
    c.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _check_out(paths, force: bool) -> None:
    from pathlib import Path

    from momu_live import MomuError

    for q in paths:
        if q is not None and Path(q).exists() and not force:
            raise MomuError(f"{q} exists; pass --force to overwrite it")


def _check_ext(flag: str, path) -> None:
    """``path`` of output ``flag`` (a key of OUT_EXT) must carry one of the extensions that output is written as."""
    from pathlib import Path

    from momu_live import MomuError

    allowed = OUT_EXT[flag]
    if path is not None and Path(path).suffix.lower() not in allowed:
        name = flag.split()[0]
        raise MomuError(f"{name} {path}: this output is written as {' or '.join(allowed)}; "
                        f"name it e.g. {Path(path).with_suffix(allowed[0]).name}")


def load_motion_input(path, seconds=None, progress: bool = True):
    """A dance video (MediaPipe pose) or a motion .npz -> canonical joints at the model rate (T, 18, 3)."""
    from pathlib import Path

    import numpy as np

    from momu_live import MomuError
    from momu_live.models.motion import load_motion
    from momu_live.models.skeleton import to_canonical
    from momu_live.models.timebase import DEFAULT_TIMEBASE

    p = Path(path)
    if not p.exists():
        raise MomuError(f"--motion {p} does not exist")
    if p.suffix.lower() in VIDEO_EXT:
        from momu_live.pose import extract_video

        try:
            m = extract_video(p, max_seconds=seconds, progress=progress)
        except MomuError:
            raise
        except (IndexError, ValueError) as exc:  # no detected frame at all
            raise MomuError(f"no person found in {p} ({exc}); use a video with one dancer in view") from None
        if float(m.meta.get("detected_fraction", 1.0)) < 0.05:
            raise MomuError(f"no person found in {p} (detected in {100 * m.meta['detected_fraction']:.0f}% of frames); "
                            "use a video with one dancer in view")
    elif p.suffix.lower() == ".npz":
        m = load_motion(p)
    else:
        raise MomuError(f"--motion {p}: expected a video ({', '.join(sorted(VIDEO_EXT))}) or a motion .npz")
    m = to_canonical(m).resample(float(DEFAULT_TIMEBASE.motion_rate))
    j = m.joints
    if seconds is not None:
        j = j[: int(seconds * float(DEFAULT_TIMEBASE.motion_rate))]
    if len(j) < 2 * DEFAULT_TIMEBASE.motion_per_latent:
        raise MomuError(f"motion {p} is too short ({len(j)} frames at {float(DEFAULT_TIMEBASE.motion_rate):.2f} fps)")
    return np.ascontiguousarray(j, np.float32)


def choose_grid(args, joints=None, wav=None, sr: int | None = None, seconds: float | None = None, pipe=None):
    """The beat grid of a task (models/guidance.py) from the CLI flags, or None (no rhythm control, no beat guidance).

    ``--bpm``: a steady grid at that tempo; else the input's own beat: the dancer's tempo (motion ->
    music) or the music's beat tracker (music -> motion); joint generation guides only with ``--bpm``.
    """
    from momu_live import MomuError
    from momu_live.models import guidance as G
    from momu_live.models.metrics import beats_per_bar
    from momu_live.models.timebase import DEFAULT_TIMEBASE as tb

    if args.meter is not None and not (1 <= args.meter <= 16):
        raise MomuError(f"--meter must be 1-16 beats per bar, got {args.meter}")
    if args.beat_strength == 0 and getattr(args, "rhythm", "on") == "off":
        return None
    if args.bpm is not None:
        length = seconds if seconds is not None else (len(joints) / float(tb.motion_rate) if joints is not None else len(wav) / sr)
        return G.grid_from_tempo(float(args.bpm), float(length), args.meter or beats_per_bar(args.genre))
    try:
        if joints is not None:  # metre: --meter, else the genre's, else detected from the dance
            if pipe is not None:  # the pipeline's dancer grid: phase from its rhythm head when it has one
                return pipe.motion_grid(joints, args.genre, args.meter)
            return G.grid_from_motion(joints, float(tb.motion_rate), args.genre, args.meter)
        if wav is not None:
            return G.grid_from_music(wav, sr, args.genre, args.meter)
    except MomuError as exc:  # too short / no beat found: generate unguided and say why
        print(f"beat guidance: off ({exc})")
    return None


def run(args) -> int:
    import logging
    import sys
    from pathlib import Path

    import torch

    from momu_live import MomuError
    from momu_live.models.generation import offline_spec

    log = logging.getLogger("momu.generate")
    # progress bars only for a person watching: never into a log file or a pipe (they would frame errors)
    progress = not args.no_progress and bool(getattr(sys.stderr, "isatty", lambda: False)())
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps is not None and args.steps < 1:
        raise MomuError(f"--steps must be >= 1, got {args.steps}")
    if args.seconds is not None and not (args.seconds > 0):
        raise MomuError(f"--seconds must be positive, got {args.seconds}")
    if args.window < 0 or args.overlap < 0 or args.blend < 0:
        raise MomuError("--window, --overlap and --blend must be >= 0")
    if args.task == "motion2music":
        _check_ext("--out motion2music", args.out)
        _check_ext("--mux", args.mux)
        _check_out([args.out, args.mux], args.force)
    elif args.task == "music2motion":
        _check_ext("--out music2motion", args.out)
        _check_ext("--render", args.render)
        _check_ext("--bvh", args.bvh)
        _check_out([args.out, args.render, args.bvh], args.force)
    else:
        if args.seconds is None:
            raise MomuError("joint generation needs --seconds S (a positive length)")
        od = Path(args.out_dir)
        if od.exists() and not od.is_dir():
            raise MomuError(f"--out-dir {od} is a file; pass a folder (music.wav, motion.npz, dance.mp4 go there)")
        _check_out([od / "music.wav", od / "motion.npz", None if args.no_render else od / "dance.mp4"], args.force)
    from momu_live.models.guidance import BeatSpec

    spec = offline_spec(args.task, args.sampler, args.steps, args.schedule, tc=args.tc,  # validates sampler / steps
                        beat=BeatSpec().scaled(args.beat_strength), rhythm=args.rhythm == "on",
                        **({} if args.guidance is None else {"guidance": args.guidance}))

    from momu_live.models.pretrained import load_pipeline

    pipe = load_pipeline(args.weights, args.device, vocoder=args.vocoder)
    bar = _StepBar(f"{args.task} ({spec.sampler}, {spec.steps} steps)", progress)
    try:
        return _generate(args, pipe, spec, bar, progress, log)
    finally:
        bar.close()


class _StepBar:
    """The sampling steps' progress bar (the sampler's callback): opened at the first step, only when wanted."""

    def __init__(self, desc: str, enabled: bool):
        self.desc, self.enabled, self.bar = desc, enabled, None

    def __call__(self, i: int, n: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=n, desc=self.desc)
        self.bar.total = n
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.enabled = False  # after sampling, nothing re-opens it


def _generate(args, pipe, spec, bar: _StepBar, progress: bool, log) -> int:
    import json
    from pathlib import Path

    from momu_live import MomuError
    from momu_live.models.timebase import DEFAULT_TIMEBASE as tb

    win = dict(window=args.window or None, overlap=args.overlap, blend=args.blend, callback=bar)
    meta = {"task": args.task, "sampler": spec.sampler, "schedule": spec.schedule, "steps": spec.steps, "guidance": spec.guidance, "seed": args.seed,
            "window": args.window, "overlap": args.overlap, "blend": args.blend, "vocoder": getattr(pipe.vocoder, "name", None)}
    from momu_live.models.audio import save_wav
    from momu_live.models.motion import Motion

    fps = float(tb.motion_rate)
    if args.task == "motion2music":
        joints = load_motion_input(args.motion, args.seconds, progress=progress)
        grid = _report_grid(choose_grid(args, joints=joints, pipe=pipe), meta)
        res = pipe.motion2music(joints, args.seed, spec, grid=grid, **win)
        bar.close()
        wav = res["wav"].numpy()
        save_wav(args.out, wav, tb.sample_rate, force=True)
        print(f"music: {args.out} ({len(wav) / tb.sample_rate:.2f} s)")
        if args.mux:
            from momu_live.render import mux_audio, render_skeleton

            src = Path(args.motion)
            if src.suffix.lower() in VIDEO_EXT:
                mux_audio(src, wav, tb.sample_rate, args.mux)
            else:
                render_skeleton(joints, tb.motion_rate, args.mux, wav, tb.sample_rate, progress=progress)
            print(f"video: {args.mux}")
    elif args.task == "music2motion":
        from momu_live.models.audio import load_audio

        p = Path(args.music)
        if not p.exists():
            raise MomuError(f"--music {p} does not exist")
        wav, sr = load_audio(p, tb.sample_rate)
        if args.seconds is not None:
            wav = wav[: int(args.seconds * sr)]
        if wav.size == 0:
            raise MomuError(f"--music {p} holds no audio samples; pass a non-empty audio file")
        grid = _report_grid(choose_grid(args, wav=wav, sr=sr), meta)
        res = pipe.music2motion(wav, args.seed, spec, grid=grid, **win)
        bar.close()
        m = Motion(joints=res["joints"], fps=fps, meta={"source": "momu generate music2motion", **meta,
                                                        "music": str(p)})
        m.save(args.out)
        print(f"motion: {args.out} ({m.n_frames} frames at {fps:.3f} fps)")
        if args.render:
            from momu_live.render import render_skeleton

            render_skeleton(res["joints"], tb.motion_rate, args.render, wav[: len(res["joints"]) * 1024], sr,
                            progress=progress)
            print(f"video: {args.render}")
        if args.bvh:
            from momu_live.models.bvh import export_bvh

            export_bvh(m, args.bvh)
            print(f"bvh: {args.bvh}")
    else:
        od = Path(args.out_dir)
        od.mkdir(parents=True, exist_ok=True)
        grid = _report_grid(choose_grid(args, seconds=args.seconds), meta)
        res = pipe.joint(args.seconds, args.seed, spec, grid=grid, **win)
        bar.close()
        wav = res["wav"].numpy()
        save_wav(od / "music.wav", wav, tb.sample_rate, force=True)
        m = Motion(joints=res["joints"], fps=fps, meta={"source": "momu generate joint", **meta})
        m.save(od / "motion.npz")
        (od / "generation.json").write_text(json.dumps(meta, indent=1))
        print(f"music: {od / 'music.wav'}  motion: {od / 'motion.npz'}")
        if not args.no_render:
            from momu_live.render import render_skeleton

            render_skeleton(res["joints"], tb.motion_rate, od / "dance.mp4", wav, tb.sample_rate,
                            progress=progress)
            print(f"video: {od / 'dance.mp4'}")
    log.debug("done: %s", meta)
    return 0


def _report_grid(grid, meta: dict):
    """Print and record (``meta["beat_grid"]``) the grid the generation is guided onto (rhythm control and/or beat
    guidance)."""
    if grid is None:
        meta["beat_grid"] = None
        print("beat guidance: off")
        return None
    meta["beat_grid"] = {k: v for k, v in grid.to_json().items() if k != "beats"}
    print(f"beat grid: {grid.bpm:.1f} BPM, {grid.beats_per_bar} beats per bar ({grid.source})")
    return grid
