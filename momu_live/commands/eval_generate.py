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
    p.add_argument("--beat-iters", type=int, default=None, help="gradient steps per sampling step (default: BeatSpec's)")
    p.add_argument("--beat-steps", type=int, default=4, help="sampling steps of the guided rows")
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
    from momu_live.models.guidance import BeatSpec, grid_from_motion, grid_from_music
    from momu_live.models.metrics import score_pair
    from momu_live.models.motion import Motion
    from momu_live.models.pretrained import load_pipeline
    from momu_live.models.timebase import DEFAULT_TIMEBASE as tb
    from momu_live.models.vae import motion_features

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
