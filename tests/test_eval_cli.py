"""`momu eval beats` and `momu eval dataset` as a user runs them (the CLI in-process, real files, synthetic data)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from momu_live.models.audio import save_wav
from momu_live.models.beats import click_track
from momu_live.models.motion import synthetic_dance
from momu_live.models.skeleton import JOINT_INDEX

SR = 22050


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    m = synthetic_dance(12.0, 25.0, bpm=120.0, seed=2)
    m.save(d / "dance.npz")
    save_wav(d / "click.wav", click_track(np.arange(0, 12, 0.5), 12.0, SR), SR)
    save_wav(d / "click_long.wav", click_track(np.arange(0, 15, 0.5), 15.0, SR), SR)
    save_wav(d / "silent.wav", np.zeros(SR * 12, np.float32), SR)
    bad = m.joints.copy()
    bad[5, 3] = np.nan
    np.savez(d / "nan.npz", joints=bad, fps=25.0, joint_names=np.array(m.joint_names))
    np.savez(d / "flat.npz", joints=m.joints[..., 0], fps=25.0, joint_names=np.array(m.joint_names))
    return d


def test_eval_beats_json_is_one_object_with_every_metric(pair, momu_cli):
    r = momu_cli("eval", "beats", "--motion", str(pair / "dance.npz"), "--music", str(pair / "click.wav"), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)  # exactly one JSON object on stdout
    assert set(s) >= {"crop", "music", "motion", "binned", "beat_f", "bas", "coherence", "kinetic_features"}
    assert abs(s["music"]["tempo_bpm"] - 120) < 3 and s["crop"]["cropped"] is False
    for mb in ("flux_beats", "speed_minima"):
        assert set(s["binned"][mb]) == {"loris", "d2m_v1", "fine_5hz"}
        assert 0 <= s["beat_f"][mb]["70ms"]["f"] <= 1
    assert s["bas"]["fps"] == 60 and s["bas"]["sigma_frames"] == 3
    assert s["coherence"]["feet_speed_beat"]["z"] > 5  # the dancer steps on the clicks


def test_eval_beats_crops_to_common_duration(pair, momu_cli):
    r = momu_cli("eval", "beats", "--motion", str(pair / "dance.npz"), "--music", str(pair / "click_long.wav"), "--json")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)["crop"]
    assert c["cropped"] and c["scored_seconds"] == pytest.approx(12.0) and c["music_seconds"] == pytest.approx(15.0)


@pytest.mark.parametrize("motion,music,msg", [
    ("dance.npz", "silent.wav", "silent"),
    ("nan.npz", "click.wav", "NaN"),
    ("flat.npz", "click.wav", r"\[T, J, 3\]"),
    ("missing.npz", "click.wav", "not found"),
    ("dance.npz", "missing.wav", "not found"),
])
def test_eval_beats_bad_input_exits_2_with_a_clear_message(pair, motion, music, msg, momu_cli):
    import re

    r = momu_cli("eval", "beats", "--motion", str(pair / motion), "--music", str(pair / music), "--json")
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and re.search(msg, r.stderr), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


# DwM 23-joint names (the shared format's skeleton.json) and the canonical joint each is built from
DWM_FROM_CANONICAL = {
    "head_left": "head", "head_right": "head", "spine": "spine", "left_shoulder": "l_shoulder", "left_elbow": "l_elbow",
    "left_forearm": "l_elbow", "left_wrist": "l_wrist", "left_hip": "l_hip", "left_knee": "l_knee",
    "left_ankle": "l_ankle", "left_heel": "l_ankle", "left_toe": "l_toe", "right_shoulder": "r_shoulder",
    "right_elbow": "r_elbow", "right_wrist": "r_wrist", "right_hand": "r_wrist", "right_hip": "r_hip",
    "right_knee": "r_knee", "right_ankle": "r_ankle", "right_heel": "r_ankle", "right_toe": "r_toe",
    "right_wrist_2": "r_wrist", "left_wrist_2": "l_wrist",
}


def _write_dwm(root: Path, dances: list[tuple[str, str, float, float]]) -> None:
    """A DwM-format folder of synthetic dancers stepping on click tracks: (id, genre, bpm, seconds)."""
    import soundfile as sf

    names = list(DWM_FROM_CANONICAL)
    root.mkdir(parents=True, exist_ok=True)
    (root / "skeleton.json").write_text(json.dumps({"joint_names": names}))
    rows = ["dance_id,genre,frames,seconds,alignment_z,alignment_confidence"]
    for k, (did, genre, bpm, sec) in enumerate(dances):
        m = synthetic_dance(sec, 25.0, bpm=bpm, seed=k)
        j = m.joints[:, [JOINT_INDEX[DWM_FROM_CANONICAL[n]] for n in names]].copy()
        j[..., 0] *= -1  # the DwM frame is mirrored
        d = root / did
        d.mkdir()
        np.save(d / "motion.npy", j.astype(np.float32))
        sf.write(str(d / "audio.flac"), click_track(np.arange(0, sec, 60 / bpm), sec, SR), SR, subtype="PCM_16")
        (d / "meta.json").write_text(json.dumps({"fps": 25, "sample_rate": SR, "genre": genre, "frames": len(j)}))
        rows.append(f"{did},{genre},{len(j)},{sec},10.0,high")
    (root / "index.csv").write_text("\n".join(rows) + "\n")


def test_eval_dataset_gt_beats_shuffled_on_synthetic_pairs(tmp_path, momu_cli):
    data = tmp_path / "dwm"
    _write_dwm(data, [("D_A", "rumba", 120.0, 20.0), ("D_B", "rumba", 93.0, 20.0), ("D_C", "cha-cha", 104.0, 20.0)])
    out = tmp_path / "out"
    r = momu_cli("eval", "dataset", "--data", str(data), "--out", str(out), "--seconds-per-clip", "10")
    assert r.returncode == 0, r.stderr
    assert "GT vs shuffled" in r.stdout and "coh_z[feet_speed_beat]" in r.stdout
    res = json.loads((out / "eval_dataset.json").read_text())
    assert res["n_clips"] == 6 and all(res["shuffle"][k] != k for k in res["shuffle"])  # a derangement
    coh = res["summary"]["coh_z[feet_speed_beat]"]
    assert coh["gt"] > 3 * coh["shuffled"] and coh["gt_wins"] == 1.0
    assert res["summary"]["BAS_flux"]["gap"] > 0.1
    png = next(out.glob("beats_*.png"))
    assert png.stat().st_size > 20_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # beat-phase audit: every dance gets a lag in (-half, +half] beat; the clicks sit on the tracked beats
    bp = res["beat_phase"]
    assert set(bp) == {"rumba", "cha-cha", "all"} and bp["all"]["n"] == 3 and bp["rumba"]["n"] == 2
    assert bp["all"]["onset_R_across_dances"] > 0.9 and "Beat phase across dances" in r.stdout
    for row in res["dance_coherence_rows"]:
        b = row["beat_phase"]
        assert abs(b["lag_s"]) <= b["beat_period_s"] / 2 + 1e-9
    assert (out / "beat_phase.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the music-beat cache is reused: a second run gives identical numbers
    r2 = momu_cli("eval", "dataset", "--data", str(data), "--out", str(out), "--seconds-per-clip", "10", "--json")
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout)["summary"] == res["summary"]


def test_eval_dataset_bad_folder(tmp_path, momu_cli):
    r = momu_cli("eval", "dataset", "--data", str(tmp_path / "nope"))
    assert r.returncode == 2 and "not a folder" in r.stderr
    (tmp_path / "empty").mkdir()
    r = momu_cli("eval", "dataset", "--data", str(tmp_path / "empty"))
    assert r.returncode == 2 and "index.csv" in r.stderr


def test_derangement_has_no_fixed_points_and_is_deterministic():
    from momu_live.commands.eval_dataset import derangement

    for n in (2, 3, 7, 35):
        p = derangement(n, seed=0)
        assert sorted(p) == list(range(n)) and all(p[i] != i for i in range(n))
        assert p == derangement(n, seed=0)
