"""``momu eval live-music``: the music ``momu live`` generates for a dance video, against the video's own music.

Runs the real live engine (motion2music, the shipped model, lookahead, beat guidance onto the beat
clock) on a dance video at real-time pace, records what it generates (``Recorder``: the WAV sits on
the stream clock, which for a video is its media time), then judges it outside the loop against the
soundtrack: the generated music's beats (librosa's beat tracker, ``models/beats.py``) against the
soundtrack's beats: the median distance of each generated beat to the nearest soundtrack beat, beat F
at +-70/+-100 ms, the tempo ratio.  In the same table: a click at the soundtrack's tempo with a random
phase (the chance level), and the same run with beat guidance off (``--compare-unguided``).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def register(subparsers) -> None:
    p = subparsers.add_parser("live-music", help="live motion2music output vs the video's own music (beat offsets, F)",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--video", required=True, help="a dance video with its music track")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to run (real time)")
    p.add_argument("--settle", type=float, default=8.0, help="seconds left out of the scores")
    p.add_argument("--lookahead", type=float, default=1.0)
    p.add_argument("--beat-strength", type=float, default=1.0)
    p.add_argument("--compare-unguided", action="store_true", help="also run with --beat-strength 0")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trials", type=int, default=200, help="random phases of the chance baseline")
    p.add_argument("--json", default=None, metavar="PATH")
    p.set_defaults(func=run)


def offsets_to_reference(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|distance| (s) from each estimated beat to the nearest reference beat."""
    ref = np.sort(np.asarray(ref, np.float64))
    est = np.asarray(est, np.float64)
    if len(ref) == 0 or len(est) == 0:
        return np.zeros(0)
    i = np.clip(np.searchsorted(ref, est), 1, len(ref) - 1)
    return np.minimum(np.abs(est - ref[i - 1]), np.abs(est - ref[i]))


def score(est: np.ndarray, ref: np.ndarray, settle: float, t_end: float) -> dict:
    from momu_live.models.metrics import beat_f_measure

    e = est[(est >= settle) & (est <= t_end)]
    r = ref[(ref >= settle) & (ref <= t_end)]
    off = offsets_to_reference(e, r)
    tempo = 60.0 / float(np.median(np.diff(e))) if len(e) > 2 else 0.0
    ref_tempo = 60.0 / float(np.median(np.diff(r))) if len(r) > 2 else 0.0
    return {"beats": int(len(e)), "median_offset_ms": float(np.median(off) * 1e3) if len(off) else None,
            "f70": beat_f_measure(r, e, 0.07)["f"], "f100": beat_f_measure(r, e, 0.1)["f"],
            "tempo": tempo, "tempo_ratio": tempo / ref_tempo if ref_tempo else None}


def _generate(video: Path, seconds: float, args, beat: float) -> tuple[np.ndarray, int, float]:
    """Run the live engine on the video; the generated WAV and the stream time of its first sample."""
    import soundfile as sf

    from momu_live.live.backend import make_backend
    from momu_live.live.engine import EngineConfig, LiveEngine
    from momu_live.live.recorder import Recorder
    from momu_live.live.sources import make_source
    from momu_live.models.timebase import DEFAULT_TIMEBASE

    with tempfile.TemporaryDirectory() as d:
        rec = Recorder(Path(d) / "rec", DEFAULT_TIMEBASE.sample_rate)
        backend = make_backend("motion2music", threads=args.threads, beat=beat, lookahead=args.lookahead)
        engine = LiveEngine(EngineConfig(mode="motion2music"), make_source(f"video:{video}"), backend, None, rec)
        engine.run(duration=seconds)
        meta = json.loads((Path(d) / "rec" / "session.json").read_text())
        wav, sr = sf.read(Path(d) / "rec" / "generated.wav", dtype="float32")
    return wav, sr, float(meta.get("audio_start_s") or 0.0)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from momu_live import MomuError
    from momu_live.commands.eval_live_beats import random_phase_baseline, reference_beats
    from momu_live.models.beats import music_beats

    video = Path(args.video)
    if not video.exists():
        raise MomuError(f"--video {video}: no such file")
    if args.seconds <= args.settle + 4:
        raise MomuError("--seconds must leave at least 4 s after --settle")
    _, ref, _, ref_bpm = reference_beats(video, args.seconds)
    rows = {}
    runs = [("generated (beat guidance)", args.beat_strength)]
    if args.compare_unguided:
        runs.append(("generated (model alone)", 0.0))
    for name, beat in runs:
        wav, sr, t0 = _generate(video, args.seconds, args, beat)
        _, beats = music_beats(wav, sr)
        rows[name] = score(np.asarray(beats) + t0, ref, args.settle, args.seconds)
    base = random_phase_baseline(ref, args.settle, args.seconds, args.trials)
    period = 60.0 / ref_bpm if ref_bpm else 0.5
    rng = np.random.default_rng(0)
    chance = [float(np.median(offsets_to_reference(np.arange(args.settle + rng.uniform(0, period), args.seconds, period),
                                                   ref))) for _ in range(args.trials)]
    rows["click at the soundtrack's tempo, random phase"] = {
        "beats": None, "median_offset_ms": float(np.mean(chance) * 1e3), "f70": base["f70"]["mean"],
        "f100": base["f100"]["mean"], "tempo": ref_bpm, "tempo_ratio": 1.0}
    res = {"video": str(video), "seconds": args.seconds, "settle": args.settle, "soundtrack_bpm": ref_bpm, "rows": rows}
    t = Table(title=f"live motion2music on {video.name}: generated music's beats vs the soundtrack's ({ref_bpm:.1f} BPM)")
    for c in ("row", "median offset ms", "F@70", "F@100", "tempo", "tempo ratio"):
        t.add_column(c, justify="left" if c == "row" else "right")
    for name, r in rows.items():
        f = (lambda x, nd=3: "-" if x is None else f"{x:.{nd}f}")
        t.add_row(name, f(r["median_offset_ms"], 0), f(r["f70"]), f(r["f100"]), f(r["tempo"], 1), f(r["tempo_ratio"], 2))
    Console().print(t)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0
