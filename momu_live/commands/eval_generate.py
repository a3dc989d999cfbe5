"""``momu eval generate``: beat metrics and quality vs steps of generated music/motion on validation dances.

For every validation dance (DwM-format folder, models/datasets.split_dwm): models/metrics.score_pair of
- ``gt``: the ground-truth pair;  ``shuffled``: the dance's motion with the next dance's music;
- ``motion2music``: the dance's motion with music generated from it;
- ``music2motion``: motion generated from the dance's music, with that music;
for each step count (rectified-flow Euler, the few-step path) and the many-step DDPM baseline.
Headline per row: beat-grid coherence (Rayleigh z, genre lock), fine beat F1 (5 Hz bins, LORIS
formula), LORIS 1-s beat F1, beat F +-70 ms, Bailando BAS; plus Frechet distances of generated mel
frames (80-d) and motion feature frames (108-d, models/vae.motion_features) against the ground truth.
``--long S`` also measures seams: S seconds generated in live windows (``--window``/``--overlap``)
and in one pass; frame-to-frame jumps at window borders vs elsewhere.
Writes OUT/eval_generate.json, OUT/eval_generate.md (tables), OUT/eval_generate.png (quality vs steps) and
OUT/eval_generate_beats.png (the first dance's beats: ground truth, each direction unguided and beat-guided).

``--suite outside`` judges generation outside the loop instead (``run_outside``): on the validation dances (first
``--seconds`` each, ``--seeds``), music generated from the dance and dances generated from the music, with and without
beat guidance, scored with statistics that no loss, guidance objective or sampler optimises, next to the real data and
trivial baselines computed the same way.  Music: beat F (+-70/100 ms) of the music's tracked beats against the TRUE
music's, tempo ratio and "within 4 %", melstat Frechet distance to real songs (with the real-vs-real floor), chroma
entropy, onset rate; rows true music, shuffled song, other real songs, VAE + vocoder copy, click track on the dancer's
grid, white noise, generated without / with guidance.  Dance: kinetic and geometric Frechet distances (5-s windows,
against the other real dances; held-out real dances are the floor), jitter (m/s^3), bone-length SD, foot skating, ground
penetration, root travel, diversity over seeds, song specificity; rows real dance, other real dances, VAE copy, frozen
pose, generated without / with guidance.  Writes OUT/outside.json, OUT/outside.md, and OUT/outside_spectrograms.png,
OUT/outside_sticks.png, OUT/outside_beats.png.  Definitions: ``OUTSIDE_DEFINITIONS``.
"""
from __future__ import annotations

import os
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="beat metrics / quality vs steps / seams of generation on validation dances",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    default = Path(os.environ.get("MOMU_SHARED", Path(__file__).resolve().parents[2].parent / "shared")) / "data" / "dwm"
    p.add_argument("--data", default=str(default), help="DwM-format folder (default ../shared/data/dwm)")
    p.add_argument("--steps", default="1,2,4,8", help="few-step Euler step counts")
    p.add_argument("--many", type=int, default=50, help="many-step DDPM baseline steps (0: skip)")
    p.add_argument("--guidance", type=float, default=3.5)
    p.add_argument("--beat", default="1", help="beat-guidance strengths (x the default steps of models/guidance.BeatSpec) "
                   "to evaluate at --beat-steps sampling steps, comma-separated (rows 'euler4+beat1'; grid: the music's "
                   "beats for music->motion, the dancer's tempo for motion->music; 0: no guided rows)")
    p.add_argument("--sampler", default=None,
                   help="--suite outside: sampler of every generated row (default: each task's offline sampler)")
    p.add_argument("--schedule", default=None, choices=("flow", "karras", "ddpm"),
                   help="--suite outside: noise schedule with --sampler (default: the task's, or the sampler's usual)")
    p.add_argument("--beat-iters", type=int, default=None, help="gradient steps per sampling step (default: BeatSpec's)")
    p.add_argument("--beat-steps", type=int, default=None,
                   help="sampling steps of the guided rows (default 4); --suite outside: of every generated row "
                        "(default: each task's offline sampler, models/generation.OFFLINE_SAMPLER)")
    p.add_argument("--beat-tmax", type=float, default=None, help="guide only at flow times t <= this (default: BeatSpec's)")
    p.add_argument("--seconds", type=float, default=30.0, help="crop each dance to this many seconds")
    p.add_argument("--max-dances", type=int, default=0, help="use only the first N validation dances (0: all)")
    p.add_argument("--long", type=float, default=120.0, help="seconds for the seam test (0: skip)")
    p.add_argument("--window", type=int, default=11, help="seam test window (latent frames)")
    p.add_argument("--overlap", type=int, default=4)
    p.add_argument("--blend", type=int, default=4, help="seam test: cross-faded frames per window")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/eval_generate")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--suite", choices=("steps", "outside"), default="steps",
                   help="steps: the beat metrics / quality-vs-steps / seam tables above (default); outside: metrics no "
                   "loss or guidance objective touches, against the real data and trivial baselines (music: beat F "
                   "against the true music's beats, tempo, mel Frechet distance, chroma entropy, onset rate; dance: "
                   "kinetic/geometric Frechet distances, jitter, bone-length SD, foot skating, penetration, travel, "
                   "diversity over seeds, song specificity); writes OUT/outside.json, OUT/outside.md, OUT/outside_*.png")
    p.add_argument("--seeds", default="0,1,2", help="--suite outside: sampling seeds of the generated rows")
    p.add_argument("--beat-strength", type=float, default=1.0,
                   help="--suite outside: strength of the beat-guided rows (the unguided rows are strength 0)")
    p.add_argument("--max-other", type=int, default=0,
                   help="--suite outside: training dances used as the other-real-dances / other-real-songs floor (0: all)")
    p.add_argument("--fd-window", type=float, default=5.0, help="--suite outside: motion feature window (s)")
    p.add_argument("--fd-hop", type=float, default=1.0, help="--suite outside: motion feature window hop (s)")
    p.add_argument("--figure-seconds", type=float, default=12.0, help="--suite outside: seconds shown in the figures")
    p.set_defaults(func=run)


def frechet(a, b) -> float:
    """Frechet distance between Gaussians fitted to row sets a (N, D) and b (M, D): models/fad.py ``frechet_between``."""
    from momu_live.models.fad import frechet_between

    return frechet_between(a, b)


def _f1(b) -> float:
    return 2 * b["bcs"] * b["bhs"] / (b["bcs"] + b["bhs"]) if (b["bcs"] + b["bhs"]) > 0 else 0.0


def headline(s: dict) -> dict:
    return {
        "coherence_z": s["coherence"]["genre_lock"]["z"],
        "fine_f1": _f1(s["binned"]["flux_beats"]["fine_5hz"]),
        "loris_f1": _f1(s["binned"]["flux_beats"]["loris"]),
        "beatF_70ms": s["beat_f"]["flux_beats"]["70ms"]["f"],
        "bas": s["bas"]["bailando"],
    }


def _beat_spec(args):
    from dataclasses import replace

    from momu_live.models.guidance import BeatSpec

    kw = {k: v for k, v in (("iters", args.beat_iters), ("t_max", args.beat_tmax)) if v is not None}
    return replace(BeatSpec(), **kw)


def seam_stats(x, borders, what: str) -> dict:
    """Mean frame-to-frame jump (L2 of the difference) at the given border frames vs all other frames."""
    import numpy as np

    d = np.linalg.norm(np.diff(np.asarray(x, np.float64), axis=0).reshape(len(x) - 1, -1), axis=1)  # (T-1,)
    idx = np.array([b - 1 for b in borders if 0 < b < len(x)], int)
    mask = np.zeros(len(d), bool)
    mask[idx] = True
    at, rest = float(d[mask].mean()), float(d[~mask].mean())
    p95 = float(np.percentile(d[~mask], 95))
    return {"what": what, "border_jump": at, "other_jump": rest, "ratio": at / rest, "other_p95": p95,
            "n_borders": int(mask.sum())}


def run(args) -> int:
    import json
    import time

    import numpy as np
    import torch
    from tqdm import tqdm

    from momu_live import MomuError
    from momu_live.models.datasets import dwm_ids, load_dwm, split_dwm
    from momu_live.models.generation import SamplerSpec
    from momu_live.models.guidance import grid_from_motion, grid_from_music
    from momu_live.models.metrics import score_pair
    from momu_live.models.motion import Motion
    from momu_live.models.pretrained import load_pipeline
    from momu_live.models.timebase import DEFAULT_TIMEBASE as tb
    from momu_live.models.vae import motion_features

    if getattr(args, "suite", "steps") == "outside":
        return run_outside(args)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not data.is_dir():
        raise MomuError(f"--data {data} is not a folder")
    _, val = split_dwm(dwm_ids(data))
    if args.max_dances:
        val = val[: args.max_dances]
    if len(val) < 2:
        raise MomuError("need at least two validation dances (the shuffled baseline pairs them)")
    pipe = load_pipeline(args.weights, args.device)
    fps = float(tb.motion_rate)
    sr = tb.sample_rate
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.beat_steps is None:
        args.beat_steps = 4
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    specs = [(f"euler{n}", SamplerSpec(steps=n, guidance=args.guidance), False) for n in steps]
    if args.many:
        specs.append((f"ddpm{args.many}", SamplerSpec(sampler="ddpm", steps=args.many, guidance=args.guidance), False))
    for b in [float(x) for x in str(args.beat).split(",") if x.strip() and float(x) > 0]:
        specs.append((f"euler{args.beat_steps}+beat{b:g}", SamplerSpec(steps=args.beat_steps, guidance=args.guidance,
                                                                      beat=_beat_spec(args).scaled(b)), True))
    dances = []
    for did in val:
        p = load_dwm(data, [did])[0]
        m = p.motion.resample(fps)
        n_lat = int(min(args.seconds * float(tb.latent_rate), len(m.joints) // 2, len(p.wav) // tb.samples_per_latent))
        dances.append({"id": did, "genre": p.genre, "joints": m.joints[: 2 * n_lat],
                       "wav": p.wav[: n_lat * tb.samples_per_latent].astype(np.float32)})
    rows = []
    feats = {"mel_gt": [], "motion_gt": []}
    timing = {}
    grid_report = []
    # beat plot of the first dance: ground truth, then each direction unguided and beat-guided at --beat-steps
    picture = {f"euler{args.beat_steps}"} | {name for name, _, beat in specs if beat}
    panels = []
    total = len(dances) * (2 + 2 * len(specs))
    bar = tqdm(total=total, desc="eval generate", disable=args.no_progress)
    for i, d in enumerate(dances):
        nxt = dances[(i + 1) % len(dances)]
        gm = Motion(joints=d["joints"], fps=fps)
        sc = score_pair(gm, d["wav"], sr, d["genre"])
        rows.append({"dance": d["id"], "task": "gt", "setting": "-", **headline(sc)})
        if i == 0:
            panels.append((f"{d['id']}: ground-truth pair", d["joints"], fps, d["wav"], sr, sc))
        bar.update(1)
        rows.append({"dance": d["id"], "task": "shuffled", "setting": "-",
                     **headline(score_pair(gm, nxt["wav"], sr, nxt["genre"]))})
        bar.update(1)
        from momu_live.models.audio import log_mel

        feats["mel_gt"].append(log_mel(torch.from_numpy(d["wav"])).numpy().T)
        feats["motion_gt"].append(motion_features(d["joints"]))
        grids = {"motion": grid_from_motion(d["joints"], fps, d["genre"]), "music": grid_from_music(d["wav"], sr, d["genre"])}
        grid_report.append({"dance": d["id"], "genre": d["genre"], "dancer_grid_bpm": grids["motion"].bpm,
                            "music_grid_bpm": grids["music"].bpm})
        for name, spec, beat in specs:
            t0 = time.perf_counter()
            r = pipe.motion2music(d["joints"], args.seed + i, spec, grid=grids["motion"] if beat else None)
            timing.setdefault(("motion2music", name), []).append(time.perf_counter() - t0)
            wav = r["wav"].numpy()
            feats.setdefault(f"mel_{name}", []).append(r["mel"].cpu().numpy().T)
            sc = score_pair(gm, wav, sr, d["genre"])
            rows.append({"dance": d["id"], "task": "motion2music", "setting": name, **headline(sc)})
            if i == 0 and name in picture:
                panels.append((f"{d['id']}: input dance + music generated ({name})", d["joints"], fps, wav, sr, sc))
            bar.update(1)
            t0 = time.perf_counter()
            r = pipe.music2motion(d["wav"], args.seed + i, spec, grid=grids["music"] if beat else None)
            timing.setdefault(("music2motion", name), []).append(time.perf_counter() - t0)
            feats.setdefault(f"motion_{name}", []).append(motion_features(r["joints"]))
            sc = score_pair(Motion(joints=r["joints"], fps=fps), d["wav"], sr, d["genre"])
            rows.append({"dance": d["id"], "task": "music2motion", "setting": name, **headline(sc)})
            if i == 0 and name in picture:
                panels.append((f"{d['id']}: input music + dance generated ({name})", r["joints"], fps, d["wav"], sr, sc))
            bar.update(1)
    bar.close()
    keys = ["coherence_z", "fine_f1", "loris_f1", "beatF_70ms", "bas"]
    summary = []
    for task, setting in dict.fromkeys((r["task"], r["setting"]) for r in rows):
        sel = [r for r in rows if r["task"] == task and r["setting"] == setting]
        row = {"task": task, "setting": setting, "n": len(sel), **{k: float(np.mean([r[k] for r in sel])) for k in keys}}
        if task == "motion2music":
            row["fd_mel"] = frechet(np.concatenate(feats[f"mel_{setting}"]), np.concatenate(feats["mel_gt"]))
        if task == "music2motion":
            row["fd_motion"] = frechet(np.concatenate(feats[f"motion_{setting}"]), np.concatenate(feats["motion_gt"]))
        if (task, setting) in timing:
            row["cpu_s_per_dance"] = float(np.mean(timing[(task, setting)]))
        summary.append(row)
    # few-step vs many-step retention
    retention = {}
    if args.many:
        for task in ("motion2music", "music2motion"):
            many = next(r for r in summary if r["task"] == task and r["setting"] == f"ddpm{args.many}")
            for r in summary:
                if r["task"] == task and r["setting"].startswith("euler") and "+beat" not in r["setting"]:
                    retention[f"{task}/{r['setting']}"] = {
                        k: (r[k] / many[k] if many[k] else float("nan")) for k in ("coherence_z", "fine_f1")}
    seams = {}
    if args.long > 0:
        spec = SamplerSpec(steps=4, guidance=args.guidance)
        L = pipe.latent_frames(args.long)
        # borders: the end of each inpainted prefix (k W - blend) and the end of each cross-fade (k W)
        borders_lat = sorted({x - args.blend for x in range(args.window, L, args.window)} | set(range(args.window, L, args.window)))
        for mode, win in (("windowed", args.window), ("one_pass", None)):
            r = pipe.joint(args.long, args.seed, spec, window=win, overlap=args.overlap, blend=args.blend)
            seams[f"joint_{mode}"] = {
                "motion": seam_stats(r["joints"], [2 * b for b in borders_lat], "joint positions (m) per frame"),
                "mel": seam_stats(r["mel"].cpu().numpy().T, [8 * b for b in borders_lat], "log-mel frame"),
            }
        # music -> motion over the validation music concatenated to --long seconds
        wav = np.concatenate([d["wav"] for d in dances])
        wav = np.tile(wav, int(np.ceil(args.long * sr / len(wav))))[: int(args.long * sr)]
        for mode, win in (("windowed", args.window), ("one_pass", None)):
            r = pipe.music2motion(wav, args.seed, spec, window=win, overlap=args.overlap, blend=args.blend)
            seams[f"music2motion_{mode}"] = {"motion": seam_stats(r["joints"], [2 * b for b in borders_lat],
                                                                  "joint positions (m) per frame")}
    doc = {"dances": [d["id"] for d in dances], "seconds_per_dance": args.seconds, "guidance": args.guidance,
           "summary": summary, "retention_vs_many_step": retention, "beat_grids": grid_report, "seams": seams, "rows": rows,
           "window": args.window, "overlap": args.overlap, "blend": args.blend, "threads": args.threads}
    (out / "eval_generate.json").write_text(json.dumps(doc, indent=1))
    md = ["| task | setting | coherence z | fine F1 (5 Hz) | LORIS F1 (1 s) | beat F 70 ms | BAS | FD mel | FD motion | CPU s/dance |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        md.append(f"| {r['task']} | {r['setting']} | {r['coherence_z']:.2f} | {r['fine_f1']:.3f} | {r['loris_f1']:.3f} | "
                  f"{r['beatF_70ms']:.3f} | {r['bas']:.3f} | {r.get('fd_mel', float('nan')):.2f} | "
                  f"{r.get('fd_motion', float('nan')):.2f} | {r.get('cpu_s_per_dance', float('nan')):.2f} |")
    if retention:
        md += ["", "| few-step / many-step | coherence z | fine F1 |", "|---|---|---|"]
        md += [f"| {k} | {v['coherence_z']:.1%} | {v['fine_f1']:.1%} |" for k, v in retention.items()]
    if seams:
        md += ["", "| seam test | signal | jump at borders | elsewhere (mean) | ratio | elsewhere p95 |", "|---|---|---|---|---|---|"]
        for k, v in seams.items():
            for sig, s in v.items():
                md.append(f"| {k} | {sig} | {s['border_jump']:.4f} | {s['other_jump']:.4f} | {s['ratio']:.2f} | {s['other_p95']:.4f} |")
    (out / "eval_generate.md").write_text("\n".join(md) + "\n")
    _plot(summary, steps, args.many, out / "eval_generate.png")
    from momu_live.commands.demo import _plot as beat_plot

    order = lambda p: 0 if "ground-truth" in p[0] else (1 if "music generated" in p[0] else 2)  # noqa: E731
    beat_plot(out / "eval_generate_beats.png", sorted(panels, key=order))
    print("\n".join(md))
    print(f"wrote {out / 'eval_generate.json'}, {out / 'eval_generate.md'}, {out / 'eval_generate.png'}, "
          f"{out / 'eval_generate_beats.png'}")
    return 0


def _plot(summary, steps, many, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "coherence_z", "beat-grid coherence z"), (axes[1], "fine_f1", "fine beat F1 (5 Hz)")):
        for task, col in (("motion2music", "C0"), ("music2motion", "C1")):
            ys = [next(r[key] for r in summary if r["task"] == task and r["setting"] == f"euler{n}") for n in steps]
            ax.plot(steps, ys, "o-", color=col, label=f"{task} (Euler, rectified flow)")
            if many:
                m = next(r[key] for r in summary if r["task"] == task and r["setting"] == f"ddpm{many}")
                ax.axhline(m, color=col, ls="--", label=f"{task} DDPM {many} steps")
            for r in summary:
                if r["task"] == task and "+beat" in r["setting"]:
                    n = int(r["setting"].split("+")[0].replace("euler", ""))
                    ax.plot([n], [r[key]], "*", ms=12, color=col, label=f"{task} {r['setting']} (beat guidance)")
        for task, ls in (("gt", ":"), ("shuffled", "-.")):
            ax.axhline(next(r[key] for r in summary if r["task"] == task), color="k", ls=ls, label=task)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sampling steps")
        ax.set_title(label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ================================================================================================
# --suite outside: judge generation outside the loop
#
# Music (motion -> music) and dance (music -> motion) of the validation dances, scored with statistics that no
# training loss, guidance objective or sampler optimises, next to the real data and trivial baselines computed
# the same way.  The beat-guidance objective (beat-grid coherence) is reported only as the last column, marked.

# generated rows: the model alone (no grid: no rhythm control, no guidance), with the rhythm control of the task's grid
# (the dancer's grid for motion -> music, the music's beat tracker for music -> motion; a DiT without the control
# gives the model-alone output again), and with the rhythm control plus beat guidance onto the same grid
GENERATED = ("generated, model alone", "generated + rhythm control", "generated + rhythm + beat guidance")
# "dancer grid": the grid the model gets (Pipeline.motion_grid: the rhythm head's phase when the weights have one);
# "kinematic-rule grid": grid_from_motion alone (feet slowest on the beat), the same grid without a head
MUSIC_ROWS = ("true music", "shuffled song", "other real songs", "VAE + vocoder copy", "click track (dancer grid)",
              "click track (kinematic-rule grid)", "white noise", *GENERATED)
DANCE_ROWS = ("real dance", "other real dances", "VAE copy", "frozen pose", *GENERATED)


def align_start(copy, ref):
    """``copy`` (T, 18, 3) turned about the vertical through its first pelvis and moved so its first frame faces and
    stands where ``ref``'s does: a codec whose decoder starts every stream facing +z at x = z = 0 (the rig codec)
    is compared on the dance, not on where it was started (a copy that already matches is unchanged)."""
    import numpy as np

    from momu_live.models.skeleton import facing_direction

    c, r = np.asarray(copy, np.float64), np.asarray(ref, np.float64)
    fc, fr = facing_direction(c[0]), facing_direction(r[0])  # (3,) horizontal forward
    ang = np.arctan2(fr[0], fr[2]) - np.arctan2(fc[0], fc[2])  # yaw taking copy's forward onto ref's
    R = np.array([[np.cos(ang), 0.0, np.sin(ang)], [0.0, 1.0, 0.0], [-np.sin(ang), 0.0, np.cos(ang)]])
    p0 = c[0, 0] * [1.0, 0.0, 1.0]  # pivot: first pelvis on the floor plane
    out = (c - p0) @ R.T + r[0, 0] * [1.0, 0.0, 1.0]
    return out.astype(np.float32)


def _fd(a, b) -> float:
    """Frechet distance (models/fad.py) of two feature sets; NaN when it cannot be computed."""
    import numpy as np

    from momu_live import MomuError
    from momu_live.models.fad import frechet_between

    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's singular-matrix warning for small sets; NaN/inf are checked there
            return frechet_between(np.asarray(a, np.float64), np.asarray(b, np.float64))
    except (MomuError, ValueError, np.linalg.LinAlgError):
        return float("nan")


def _fidk(ref, gen) -> float:
    """Bailando FID_k (models/metrics.fid_k: both sets standardised by the reference's mean/std), NaN if not computable."""
    from momu_live.models.metrics import normalize_features

    r, g = normalize_features(ref, gen)
    return _fd(g, r)


def _nanmean(xs) -> float:
    import numpy as np

    a = np.asarray([x for x in xs if x is not None], float)
    return float(np.nanmean(a)) if a.size and np.isfinite(a).any() else float("nan")


def music_item(wav, sr, genre, ref, dance_rhythm, fps, duration, melstat) -> dict:
    """Outside-the-loop statistics of one music clip against the true music's rhythm ``ref`` (``beats.MusicRhythm``)."""
    import numpy as np

    from momu_live.models.beats import analyse_music, beat_params_for
    from momu_live.models.metrics import beat_f_measure, chroma_entropy, score_rhythms, tempo_ratio, within_tempo

    r = analyse_music(np.asarray(wav, np.float32), sr, beat_params_for(genre))
    ratio = tempo_ratio(r.tempo, ref.tempo)
    coh = score_rhythms(r, dance_rhythm, fps, duration, genre)["coherence"]["genre_lock"]["z"]
    return {"beatF_70ms": beat_f_measure(ref.beats, r.beats, 0.07)["f"], "beatF_100ms": beat_f_measure(ref.beats, r.beats, 0.1)["f"],
            "tempo_bpm": r.tempo, "tempo_ratio": ratio, "tempo_within_4pct": within_tempo(ratio, 0.04),
            "chroma_entropy_bits": chroma_entropy(wav, sr), "onset_rate_hz": len(r.onsets["loris"]) / duration,
            "n_beats": int(len(r.beats)), "coherence_z_with_input_dance": coh, "_rhythm": r, "_emb": melstat(wav, sr)}


def dance_item(joints, fps, genre, own, other, window_s, hop_s) -> dict:
    """Outside-the-loop statistics of one dance (canonical joints at ``fps``); ``own``/``other``: the rhythm of its
    conditioning song and of another song of similar tempo (song specificity = own - other)."""
    import numpy as np

    from momu_live.models import kinematics as K
    from momu_live.models.metrics import KINETIC_FPS, _resample_joints, kinetic_features, motion_rhythm, score_rhythms

    j = np.asarray(joints, np.float64)
    dur = len(j) / fps
    mr = motion_rhythm(j, fps)
    s_own, s_other = (score_rhythms(m, mr, fps, dur, genre) for m in (own, other))

    def nz(x):  # a motion with no rhythm signal (frozen) locks to nothing: z 0
        return 0.0 if not np.isfinite(x) else float(x)

    z_own, z_other = nz(s_own["coherence"]["genre_lock"]["z"]), nz(s_other["coherence"]["genre_lock"]["z"])
    fc = K.foot_contact(j, fps)
    return {"jitter_m_s3": K.jitter(j, fps), "accel_m_s2": K.acceleration_mean(j, fps), "bone_sd_m": K.bone_length_sd(j),
            "skating_m_s": fc["skating"], "contact_fraction": fc["contact_fraction"], "penetration_m": fc["penetration"],
            "penetration_fraction": fc["penetration_fraction"], "travel_m": K.root_travel(j, fps)["path"],
            "coherence_z_own_song": z_own, "coherence_z_other_song": z_other, "specificity_z": z_own - z_other,
            "specificity_bas": s_own["bas"]["bailando"] - s_other["bas"]["bailando"],
            "specificity_beatF_100ms": s_own["beat_f"]["speed_minima"]["100ms"]["f"] - s_other["beat_f"]["speed_minima"]["100ms"]["f"],
            "_kin_win": K.windowed_kinetic_features(j, fps, window_s, hop_s),
            "_geo_win": K.windowed_geometric_features(j, fps, window_s, hop_s),
            "_kin_clip": kinetic_features(_resample_joints(j, fps, KINETIC_FPS), KINETIC_FPS, resample_to=None)}


def split_floor(sets: dict, n: int, fd, draws: int = 5, seed: int = 0) -> dict:
    """Real-vs-real Frechet floor: ``n`` of the items of ``sets`` ({id: features (W, D)}) drawn at random against the
    rest as reference, ``fd(reference, other)``, ``draws`` times (half against half when there are <= n items)."""
    import numpy as np

    ids = list(sets)
    if len(ids) < 2:
        return {"mean": float("nan"), "draws": [], "n": n}
    rng = np.random.default_rng(seed)
    splits = ([ids[: len(ids) // 2]] if len(ids) <= n else
              [[ids[i] for i in rng.permutation(len(ids))[:n]] for _ in range(draws)])
    vals = [fd(np.concatenate([sets[k] for k in ids if k not in a]), np.concatenate([sets[k] for k in a])) for a in splits]
    return {"mean": _nanmean(vals), "draws": vals, "n": len(splits[0]), "of": len(ids)}


def similar_song(i: str, tempos: dict, genres: dict, val: list, others: list, tol: float = 0.06) -> str:
    """Another song of similar tempo for song specificity: the validation song (not i's own) with the nearest
    tracked tempo if within ``tol``, else the nearest-tempo song of the same genre among ``others``, else any."""
    import math

    def dist(k):
        return abs(math.log(tempos[k] / tempos[i]))

    cands = [k for k in val if k != i]
    best = min(cands, key=dist)
    if dist(best) <= math.log(1 + tol) or not others:
        return best
    same = [k for k in others if genres[k] == genres[i]] or list(others)
    return min(same, key=dist)


def run_outside(args) -> int:
    import json

    import numpy as np
    import torch
    from tqdm import tqdm

    from momu_live import MomuError
    from momu_live.models.beats import analyse_music, beat_params_for, click_track
    from momu_live.models.datasets import dwm_ids, load_dwm
    from momu_live.models.fad import MelStatEmbedding
    from momu_live.models.generation import offline_spec
    from momu_live.models.guidance import BeatSpec, grid_from_motion, grid_from_music
    from momu_live.models.metrics import chroma_entropy, diversity, motion_rhythm
    from momu_live.models.packing import validation_ids
    from momu_live.models.pretrained import load_pipeline
    from momu_live.models.timebase import DEFAULT_TIMEBASE as tb

    torch.set_num_threads(max(1, args.threads))
    data = Path(args.data)
    if not data.is_dir():
        raise MomuError(f"--data {data} is not a folder")
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    if not seeds:
        raise MomuError("--seeds needs at least one seed")
    if args.beat_strength <= 0:
        raise MomuError("--beat-strength must be > 0 in --suite outside (the unguided rows are always there)")
    ids = dwm_ids(data)
    vs = validation_ids(ids)
    val = [i for i in ids if i in vs]
    if len(val) < 2:
        raise MomuError("need at least two validation dances (the shuffled baselines pair them)")
    train = [i for i in ids if i not in vs]
    if args.max_other:
        train = train[: args.max_other]
    if not train:
        raise MomuError("need at least one training dance for the other-real floor (--max-other)")
    evald = val[: args.max_dances] if args.max_dances else val
    fps, sr, spl = float(tb.motion_rate), tb.sample_rate, tb.samples_per_latent
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if args.no_progress else (lambda *a: print(*a, flush=True))
    say(f"outside suite: loading {len(val)} validation + {len(train)} other dances from {data}")
    raw = {p.name: p for p in load_dwm(data, val + train)}
    models = {k: raw[k].motion.resample(fps) for k in raw}
    n_lat = int(min([args.seconds * float(tb.latent_rate)] + [len(models[k].joints) // 2 for k in raw]
                    + [len(raw[k].wav) // spl for k in raw]))
    if n_lat < 4 * float(tb.latent_rate):
        raise MomuError(f"--seconds {args.seconds} gives {n_lat} latent frames; need >= 4 s for tempo and beat analysis")
    dur = n_lat * spl / sr
    if args.fd_window > dur:
        raise MomuError(f"--fd-window {args.fd_window} s is longer than the clips ({dur:.1f} s)")
    J = {k: models[k].joints[: 2 * n_lat].astype(np.float32) for k in raw}
    W = {k: raw[k].wav[: n_lat * spl].astype(np.float32) for k in raw}
    G = {k: raw[k].genre for k in raw}
    melstat = MelStatEmbedding()
    pipe = load_pipeline(args.weights, args.device)
    # each task's offline sampler (what `momu generate` uses), --beat-steps overriding its steps; offline_spec checks
    # --sampler / --schedule / --beat-steps here, before the analysis
    spec0 = {t: offline_spec(t, args.sampler, args.beat_steps, args.schedule, guidance=args.guidance,
                             beat=BeatSpec().scaled(0.0)) for t in ("motion2music", "music2motion")}
    spec1 = {t: offline_spec(t, args.sampler, args.beat_steps, args.schedule, guidance=args.guidance,
                             beat=BeatSpec().scaled(args.beat_strength)) for t in spec0}  # guided: a deterministic path

    # rhythm of every song with its own genre's tempo prior (tempo matching); per evaluated dance the songs it is
    # compared with are re-analysed with that dance's prior (music_item), so every row gets the same tracker
    say("analysing songs ...")
    own_rhythm = {k: analyse_music(W[k], sr, beat_params_for(G[k])) for k in raw}
    tempos = {k: own_rhythm[k].tempo for k in raw}
    pairing = {i: {"shuffled": val[(val.index(i) + 1) % len(val)], "similar_tempo": similar_song(i, tempos, G, val, train),
                   "other_real_song": min([k for k in train if G[k] == G[i]] or train,
                                          key=lambda k: abs(np.log(tempos[k] / tempos[i])))} for i in evald}
    music = {r: [] for r in MUSIC_ROWS}
    dance = {r: [] for r in DANCE_ROWS}
    fig = {}
    n_steps = len(evald) * (9 + 2 * len(GENERATED) * len(seeds)) + len(train)
    bar = tqdm(total=n_steps, desc="outside suite", disable=args.no_progress)
    for k, i in enumerate(evald):
        g = G[i]
        ref = analyse_music(W[i], sr, beat_params_for(g))
        other_rhythm = analyse_music(W[pairing[i]["similar_tempo"]], sr, beat_params_for(g))
        dr = motion_rhythm(J[i], fps)

        def add_music(row, wav, seed=None):
            it = music_item(wav, sr, g, ref, dr, fps, dur, melstat)
            music[row].append({"dance": i, "seed": seed, **it})
            bar.update(1)
            return it

        def add_dance(row, joints, seed=None, **extra):
            it = dance_item(joints, fps, g, ref, other_rhythm, args.fd_window, args.fd_hop)
            dance[row].append({"dance": i, "seed": seed, **it, **extra})
            return it

        # ---- music baselines
        add_music("true music", W[i])
        add_music("shuffled song", W[pairing[i]["shuffled"]])
        add_music("other real songs", W[pairing[i]["other_real_song"]])
        zc = pipe.encode_music(W[i])
        _, vwav = pipe.decode_music(zc)
        vae_wav = vwav[0].cpu().numpy()[: len(W[i])]
        add_music("VAE + vocoder copy", vae_wav)
        mgrid = pipe.motion_grid(J[i], g)  # the grid the model gets (rhythm-head phase when the weights have one)
        add_music("click track (dancer grid)", click_track(np.asarray(mgrid.beats), dur, sr))
        add_music("click track (kinematic-rule grid)", click_track(np.asarray(grid_from_motion(J[i], fps, g).beats), dur, sr))
        rng = np.random.default_rng(20241123 + k)
        add_music("white noise", (rng.standard_normal(len(W[i])) * float(np.sqrt(np.mean(W[i] ** 2)))).astype(np.float32))
        # ---- dance baselines
        add_dance("real dance", J[i])
        vj = align_start(pipe.decode_motion(pipe.encode_motion(J[i]))[: len(J[i])], J[i])
        rel = lambda x: x - x[:, :1]  # noqa: E731  root-relative
        add_dance("VAE copy", vj, mpjpe_root_relative_m=float(np.linalg.norm(rel(vj) - rel(J[i]), axis=-1).mean()))
        add_dance("frozen pose", np.repeat(J[i][:1], len(J[i]), axis=0))
        sh = J[pairing[i]["shuffled"]]
        dance["other real dances"].append({"dance": i, "seed": None, "shuffled_dance": pairing[i]["shuffled"],
                                           **{k2: v for k2, v in dance_item(sh, fps, g, ref, other_rhythm, args.fd_window,
                                                                            args.fd_hop).items()
                                              if k2.startswith("specificity") or k2.startswith("coherence")}})
        if k == 0:
            fig.update(dance=i, true_wav=W[i], vae_wav=vae_wav, real=J[i], vae=vj, ref=ref, grid=mgrid)
        bar.update(2)
        # ---- generated, each seed with and without beat guidance
        agrid = grid_from_music(W[i], sr, g)
        for s in seeds:
            m0, m1 = spec0["motion2music"], spec1["motion2music"]
            for row, spec, grid in ((GENERATED[0], m0, None), (GENERATED[1], m0, mgrid), (GENERATED[2], m1, mgrid)):
                r = pipe.motion2music(J[i], s, spec, grid=grid)
                it = add_music(row, r["wav"].cpu().numpy()[: len(W[i])], s)
                if k == 0 and s == seeds[0]:
                    fig[f"music:{row}"] = (r["wav"].cpu().numpy()[: len(W[i])], it["_rhythm"])
            d0, d1 = spec0["music2motion"], spec1["music2motion"]
            for row, spec, grid in ((GENERATED[0], d0, None), (GENERATED[1], d0, agrid), (GENERATED[2], d1, agrid)):
                r = pipe.music2motion(W[i], s, spec, grid=grid)
                add_dance(row, r["joints"][: len(J[i])], s)
                if k == 0 and s == seeds[0]:
                    fig[f"dance:{row}"] = r["joints"][: len(J[i])]
                bar.update(1)
    # ---- the other real dances (training set): per-dance realism statistics and the Frechet floor
    floor_items = []
    for t in train:
        it = dance_item(J[t], fps, G[t], own_rhythm[t], own_rhythm[t], args.fd_window, args.fd_hop)
        floor_items.append({"dance": t, **{k2: v for k2, v in it.items() if not k2.startswith(("specificity", "coherence"))}})
        bar.update(1)
    bar.close()

    # ---- set-level statistics: Frechet distances, diversity
    say("Frechet distances ...")
    # reference of every Frechet distance: the other real dances / songs (the training set, the real distribution the
    # model learnt); the held-out real dances / songs of the evaluated dances are the real-vs-real floor of the same
    # songs, and random splits of the training set (n_eval against the rest) a second floor
    true_mel = np.concatenate([x["_emb"] for x in music["true music"]])
    train_emb = {t: melstat(W[t], sr) for t in train}
    train_kin = {x["dance"]: x["_kin_win"] for x in floor_items}
    train_geo = {x["dance"]: x["_geo_win"] for x in floor_items}
    ref_mel = np.concatenate(list(train_emb.values()))
    ref_kin = np.concatenate(list(train_kin.values()))
    ref_geo = np.concatenate(list(train_geo.values()))
    train_music = [{"dance": t, "chroma_entropy_bits": chroma_entropy(W[t], sr),
                    "onset_rate_hz": len(own_rhythm[t].onsets["loris"]) / dur} for t in train]
    music_sets = {r: np.concatenate([x["_emb"] for x in music[r]]) for r in MUSIC_ROWS if r != "other real songs"}
    kin_sets = {r: np.concatenate([x["_kin_win"] for x in dance[r]]) for r in DANCE_ROWS if r != "other real dances"}
    geo_sets = {r: np.concatenate([x["_geo_win"] for x in dance[r]]) for r in DANCE_ROWS if r != "other real dances"}
    floors = {"mel_fd": split_floor(train_emb, len(evald), lambda ref, x: _fd(x, ref)),
              "kinetic_fd": split_floor(train_kin, len(evald), _fidk),
              "geometric_fd": split_floor(train_geo, len(evald), lambda ref, x: _fd(x, ref))}
    mu, sd = ref_kin.mean(0), ref_kin.std(0) + 1e-10

    def clipnorm(items):
        return np.stack([(x["_kin_clip"] - mu) / sd for x in items])

    # ---- summaries
    def msum(row):
        items = music[row]
        n_in = sum(x["tempo_within_4pct"] for x in items)
        r = {"row": row, "n": len(items), "beatF_70ms": _nanmean(x["beatF_70ms"] for x in items),
             "beatF_100ms": _nanmean(x["beatF_100ms"] for x in items), "tempo_within_4pct": f"{n_in}/{len(items)}",
             "tempo_within_4pct_n": n_in, "tempo_ratio_median": float(np.median([x["tempo_ratio"] for x in items])),
             "mel_fd": floors["mel_fd"]["mean"] if row == "other real songs" else _fd(music_sets[row], ref_mel),
             "mel_fd_vs_true_songs": float("nan") if row == "other real songs" else _fd(music_sets[row], true_mel),
             "chroma_entropy_bits": _nanmean(x["chroma_entropy_bits"] for x in items),
             "onset_rate_hz": _nanmean(x["onset_rate_hz"] for x in items),
             "coherence_z_with_input_dance": _nanmean(x["coherence_z_with_input_dance"] for x in items)}
        if row == "other real songs":  # over every training song, not only the tempo-matched ones
            r["chroma_entropy_bits"] = _nanmean(x["chroma_entropy_bits"] for x in train_music)
            r["onset_rate_hz"] = _nanmean(x["onset_rate_hz"] for x in train_music)
        if row in GENERATED:
            r["per_seed"] = {str(s): {m: _nanmean(x[m] for x in items if x["seed"] == s)
                                      for m in ("beatF_70ms", "beatF_100ms", "chroma_entropy_bits", "onset_rate_hz")}
                             | {"tempo_within_4pct": int(sum(x["tempo_within_4pct"] for x in items if x["seed"] == s)),
                                "mel_fd": _fd(np.concatenate([x["_emb"] for x in items if x["seed"] == s]), ref_mel)}
                             for s in seeds}
        return r

    def dsum(row):
        items = floor_items if row == "other real dances" else dance[row]
        spec_items = dance[row]
        r = {"row": row, "n": len(items),
             "kinetic_fd": floors["kinetic_fd"]["mean"] if row == "other real dances" else _fidk(ref_kin, kin_sets[row]),
             "geometric_fd": floors["geometric_fd"]["mean"] if row == "other real dances" else _fd(geo_sets[row], ref_geo),
             **{m: _nanmean(x[m] for x in items) for m in ("jitter_m_s3", "accel_m_s2", "bone_sd_m", "skating_m_s",
                                                          "contact_fraction", "penetration_m", "penetration_fraction",
                                                          "travel_m")},
             **{m: _nanmean(x[m] for x in spec_items) for m in ("specificity_z", "specificity_bas", "specificity_beatF_100ms",
                                                               "coherence_z_own_song", "coherence_z_other_song")},
             "div_k_clips": diversity(clipnorm(items)) if len(items) > 1 else float("nan"), "div_seeds": float("nan")}
        if row in GENERATED and len(seeds) > 1:
            r["div_seeds"] = _nanmean(diversity(clipnorm([x for x in items if x["dance"] == i])) for i in evald)
        if row == "VAE copy":
            r["mpjpe_root_relative_m"] = _nanmean(x["mpjpe_root_relative_m"] for x in items)
        if row in GENERATED:
            r["per_seed"] = {str(s): {"kinetic_fd": _fidk(ref_kin, np.concatenate([x["_kin_win"] for x in items if x["seed"] == s])),
                                      **{m: _nanmean(x[m] for x in items if x["seed"] == s)
                                         for m in ("jitter_m_s3", "bone_sd_m", "skating_m_s", "specificity_z")}}
                             for s in seeds}
        return r

    msummary = [msum(r) for r in MUSIC_ROWS]
    dsummary = [dsum(r) for r in DANCE_ROWS]
    def clean(items):
        return [{k2: v for k2, v in x.items() if not k2.startswith("_")} for x in items]

    cmd = "momu eval generate --suite outside " + "".join(
        f"--{k} {v} " for k, v in (("sampler", args.sampler), ("schedule", args.schedule), ("beat-steps", args.beat_steps),
                                   ("guidance", args.guidance if args.guidance != 3.5 else None)) if v) + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in (("seeds", args.seeds), ("seconds", args.seconds), ("threads", args.threads),
                                                      ("beat-strength", args.beat_strength), ("max-dances", args.max_dances),
                                                      ("max-other", args.max_other), ("out", args.out)))
    doc = {"command": cmd, "dances": evald, "other_real": train, "seconds_per_dance": dur, "seeds": seeds,
           "sampler": {t: {"sampler": sp.sampler, "schedule": sp.schedule, "steps": sp.steps, "guidance": sp.guidance}
                       for t, sp in spec0.items()} | {"beat_strength": args.beat_strength,
                                                      "guided": {t: sp.sampler for t, sp in spec1.items()}},
           "pairing": pairing, "tempos_own_prior": tempos, "music_summary": msummary, "dance_summary": dsummary,
           "floors": floors, "music_items": clean(sum(music.values(), [])), "dance_items": clean(sum(dance.values(), []) + floor_items),
           "definitions": OUTSIDE_DEFINITIONS, "fd_window_s": args.fd_window, "fd_hop_s": args.fd_hop}
    (out / "outside.json").write_text(json.dumps(doc, indent=1, default=float))
    md = _outside_tables(msummary, dsummary, seeds, dur, len(evald), len(train))
    samp = "; ".join(f"{t}: {sp.steps} {sp.sampler} steps ({sp.schedule or 'its usual'} schedule), CFG {sp.guidance:g}"
                     + (f" ({spec1[t].sampler} with beat guidance)" if spec1[t].sampler != sp.sampler else "")
                     for t, sp in spec0.items())
    (out / "outside.md").write_text(f"`{cmd}`\n\nSamplers: {samp}.\n\n" + md)
    _print_outside(msummary, dsummary, dur, len(evald), seeds)
    paths = [out / "outside_spectrograms.png", out / "outside_sticks.png", out / "outside_beats.png"]
    _fig_spectrograms(paths[0], fig, sr, args.figure_seconds)
    _fig_sticks(paths[1], fig, fps)
    _fig_beats(paths[2], fig, fps, sr, args.figure_seconds)
    print(f"wrote {out / 'outside.json'}, {out / 'outside.md'}, " + ", ".join(str(p) for p in paths))
    return 0


OUTSIDE_DEFINITIONS = {
    "beatF": "beat F-measure (+-70 / +-100 ms, one-to-one matching) of the row music's beats against the TRUE music's beats; "
             "both from librosa beat_track through models/beats.py with the dance's genre tempo prior",
    "tempo": "tracked tempo of the row music / the true music's; 'within 4 %' counts |ratio - 1| <= 0.04 (octave errors miss)",
    "mel_fd": "Frechet distance (models/fad.py) of melstat-v1 window embeddings (1-s windows, 0.5-s hop, 128-d) of the row's "
              "clips against those of the training songs (first seconds as the clips); 'true music' (held-out real songs) "
              "is the real-vs-real floor; 'other real songs': n_eval random training songs against the other training "
              "songs (mean of 5 draws); mel_fd_vs_true_songs (JSON): against the evaluated dances' true songs",
    "chroma_entropy": "mean entropy (bits) of the 12-bin chroma per frame (frames > -60 dB of the loudest); max 3.585",
    "onset_rate": "LORIS-preset onsets per second",
    "kinetic_fd": "Bailando FID_k: AIST++ kinetic features (60 fps) of 5-s windows (1-s hop), normalised by the training "
                  "(other real) dances' windows' mean/std, Frechet distance to them; 'real dance' (held-out real dances) "
                  "is the real-vs-real floor; 'other real dances': n_eval random training dances against the rest (5 draws)",
    "geometric_fd": "Frechet distance of per-window fractions of 26 boolean relational pose features (models/kinematics."
                    "geometric_features; Mueller-style, our set, not AIST++'s 33), not normalised; reference and floors as "
                    "kinetic_fd",
    "jitter": "mean joint jerk |d3x/dt3| in m/s^3 by third finite differences at the model rate 21.53 fps (every motion "
              "resampled to it)",
    "bone_sd": "mean over the 17 bones of the SD over frames of the bone length",
    "skating": "mean horizontal speed of the lowest foot point (ankle or toe) while it is < 5 cm above the floor y = 0",
    "penetration": "mean depth of the lowest joint below the floor y = 0",
    "travel": "pelvis floor-track length, sampled every 0.5 s",
    "div_seeds": "mean pairwise distance of normalised clip kinetic features across seeds of the same dance (same song)",
    "div_k_clips": "Bailando Div_k: mean pairwise distance over all clips of the row",
    "specificity": "coherence z (genre lock, models/metrics) of the dance with its own song minus with another song of "
                   "similar tempo (another validation song within 6 %, else the nearest-tempo training song of the genre); "
                   "'other real dances' row: the next validation dance (made for another song) in place of the dance",
    "coherence_z_with_input_dance": "IN THE LOOP for guided rows: the beat-grid coherence beat guidance optimises",
}


def _fmt(x, spec=".3f") -> str:
    import math

    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


MUSIC_COLS = (("beat F 100 ms", "beatF_100ms", ".3f"), ("beat F 70 ms", "beatF_70ms", ".3f"),
              ("tempo within 4 %", "tempo_within_4pct", "s"), ("tempo ratio (median)", "tempo_ratio_median", ".3f"),
              ("mel FD", "mel_fd", ",.0f"), ("chroma entropy (bits)", "chroma_entropy_bits", ".2f"),
              ("onsets / s", "onset_rate_hz", ".2f"), ("in-loop: coherence z w/ dance", "coherence_z_with_input_dance", ".2f"))
DANCE_COLS = (("kinetic FD", "kinetic_fd", ",.0f"), ("geom. FD", "geometric_fd", ".2f"),
              ("jitter m/s^3", "jitter_m_s3", ".0f"), ("bone SD mm", "bone_sd_mm", ".1f"),
              ("skating cm/s", "skating_cm_s", ".1f"), ("contact %", "contact_pct", ".0f"),
              ("penetr. cm", "penetration_cm", ".2f"), ("travel m", "travel_m", ".1f"),
              ("div seeds", "div_seeds", ".2f"), ("Div_k", "div_k_clips", ".2f"),
              ("song specif. z", "specificity_z", ".2f"), ("specif. BAS", "specificity_bas", ".3f"),
              ("in-loop: coh. z own song", "coherence_z_own_song", ".2f"))


def _dance_view(r: dict) -> dict:
    return {**r, "bone_sd_mm": r["bone_sd_m"] * 1000, "skating_cm_s": r["skating_m_s"] * 100,
            "contact_pct": r["contact_fraction"] * 100, "penetration_cm": r["penetration_m"] * 100}


def _outside_tables(msummary, dsummary, seeds, dur, n_dances, n_other) -> str:
    lines = [f"Music (motion -> music; {n_dances} validation dances x first {dur:.1f} s; generated rows: seeds "
             f"{','.join(map(str, seeds))}; mel FD against the {n_other} training songs, 'true music' = the real-vs-real "
             f"floor; 'other real songs': beat F/tempo of the tempo-nearest training song of the dance's genre, FD of "
             f"{n_dances} random training songs against the others, entropy/onsets over all {n_other})", "",
             "| row | " + " | ".join(c for c, _, _ in MUSIC_COLS) + " |", "|---" * (len(MUSIC_COLS) + 1) + "|"]
    for r in msummary:
        lines.append(f"| {r['row']} | " + " | ".join(_fmt(r[k], f) for _, k, f in MUSIC_COLS) + " |")
    lines += ["", f"Dance (music -> motion; same dances; Frechet distances against the {n_other} training dances, 'real "
              f"dance' = the real-vs-real floor; 'other real dances': per-dance statistics over the {n_other}, FD of "
              f"{n_dances} random ones against the others, specificity of the next validation dance (made for another "
              "song) with this song)", "",
              "| row | " + " | ".join(c for c, _, _ in DANCE_COLS) + " |", "|---" * (len(DANCE_COLS) + 1) + "|"]
    for r in dsummary:
        v = _dance_view(r)
        lines.append(f"| {r['row']} | " + " | ".join(_fmt(v[k], f) for _, k, f in DANCE_COLS) + " |")
    vae = next(r for r in dsummary if r["row"] == "VAE copy")
    lines += ["", f"VAE copy MPJPE (root-relative): {vae['mpjpe_root_relative_m'] * 1000:.0f} mm."]
    return "\n".join(lines) + "\n"


def _print_outside(msummary, dsummary, dur, n_dances, seeds) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=240)
    t = Table(title=f"music, outside the loop ({n_dances} dances x {dur:.1f} s, seeds {','.join(map(str, seeds))})")
    t.add_column("row")
    for c, _, _ in MUSIC_COLS:
        t.add_column(c, justify="right")
    for r in msummary:
        t.add_row(r["row"], *(_fmt(r[k], f) for _, k, f in MUSIC_COLS))
    con.print(t)
    t = Table(title="dance, outside the loop")
    t.add_column("row")
    for c, _, _ in DANCE_COLS:
        t.add_column(c, justify="right")
    for r in dsummary:
        v = _dance_view(r)
        t.add_row(r["row"], *(_fmt(v[k], f) for _, k, f in DANCE_COLS))
    con.print(t)


def _fig_spectrograms(path, fig, sr, seconds) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from momu_live.models.audio import log_mel
    from momu_live.models.beats import analyse_music, beat_params_for
    from momu_live.models.timebase import DEFAULT_TIMEBASE as tb

    rows = [("true music", fig["true_wav"], fig["ref"]),
            ("VAE + vocoder copy", fig["vae_wav"], analyse_music(fig["vae_wav"], sr, beat_params_for(None))),
            *[(row, *fig[f"music:{row}"]) for row in GENERATED]]
    n = int(seconds * sr)
    mels = [log_mel(torch.from_numpy(np.ascontiguousarray(w[:n]))).numpy() for _, w, _ in rows]
    lo, hi = np.percentile(np.concatenate([m.ravel() for m in mels]), [2, 99.5])
    f, axes = plt.subplots(len(rows), 1, figsize=(11, 2.3 * len(rows)), sharex=True)
    for ax, (title, _, rh), m in zip(axes, rows, mels):
        ext = [0, m.shape[1] / float(tb.mel_rate), 0, m.shape[0]]
        ax.imshow(m, origin="lower", aspect="auto", extent=ext, vmin=lo, vmax=hi, cmap="magma")
        for b in fig["ref"].beats[fig["ref"].beats < seconds]:
            ax.plot([b, b], [0, 6], color="cyan", lw=1.5)
        for b in rh.beats[rh.beats < seconds]:
            ax.plot([b, b], [74, 80], color="white", lw=1.5)
        ax.set_ylabel("mel band")
        ax.set_title(f"{fig['dance']}: {title}   (white ticks: its tracked beats, {rh.tempo:.1f} BPM; cyan: true music's beats)",
                     fontsize=9)
    axes[-1].set_xlabel("time (s)")
    f.tight_layout()
    f.savefig(path, dpi=80)
    plt.close(f)


def _fig_sticks(path, fig, fps, times=(4.0, 4.5, 5.0, 5.5, 6.0, 6.5)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from momu_live.models.skeleton import BONES, JOINT_INDEX
    from momu_live.render import stick_panel

    rows = [("real dance", fig["real"]), ("VAE copy", fig["vae"]), *[(row, fig[f"dance:{row}"]) for row in GENERATED]]
    left = {i for nm, i in JOINT_INDEX.items() if nm.startswith("l_")}
    times = [t for t in times if int(round(t * fps)) < len(fig["real"])] or [0.0]
    f, axes = plt.subplots(len(rows), len(times), figsize=(1.7 * len(times), 2.6 * len(rows)), squeeze=False)
    for r, (name, j) in enumerate(rows):
        for c, t in enumerate(times):
            ax = axes[r, c]
            p = j[int(round(t * fps))]
            x = p[:, 0] - p[0, 0]
            for a, b in BONES:
                ax.plot([x[a], x[b]], [p[a, 1], p[b, 1]], color="tab:orange" if b in left else "tab:blue", lw=2)
            stick_panel(ax, f"{t:.1f} s" if r == 0 else None, name if c == 0 else None)
    f.suptitle(f"{fig['dance']}: world x-y projection (seen from +z; the dancer turns), pelvis centred; "
               "orange = left side, grey line = floor y = 0", fontsize=9)
    f.tight_layout()
    f.savefig(path, dpi=80)
    plt.close(f)


def _fig_beats(path, fig, fps, sr, seconds) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from momu_live.models.beats import onset_strength
    from momu_live.models.kinematics import feet_speed

    f, (a1, a2) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    tracks = [("true music", fig["true_wav"], fig["ref"].beats, "k"),
              ("dancer grid (click track)", None, np.asarray(fig["grid"].beats), "tab:purple"),
              *[(row, fig[f"music:{row}"][0], fig[f"music:{row}"][1].beats, col)
                for row, col in zip(GENERATED, ("tab:blue", "tab:green", "tab:red"))]]
    for k, (name, wav, beats, col) in enumerate(tracks):
        y0 = -1.3 * k
        if wav is not None:
            env = onset_strength(wav[: int(seconds * sr)], sr)
            a1.plot(np.arange(len(env)) * 512 / sr, y0 + env / (env.max() or 1), color=col, lw=0.7, alpha=0.6)
        b = beats[beats < seconds]
        a1.vlines(b, y0, y0 + 1.0, color=col, lw=1.6, label=name)
    a1.set_yticks([])
    a1.set_title(f"{fig['dance']}: music onset strength and tracked beats (ticks); generated music against the true beats",
                 fontsize=9)
    a1.legend(loc="upper right", fontsize=7, ncol=4)
    n = int(seconds * fps)
    for k, (name, j, col) in enumerate([("real dance", fig["real"], "k"),
                                        *[(row, fig[f"dance:{row}"], col) for row, col in
                                          zip(GENERATED, ("tab:blue", "tab:green", "tab:red"))]]):
        fs = feet_speed(j[:n], fps)
        scale = float(np.percentile(fs, 99)) or 1.0  # not the max: a generated start-up frame can spike
        a2.plot(np.arange(len(fs)) / fps, -1.3 * k + np.minimum(fs / scale, 1.1), color=col, lw=1.0,
                label=f"{name}: feet speed")
    b = fig["ref"].beats
    a2.vlines(b[b < seconds], -3.0, 1.0, color="0.5", lw=0.6, linestyles=":", label="true music's beats")
    a2.set_yticks([])
    a2.set_xlabel("time (s)")
    a2.set_title("dance generated from the true music: feet speed (steps are the dips) against the music's beats", fontsize=9)
    a2.legend(loc="upper right", fontsize=7, ncol=4)
    f.tight_layout()
    f.savefig(path, dpi=80)
    plt.close(f)
