"""``momu demo``: the main job on the shipped weights and the bundled, licence-clean demo media.

Generates music for the bundled dance and a dance for the bundled music, writes WAV / NPZ / BVH /
MP4 renders and a beat plot, and prints where they are and the beat metrics of each generated pair
next to a mismatched-pair baseline (the same dance with unrelated music, and the same music with an
unrelated dance) and, with beat guidance on (default), next to the same generations without it.
"""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="generate music for a bundled dance and a dance for bundled music (shipped weights)",
        description="Run the shipped MoMu models on the bundled demo dance and music; write WAV, NPZ, BVH, "
                    "MP4 and a beat plot; print the beat metrics.")
    p.add_argument("--out", default=None, help="output folder (default: momu_demo/run-<time>)")
    p.add_argument("--seconds", type=float, default=20.0, help="length to generate from each input (<= 30)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default: each task's offline setting, models/generation.OFFLINE_SAMPLER: 4 for "
                        "motion -> music, 16 ancestral steps for music -> motion)")
    p.add_argument("--guidance", type=float, default=3.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beat-strength", type=float, default=1.0,
                   help="beat guidance (models/guidance.py): music follows the dancer's tempo, the dance the music's beats; 0: off")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-video", action="store_true", help="skip the MP4 renders")
    p.add_argument("--force", action="store_true", help="write into an existing, non-empty --out folder")
    p.set_defaults(func=run)


def _pair_row(scores: dict) -> dict:
    from momu_live.models.metrics import headline

    h = headline(scores)
    return {
        "coherence z (feet@beat)": h["coh_z[feet_speed_beat]"],
        "coherence z (pelvis@beat)": h["coh_z[pelvis_height_beat]"],
        "beat F +-100 ms (speed minima)": h["beatF_100ms[spdmin]"],
        "fine 5 Hz BCS (flux)": h["fine_5hz_bcs[flux]"],
        "LORIS BCS (flux)": h["loris_bcs[flux]"],
        "BAS (Bailando)": h["BAS_bailando"],
        "music tempo (BPM)": scores["music"]["tempo_bpm"],
    }


def _plot(path, panels) -> None:
    """One row per generated pair: music onset strength + beats over the motion's feet speed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from momu_live.models.beats import onset_strength
    from momu_live.models.kinematics import feet_speed
    from momu_live.models.timebase import DEFAULT_TIMEBASE

    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.2 * len(panels)), squeeze=False)
    for ax, (title, joints, fps, wav, sr, scores) in zip(axes[:, 0], panels):
        env = onset_strength(wav, sr)
        t_env = np.arange(len(env)) * 512 / DEFAULT_TIMEBASE.sample_rate
        fs = feet_speed(joints, fps)
        t_fs = np.arange(len(fs)) / fps
        ax.plot(t_env, env / (env.max() or 1), color="0.6", lw=0.8, label="music onset strength")
        ax.plot(t_fs, fs / (np.abs(fs).max() or 1) - 1.1, color="tab:blue", lw=1.0, label="feet speed (z)")
        for i, b in enumerate(scores["music"]["beats"]):
            ax.axvline(b, color="tab:red", lw=0.8, alpha=0.7, label="music beats" if i == 0 else None)
        for i, b in enumerate(scores["motion_beats"]["speed_minima"]):
            ax.plot([b], [-1.15], "v", color="tab:green", ms=5, label="kinematic beats (speed minima)" if i == 0 else None)
        z = scores["coherence"]["feet_speed_beat"]["z"]
        ax.set_title(f"{title}   beat-grid coherence z (feet@beat) = {z:.2f}")
        ax.set_xlabel("time (s)")
        ax.set_yticks([])
        ax.legend(loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    import torch
    from rich.console import Console
    from rich.table import Table

    from momu_live import MomuError
    from momu_live.commands.generate import load_motion_input
    from momu_live.demo_media import DEMO_DANCE, DEMO_MUSIC
    from momu_live.models.audio import load_audio, save_wav
    from momu_live.models.generation import offline_spec
    from momu_live.models.metrics import score_pair
    from momu_live.models.motion import Motion
    from momu_live.models.timebase import DEFAULT_TIMEBASE as tb

    con = Console()
    if not (0 < args.seconds <= 30):
        raise MomuError(f"--seconds must be in (0, 30] (the bundled media are 30 s), got {args.seconds}")
    if args.steps is not None and args.steps < 1:
        raise MomuError(f"--steps must be >= 1, got {args.steps}")
    torch.set_num_threads(max(1, args.threads))
    out = Path(args.out) if args.out else Path("momu_demo") / time.strftime("run-%Y%m%d-%H%M%S")
    if out.exists() and any(out.iterdir()) and not args.force:
        raise MomuError(f"{out} exists and is not empty; pass --force or another --out")
    out.mkdir(parents=True, exist_ok=True)
    sr, fps = tb.sample_rate, float(tb.motion_rate)
    from momu_live.models import guidance as G

    kw = {"guidance": args.guidance, "beat": G.BeatSpec().scaled(args.beat_strength)}
    specs = {t: offline_spec(t, steps=args.steps, **kw) for t in ("motion2music", "music2motion")}
    timings = {}

    def step(msg):
        return con.status(f"[bold]{msg}")

    t0 = time.perf_counter()
    with step("loading the shipped models (BiCoR-VAE, diffusion transformer, fast vocoder)"):
        from momu_live.models.pretrained import load_pipeline

        pipe = load_pipeline(None, args.device, vocoder="fast")
    timings["load_s"] = time.perf_counter() - t0
    con.print(f"models loaded in {timings['load_s']:.1f} s")

    # inputs
    dance = load_motion_input(DEMO_DANCE, args.seconds, progress=False)  # (T, 18, 3) at the model rate
    music, _ = load_audio(DEMO_MUSIC, sr)
    music = music[: int(args.seconds * sr)]

    # beat grids: the dancer's tempo for the music, the music's beats for the dance
    guided = args.beat_strength > 0
    grids = {"dancer": G.grid_from_motion(dance, fps) if guided else None,
             "music": G.grid_from_music(music, sr) if guided else None}
    for k, g in grids.items():
        con.print(f"beat grid from the {k}: " + (f"{g.bpm:.1f} BPM" if g is not None else "off (--beat-strength 0)"))

    # 1) motion -> music
    t0 = time.perf_counter()
    spec = specs["motion2music"]
    with step(f"motion -> music: {len(dance) / fps:.1f} s of dance, {spec.steps} {spec.sampler} steps"):
        res = pipe.motion2music(dance, args.seed, spec, grid=grids["dancer"])
    timings["motion2music_s"] = time.perf_counter() - t0
    gen_music = res["wav"].numpy()
    files = {"music_for_dance": save_wav(out / "music_for_dance.wav", gen_music, sr)}

    # 2) music -> motion
    t0 = time.perf_counter()
    spec2 = specs["music2motion"]
    with step(f"music -> motion: {len(music) / sr:.1f} s of music, {spec2.steps} {spec2.sampler} steps"):
        res2 = pipe.music2motion(music, args.seed, spec2, grid=grids["music"])
    timings["music2motion_s"] = time.perf_counter() - t0
    raw = None
    if guided:  # the same seed without beat guidance: what the guidance adds, side by side
        with step("the same two generations without beat guidance (for comparison)"):
            raw = (pipe.motion2music(dance, args.seed, spec)["wav"].numpy(),
                   Motion(joints=pipe.music2motion(music, args.seed, spec2)["joints"], fps=fps))
    gen_motion = Motion(joints=res2["joints"], fps=fps, meta={"source": "momu demo music2motion", "music": DEMO_MUSIC.name})
    files["dance_for_music"] = gen_motion.save(out / "dance_for_music.npz")
    from momu_live.models.bvh import export_bvh

    files["dance_for_music_bvh"] = export_bvh(gen_motion, out / "dance_for_music.bvh") or out / "dance_for_music.bvh"

    # metrics: generated pairs next to mismatched pairs (the input dance and the input music are unrelated:
    # 120 BPM procedural steps vs a 112 BPM hornpipe)
    with step("scoring beats"):
        input_dance = Motion(joints=dance, fps=fps)
        s_m2m = score_pair(input_dance, gen_music, sr)
        s_m2m_base = score_pair(input_dance, music, sr)
        s_mu2mo = score_pair(gen_motion, music, sr)
    rows = {
        "dance + generated music": _pair_row(s_m2m),
        "music + generated dance": _pair_row(s_mu2mo),
        "dance + unrelated music (baseline)": _pair_row(s_m2m_base),
    }
    if raw is not None:
        with step("scoring the unguided generations"):
            s_raw_m2m, s_raw_mu2mo = score_pair(input_dance, raw[0], sr), score_pair(raw[1], music, sr)
        rows["dance + generated music, no beat guidance"] = _pair_row(s_raw_m2m)
        rows["music + generated dance, no beat guidance"] = _pair_row(s_raw_mu2mo)

    # renders and plot
    if not args.no_video:
        from momu_live.render import render_skeleton

        with step("rendering videos (ffmpeg)"):
            files["dance_with_generated_music_mp4"] = render_skeleton(dance, tb.motion_rate, out / "dance_with_generated_music.mp4",
                                                                      gen_music, sr)
            files["generated_dance_mp4"] = render_skeleton(gen_motion.joints, tb.motion_rate, out / "generated_dance.mp4",
                                                           music[: len(gen_motion.joints) * 1024], sr)
    files["beats_png"] = out / "beats.png"
    panels = [
        ("bundled dance + generated music", dance, fps, gen_music, sr, s_m2m),
        ("bundled music + generated dance", gen_motion.joints, fps, music, sr, s_mu2mo),
        ("baseline: bundled dance + unrelated bundled music", dance, fps, music, sr, s_m2m_base),
    ]
    if raw is not None:
        panels += [("bundled dance + generated music, no beat guidance", dance, fps, raw[0], sr, s_raw_m2m),
                   ("bundled music + generated dance, no beat guidance", raw[1].joints, fps, music, sr, s_raw_mu2mo)]
    _plot(files["beats_png"], panels)

    summary = {"out": str(out), "steps": {t: sp.steps for t, sp in specs.items()},
               "sampler": {t: sp.sampler for t, sp in specs.items()}, "guidance": args.guidance, "seed": args.seed,
               "beat_strength": args.beat_strength,
               "beat_grids": {k: (None if g is None else {"bpm": g.bpm, "beats_per_bar": g.beats_per_bar, "source": g.source})
                              for k, g in grids.items()},
               "seconds": args.seconds, "device": args.device, "threads": args.threads, "timings": timings,
               "rtf": {"motion2music": timings["motion2music_s"] / (len(dance) / fps),
                       "music2motion": timings["music2motion_s"] / (len(music) / sr)},
               "metrics": rows, "files": {k: str(v) for k, v in files.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))

    table = Table(title="beat metrics (higher = more beat-locked)")
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    for metric in next(iter(rows.values())):
        table.add_row(metric, *(f"{r[metric]:.3f}" for r in rows.values()))
    con.print(table)
    con.print(f"motion->music {timings['motion2music_s']:.2f} s (RTF {summary['rtf']['motion2music']:.3f}), "
              f"music->motion {timings['music2motion_s']:.2f} s (RTF {summary['rtf']['music2motion']:.3f}) "
              f"on {args.device}, {args.threads} threads, " + ", ".join(f"{t} {sp.steps} {sp.sampler} steps" for t, sp in specs.items()))
    print(f"outputs in {out}/")
    for k, v in {**files, "summary": out / "summary.json"}.items():
        print(f"  {k:32s} {v}")
    return 0
