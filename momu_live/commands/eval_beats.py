"""``momu eval beats``: every beat/rhythm score of one motion + music pair (one JSON object with --json)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "beats",
        help="score one motion/music pair: BCS/BHS (LORIS, D2M v1, 5 Hz), beat F +-70/100 ms, BAS, beat-grid coherence",
        description=(
            "Music onsets/beats with pinned librosa settings (LORIS, D2M-GAN v1), kinematic beats of the motion "
            "(MoMu directogram flux, Bailando speed minima), binned BCS/BHS, tolerance F-measures, Bailando BAS "
            "(sigma 3 frames at 60 fps), Rayleigh z of feet speed / pelvis height against the beat and bar phase, "
            "and the AIST++ kinetic feature vector. Motion and music are cropped to their common duration."
        ),
    )
    p.add_argument("--motion", required=True, help="motion .npz (joints [T,J,3], fps, joint_names)")
    p.add_argument("--music", required=True, help="audio file (wav/flac/mp3/...; resampled to 22.05 kHz)")
    p.add_argument("--genre", default=None, help="e.g. waltz (3 beats per bar for the bar-phase coherence; else 4)")
    p.add_argument("--no-genre-prior", action="store_true",
                   help="beat-track with librosa's default 120 BPM prior even when --genre is given")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _finite(o):
    """JSON-safe copy: NaN/inf -> None."""
    import math

    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def run(args: argparse.Namespace) -> int:
    import json

    from momu_live.models.audio import load_audio
    from momu_live.models.metrics import headline, score_pair
    from momu_live.models.motion import load_motion
    from momu_live.models.timebase import DEFAULT_TIMEBASE

    motion = load_motion(args.motion)
    wav, sr = load_audio(args.music, DEFAULT_TIMEBASE.sample_rate)
    scores = score_pair(motion, wav, sr, genre=args.genre, genre_prior=not args.no_genre_prior)
    scores["inputs"] = {"motion": str(args.motion), "music": str(args.music)}
    if args.json:
        print(json.dumps(_finite(scores)))
        return 0
    from rich.console import Console
    from rich.table import Table

    c = scores["crop"]
    t = Table(title=f"momu eval beats: {c['scored_seconds']:.2f} s scored"
                    + (f" (cropped: motion {c['motion_seconds']:.2f} s, music {c['music_seconds']:.2f} s)" if c["cropped"] else ""))
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("music tempo (BPM) / beats", f"{scores['music']['tempo_bpm']:.1f} / {scores['music']['n_beats']}")
    t.add_row("flux beats / speed minima", f"{scores['motion']['n_flux_beats']} / {scores['motion']['n_speed_minima']}")
    from rich.markup import escape

    for k, v in headline(scores).items():
        t.add_row(escape(k), f"{v:.3f}")
    Console().print(t)
    return 0
