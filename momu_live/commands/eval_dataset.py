"""``momu eval dataset``: every metric on ground-truth pairs vs a shuffled-pair baseline (music of another dance)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dataset",
        help="score ground-truth motion/music pairs against shuffled pairs (table, JSON, PNG)",
        description=(
            "Cuts every dance of a DwM-format folder into clips, scores each clip with its own music (GT) and with "
            "the music of another dance at the same time (shuffled: a fixed derangement, seed 0), prints GT vs "
            "shuffled for every metric with the gap and the paired win rate, and writes eval_dataset.json and "
            "beats_<dance>.png. Coherence is also reported per whole dance (the DwM README statistic)."
        ),
    )
    p.add_argument("--data", required=True, help="DwM-format folder (index.csv, skeleton.json, <dance>/...)")
    p.add_argument("--out", default="eval_dataset", help="output folder (JSON, PNG, music-beat cache)")
    p.add_argument("--max-dances", type=int, default=None, help="use only the first N dances of index.csv")
    p.add_argument("--seconds-per-clip", type=float, default=10.0, help="clip length (s); clips do not overlap")
    p.add_argument("--exclude-low", action="store_true",
                   help="drop dances whose alignment_confidence is 'low' (DwM README: timing not verified)")
    p.add_argument("--no-genre-prior", action="store_true",
                   help="beat-track every song with librosa's default 120 BPM prior (the field's setting) instead of "
                        "the ballroom tempo prior of its genre")
    p.add_argument("--seed", type=int, default=0, help="seed of the derangement that picks the shuffled music")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object instead of the table")
    p.set_defaults(func=run)


def derangement(n: int, seed: int = 0) -> list[int]:
    """A permutation without fixed points (one random cycle): partner[i] != i for all i (n >= 2)."""
    import numpy as np

    if n < 2:
        from momu_live import MomuError

        raise MomuError("the shuffled baseline needs at least 2 dances")
    order = np.random.default_rng(seed).permutation(n)
    partner = [0] * n
    for k in range(n):
        partner[int(order[k])] = int(order[(k + 1) % n])
    return partner


def _music_cache(out_dir, pair, clips_windows, beat_params):
    """Per-dance music analysis, cached as JSON keyed by the audio length, checksum and settings."""
    import hashlib
    import json

    import numpy as np

    from dataclasses import asdict

    from momu_live.models.beats import MusicRhythm, analyse_music_clips

    key = hashlib.sha1(np.ascontiguousarray(pair.wav[:: max(1, len(pair.wav) // 100000)]).tobytes()).hexdigest()[:16]
    key += f"-{len(pair.wav)}-" + hashlib.sha1(json.dumps([clips_windows, asdict(beat_params)]).encode()).hexdigest()[:8]
    path = out_dir / "cache" / f"music_{pair.name}.json"
    if path.exists():
        try:
            d = json.loads(path.read_text())
            if d.get("key") == key:
                return MusicRhythm.from_json(d["whole"]), [MusicRhythm.from_json(c) for c in d["clips"]]
        except (ValueError, KeyError):
            pass
    whole, clips = analyse_music_clips(pair.wav, pair.sample_rate, clips_windows, beat_params)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "whole": whole.to_json(), "clips": [c.to_json() for c in clips]}))
    return whole, clips


def run(args: argparse.Namespace) -> int:
    import csv
    import json
    import math
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from momu_live import MomuError
    from momu_live.models import datasets as D
    from momu_live.models import metrics as M
    from momu_live.models.beats import beat_params_for
    from momu_live.models.fad import fad_melstat
    from momu_live.models.timebase import DEFAULT_TIMEBASE

    data, out = Path(args.data), Path(args.out)
    if not data.is_dir():
        raise MomuError(f"--data {data} is not a folder")
    S = float(args.seconds_per_clip)
    if not (S >= 2.0):
        raise MomuError(f"--seconds-per-clip must be >= 2 (got {S})")
    ids = D.dwm_ids(data)
    if args.exclude_low:
        with open(data / "index.csv") as f:
            low = {r["dance_id"] for r in csv.DictReader(f) if r.get("alignment_confidence") == "low"}
        ids = [i for i in ids if i not in low]
    ids = ids[: args.max_dances] if args.max_dances else ids
    if len(ids) < 2:
        raise MomuError("need at least 2 dances (the shuffled baseline pairs each motion with another dance's music)")
    with open(data / "index.csv") as f:
        readme_z = {r["dance_id"]: float(r["alignment_z"]) for r in csv.DictReader(f) if r.get("alignment_z")}
    out.mkdir(parents=True, exist_ok=True)
    pairs = [D.load_dwm(data, [i])[0] for i in tqdm(ids, desc="load", unit="dance")]
    partner = derangement(len(pairs), args.seed)

    # clip windows per dance: [k S, (k+1) S) inside the common duration of the motion and both musics it meets
    def n_clips(i):
        dur = min(pairs[i].motion.seconds, pairs[i].seconds, pairs[partner[i]].seconds)
        return int(math.floor(dur / S + 1e-9))

    windows = {}
    for i, p in enumerate(pairs):  # music i is used as GT of i and as the shuffled music of j with partner[j] = i
        users = [i] + [j for j in range(len(pairs)) if partner[j] == i]
        windows[i] = [(k * S, (k + 1) * S) for k in range(max(n_clips(u) for u in users))]
    music = {}
    for i, p in enumerate(tqdm(pairs, desc="music beats", unit="dance")):
        music[i] = _music_cache(out, p, windows[i], beat_params_for(p.genre, not args.no_genre_prior))

    rows_gt, rows_sh, rows_mm, clip_info, kin = [], [], [], [], []
    dance_coh = []
    for i, p in enumerate(tqdm(pairs, desc="score", unit="dance")):
        m, fps, j = p.motion, p.motion.fps, partner[i]
        nf = int(round(S * fps))
        for k in range(n_clips(i)):
            f0 = int(round(k * S * fps))
            joints = m.joints[f0:f0 + nf]
            if len(joints) < nf:
                break
            mot = M.motion_rhythm(joints, fps)
            gt = M.score_rhythms(music[i][1][k], mot, fps, S, p.genre)
            sh = M.score_rhythms(music[j][1][k], mot, fps, S, p.genre)
            rows_gt.append(M.headline(gt))
            rows_sh.append(M.headline(sh))
            mm = M.score_music_pair(music[i][1][k], music[j][1][k], S)
            rows_mm.append({**{f"{v}_{s}": mm["binned"][v][s] for v in ("loris", "d2m_v1", "fine_5hz") for s in ("bcs", "bhs")},
                            **{f"beatF_{t}": mm["beat_f"][t]["f"] for t in ("70ms", "100ms")}})
            clip_info.append({"dance": p.name, "genre": p.genre, "clip": k, "start_s": k * S, "shuffled_music": pairs[j].name,
                              "gt_bin": {v: gt["binned"][mn][v] for mn in ("flux_beats",) for v in ("loris", "d2m_v1", "fine_5hz")},
                              "sh_bin": {v: sh["binned"][mn][v] for mn in ("flux_beats",) for v in ("loris", "d2m_v1", "fine_5hz")}})
            kin.append((p.name, M.kinetic_features(joints, fps)))
        # whole-dance coherence (the DwM README statistic), cropped to the common duration
        T = min(m.n_frames, int(math.floor(min(p.seconds, pairs[j].seconds) * fps)))
        feet = M.motion_rhythm(m.joints[:T], fps)
        bpb = M.beats_per_bar(p.genre)
        row = {"dance": p.name, "genre": p.genre, "shuffled_music": pairs[j].name}
        for tag, mus in (("gt", music[i][0]), ("sh", music[j][0])):
            row[f"{tag}_feet_beat"] = M.beat_grid_coherence(feet["feet_speed"], fps, mus.beats, 1)["z"]
            row[f"{tag}_pelvis_beat"] = M.beat_grid_coherence(feet["pelvis_height"], fps, mus.beats, 1)["z"]
            row[f"{tag}_pelvis_bar"] = M.beat_grid_coherence(feet["pelvis_height"], fps, mus.beats, bpb)["z"]
            row[f"{tag}_genre_lock"] = row[f"{tag}_pelvis_bar"] if bpb == 3 else row[f"{tag}_feet_beat"]
        row["readme_alignment_z"] = readme_z.get(p.name)
        mus = music[i][0]
        row["beat_phase"] = M.beat_phase_audit(feet["feet_speed"], fps, mus.beats, mus.onsets.get("loris", mus.beats))
        dance_coh.append(row)
    if not rows_gt:
        raise MomuError(f"no clip of {S} s fits in the dances; lower --seconds-per-clip")

    # ---- summaries -----------------------------------------------------------------------------
    def summ(a, b):
        a, b = np.asarray(a, float), np.asarray(b, float)
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        return {"gt": float(a.mean()), "shuffled": float(b.mean()), "gap": float(a.mean() - b.mean()),
                "ratio": float(a.mean() / b.mean()) if b.mean() != 0 else None,
                "gt_wins": float(np.mean(a > b)) if len(a) else None, "n": int(len(a))}

    summary = {name: summ([r[name] for r in rows_gt], [r[name] for r in rows_sh]) for name in rows_gt[0]}
    loris = {}
    for tag, rows in (("gt", rows_gt), ("shuffled", rows_sh)):
        for v in ("loris", "d2m_v1", "fine_5hz"):
            for short in ("flux", "spdmin"):
                loris[f"{tag}:{v}[{short}]"] = M.summarize_beat_scores([(r[f"{v}_bcs[{short}]"], r[f"{v}_bhs[{short}]"]) for r in rows])
    for v in ("loris", "d2m_v1", "fine_5hz"):
        loris[f"music_vs_music_shuffled:{v}"] = M.summarize_beat_scores([(r[f"{v}_bcs"], r[f"{v}_bhs"]) for r in rows_mm])
    mm_summary = {k: float(np.nanmean([r[k] for r in rows_mm])) for k in rows_mm[0]}
    dance_summary = {}
    for key in ("feet_beat", "pelvis_beat", "pelvis_bar", "genre_lock"):
        a = np.array([r[f"gt_{key}"] for r in dance_coh], float)
        b = np.array([r[f"sh_{key}"] for r in dance_coh], float)
        dance_summary[f"dance_coh_z[{key}]"] = {"gt": float(np.nanmedian(a)), "shuffled": float(np.nanmedian(b)),
                                                "gap": float(np.nanmedian(a) - np.nanmedian(b)),
                                                "ratio": float(np.nanmedian(a) / np.nanmedian(b)) if np.nanmedian(b) else None,
                                                "gt_wins": float(np.mean(a > b)), "n": int(len(a)), "stat": "median over dances"}
    zz = np.array([(r["gt_genre_lock"], r["readme_alignment_z"]) for r in dance_coh if r["readme_alignment_z"] is not None], float)
    if len(zz) > 2 and np.all(np.isfinite(zz)):
        from scipy.stats import spearmanr

        dance_summary["spearman_genre_lock_vs_index_alignment_z"] = float(spearmanr(zz[:, 0], zz[:, 1])[0])
    beat_phase = _phase_consistency(dance_coh)
    # distribution metrics (pairing-invariant: GT and shuffled sets hold the same motions and the same musics)
    val_ids = set(D.DWM_VALIDATION) & {p.name for p in pairs}
    dist = {"note": "FID_k, Div_k and FAD compare sets; shuffling the pairing does not change them (gap 0 by construction)"}
    feats = np.array([f for _, f in kin])
    dist["div_k_gt_clips"] = M.diversity(M.normalize_features(feats, feats)[0])
    if val_ids and len(val_ids) < len(pairs):
        fv = np.array([f for n, f in kin if n in val_ids])
        ft = np.array([f for n, f in kin if n not in val_ids])
        if len(fv) > 2 and len(ft) > 2:
            dist["fid_k_val_vs_train"] = M.fid_k(ft, fv)
        wv = [p.wav for p in pairs if p.name in val_ids]
        wt = [p.wav for p in pairs if p.name not in val_ids]
        dist["fad_melstat_val_vs_train"] = fad_melstat(wt, wv, pairs[0].sample_rate)
        dist["fad_label"] = "melstat-v1 (log-mel statistics, fixed random projection): NOT comparable with VGGish FAD"

    result = {
        "data": str(data), "dances": [p.name for p in pairs], "seconds_per_clip": S, "n_clips": len(rows_gt),
        "shuffle": {p.name: pairs[partner[i]].name for i, p in enumerate(pairs)}, "seed": args.seed,
        "exclude_low": bool(args.exclude_low), "genre_prior": not args.no_genre_prior,
        "tempo": {p.name: music[i][0].tempo for i, p in enumerate(pairs)},
        "summary": summary, "loris_aggregates": loris, "music_vs_music_shuffled": mm_summary,
        "dance_coherence": dance_summary, "dance_coherence_rows": dance_coh, "distribution": dist,
        "beat_phase": beat_phase,
        "settings": {"bas_fps": M.BAS_FPS, "bas_sigma_frames": M.BAS_SIGMA_FRAMES, "sample_rate": DEFAULT_TIMEBASE.sample_rate, "hop": 512,
                     "music_params": music[0][0].params},
        "clips": [{**c, "gt": g, "shuffled": s} for c, g, s in zip(clip_info, rows_gt, rows_sh)],
    }
    from momu_live.commands.eval_beats import _finite

    (out / "eval_dataset.json").write_text(json.dumps(_finite(result), indent=1))
    ip = next((i for i, p in enumerate(pairs) if "waltz" in p.genre.lower()), 0)  # a waltz shows the grid best
    png = _plot(out, pairs[ip], music[ip][1][0], music[partner[ip]][1][0], pairs[partner[ip]].name, S)
    _plot_phase(out / "beat_phase.png", dance_coh)
    if args.json:
        print(json.dumps(_finite({k: result[k] for k in ("n_clips", "summary", "loris_aggregates", "dance_coherence",
                                                            "distribution", "beat_phase")})))
        return 0
    _print_table(result, out / "eval_dataset.json", png)
    return 0


def _phase_consistency(rows: list[dict]) -> dict:
    """Per genre and over all dances: how consistently the feet peak at one beat phase across dances (circular mean
    and resultant length R of the per-dance lags feet - onsets, in beats) and how consistently the tracker's beats
    sit on the onsets (R of the per-dance onset phases).  R near 1: one phase for the style; near 0: spread evenly."""
    import numpy as np

    from momu_live.models.metrics import circular_mean

    out = {}
    genres = sorted({r["genre"] for r in rows})
    for g in genres + ["all"]:
        rs = [r for r in rows if g in ("all", r["genre"])]
        lags = [r["beat_phase"]["lag_s"] / r["beat_phase"]["beat_period_s"] for r in rs]
        lag = circular_mean(lags)
        out[g] = {"n": len(rs), "lag_phase_mean": lag["phase"], "lag_R_across_dances": lag["R"],
                  "onset_R_across_dances": circular_mean([r["beat_phase"]["onset_phase"] for r in rs])["R"],
                  "feet_R_within_dance_median": float(np.nanmedian([r["beat_phase"]["feet_R"] for r in rs])),
                  "lag_ms_range": [float(1000 * np.nanmin([r["beat_phase"]["lag_s"] for r in rs])),
                                   float(1000 * np.nanmax([r["beat_phase"]["lag_s"] for r in rs]))]}
    return out


def _plot_phase(path, rows: list[dict]):
    """Polar picture of ``beat_phase``: per dance, the onsets' beat phase (outer ring) and the feet-speed peak's
    lag behind them (inner points, radius = within-dance lock R), coloured by genre."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig = plt.figure(figsize=(6.4, 6.4))
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_zero_location("N")
    ax.set_theta_direction(-1)
    cols = dict(zip(sorted({r["genre"] for r in rows}), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for r in rows:
        b = r["beat_phase"]
        lag = b["lag_s"] / b["beat_period_s"]
        ax.plot([2 * np.pi * lag], [b["feet_R"]], "o", color=cols[r["genre"]], ms=7, alpha=0.85)
        ax.plot([2 * np.pi * b["onset_phase"]], [0.33], "x", color=cols[r["genre"]], ms=6)
    for g, c in cols.items():
        ax.plot([], [], "o", color=c, label=g)
    ax.plot([], [], "x", color="k", label="music onsets' phase (r fixed)")
    ax.set_rmax(0.35)
    ax.set_title("Feet-speed peak relative to the music's onsets, one point per dance\n"
                 "(angle: lag in beats, 0 = on the onsets; radius: lock within the dance)", fontsize=9)
    ax.legend(loc="lower left", bbox_to_anchor=(-0.15, -0.15), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _print_table(result: dict, json_path, png) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def f(x, nd=3):
        return "-" if x is None else f"{x:.{nd}f}"

    t = Table(title=f"GT vs shuffled pairs: {len(result['dances'])} dances, {result['n_clips']} clips of "
                    f"{result['seconds_per_clip']:g} s (motion vs music; beat grid "
                    f"{'with genre tempo prior' if result['genre_prior'] else 'librosa default prior'})")
    for c, j in (("metric", "left"), ("GT", "right"), ("shuffled", "right"), ("gap", "right"), ("ratio", "right"), ("GT wins", "right")):
        t.add_column(c, justify=j)
    for name, s in list(result["summary"].items()) + list(result["dance_coherence"].items()):
        if not isinstance(s, dict):
            continue
        t.add_row(escape(name), f(s["gt"]), f(s["shuffled"]), f(s["gap"]), f(s["ratio"], 2), f(s["gt_wins"], 2))
    c = Console()
    c.print(t)
    rho = result["dance_coherence"].get("spearman_genre_lock_vs_index_alignment_z")
    if rho is not None:
        c.print(f"Spearman rho of GT dance_coh_z[genre_lock] vs index.csv alignment_z (madmom grid): {rho:.2f}")
    t2 = Table(title="LORIS aggregates over clips (BCS, CSD, BHS, HSD, F1); reference = music onsets")
    for col in ("pairing:variant[motion beats]", "BCS", "CSD", "BHS", "HSD", "F1"):
        t2.add_column(col, justify="left" if col.startswith("pairing") else "right")
    for k, v in result["loris_aggregates"].items():
        t2.add_row(escape(k), f(v["BCS"]), f(v["CSD"]), f(v["BHS"]), f(v["HSD"]), f(v["F1"]))
    c.print(t2)
    t3 = Table(title="Distribution metrics (pairing-invariant)")
    t3.add_column("metric")
    t3.add_column("value", justify="right")
    for k, v in result["distribution"].items():
        t3.add_row(k, f(v) if isinstance(v, float) else str(v))
    c.print(t3)
    t4 = Table(title="Beat phase across dances: feet-speed peak minus the music's onsets (R 1: one phase for all "
                     "dances of the style; 0: spread evenly)")
    for col in ("genre", "dances", "lag R across dances", "lag range ms", "feet lock R in a dance (median)",
                "onset phase R across songs"):
        t4.add_column(col, justify="left" if col == "genre" else "right")
    for g, v in result["beat_phase"].items():
        t4.add_row(g, str(v["n"]), f(v["lag_R_across_dances"], 2), f"{v['lag_ms_range'][0]:+.0f} .. {v['lag_ms_range'][1]:+.0f}",
                   f(v["feet_R_within_dance_median"], 3), f(v["onset_R_across_dances"], 2))
    c.print(t4)
    c.print(f"JSON: {json_path}\nplot: {png}")


def _plot(out, pair, gt_music, sh_music, sh_name: str, S: float):
    """PNG of music beats/onsets vs kinematic beats over the first clip of one dance (GT and shuffled music)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from momu_live.models import kinematics as K

    fps = pair.motion.fps
    joints = pair.motion.joints[: int(round(S * fps))]
    t = np.arange(len(joints)) / fps
    q = K.kinematic_amplitude(joints, fps)
    feet = K.feet_speed(joints, fps)
    flux_b, spd_b = K.flux_beats(joints, fps), K.speed_minima_beats(joints, fps)
    wav = pair.wav[: int(S * pair.sample_rate)]
    fig, ax = plt.subplots(4, 1, figsize=(12, 8), sharex=True)
    ta = np.arange(len(wav)) / pair.sample_rate
    ax[0].plot(ta, wav, lw=0.3, color="0.5")
    ax[0].vlines(gt_music.onsets["loris"], -1, 0, color="tab:orange", lw=1.2, label="onsets (LORIS preset)")
    ax[0].vlines(gt_music.beats, 0, 1, color="tab:red", lw=1.6, label="beats (beat_track)")
    ax[0].set_ylabel("music")
    ax[0].legend(loc="upper right", fontsize=7)
    ax[1].plot(t, q / max(q.max(), 1e-9), color="tab:blue", lw=1)
    ax[1].vlines(flux_b, 0, 1, color="tab:blue", lw=1.2, linestyles=":", label="flux beats")
    ax[1].vlines(gt_music.beats, 0, 1, color="tab:red", lw=0.8, alpha=0.6, label="music beats")
    ax[1].set_ylabel("kinematic Q")
    ax[1].legend(loc="upper right", fontsize=7)
    ax[2].plot(t, feet, color="tab:green", lw=1)
    ax[2].vlines(spd_b, 0, feet.max(), color="tab:green", lw=1.2, linestyles=":", label="speed minima (Bailando)")
    ax[2].vlines(gt_music.beats, 0, feet.max(), color="tab:red", lw=0.8, alpha=0.6, label="music beats")
    ax[2].set_ylabel("feet speed m/s")
    ax[2].legend(loc="upper right", fontsize=7)
    ax[3].vlines(gt_music.beats, 0.55, 1.0, color="tab:red", lw=1.5, label=f"GT music beats ({pair.name})")
    ax[3].vlines(sh_music.beats, 0.0, 0.45, color="tab:purple", lw=1.5, label=f"shuffled music beats ({sh_name})")
    ax[3].vlines(flux_b, 0.45, 0.55, color="tab:blue", lw=2, label="flux beats")
    ax[3].set_yticks([])
    ax[3].legend(loc="upper right", fontsize=7)
    ax[3].set_xlabel("time (s)")
    fig.suptitle(f"{pair.name} ({pair.genre}): music beats vs kinematic beats, first {S:g} s")
    fig.tight_layout()
    path = out / f"beats_{pair.name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
