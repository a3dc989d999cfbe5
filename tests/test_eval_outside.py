"""``momu eval generate --suite outside`` as a user runs it (in-process), on a tiny setting of the real DwM data.

The suite judges generation outside the loop: these tests check that its baselines behave as their definitions say
(the true music agrees with itself, white noise has no pitch, a frozen pose does not move, real dances sit closer to
real dances than a frozen pose does), so a table built on them can be trusted.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from momu_live.commands.eval_generate import DANCE_ROWS, MUSIC_ROWS


@pytest.fixture(scope="module")
def outside(dwm_shared, tmp_path_factory, momu_cli):
    out = tmp_path_factory.mktemp("outside")
    r = momu_cli("eval", "generate", "--suite", "outside", "--data", str(dwm_shared), "--max-dances", "1", "--seconds", "10",
                 "--seeds", "0", "--max-other", "6", "--fd-window", "2", "--fd-hop", "0.5", "--figure-seconds", "6",
                 "--threads", "1", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "outside.json").read_text())
    return out, r.stdout, doc, {x["row"]: x for x in doc["music_summary"]}, {x["row"]: x for x in doc["dance_summary"]}


def test_tables_have_every_baseline_row(outside):
    out, stdout, doc, music, dance = outside
    assert list(music) == list(MUSIC_ROWS) and list(dance) == list(DANCE_ROWS)
    md = (out / "outside.md").read_text()
    for row in MUSIC_ROWS + DANCE_ROWS:
        assert f"| {row} |" in md
        assert row.split(",")[0] in stdout  # the rich tables printed
    assert "beat F 100 ms" in stdout and "kinetic FD" in stdout
    assert doc["seeds"] == [0] and len(doc["dances"]) == 1 and abs(doc["seconds_per_dance"] - 10) < 0.2
    assert doc["command"].startswith("momu eval generate --suite outside")
    # every generated row uses its task's offline sampler, as `momu generate` does (models/generation.OFFLINE_SAMPLER)
    from momu_live.models.generation import OFFLINE_SAMPLER

    for task in ("motion2music", "music2motion"):
        sp = OFFLINE_SAMPLER[task]
        assert doc["sampler"][task] == {"sampler": sp.sampler, "schedule": sp.schedule, "steps": sp.steps,
                                        "guidance": sp.guidance}
        assert f"{task}: {sp.steps} {sp.sampler} steps" in md
    assert doc["sampler"]["guided"] == {"motion2music": "euler", "music2motion": "euler"}  # guidance: deterministic


def test_true_music_agrees_with_itself_and_the_copy_is_close(outside):
    _, _, _, music, _ = outside
    t = music["true music"]
    assert t["beatF_70ms"] == pytest.approx(1.0) and t["beatF_100ms"] == pytest.approx(1.0)
    assert t["tempo_within_4pct_n"] == 1 and t["tempo_ratio_median"] == pytest.approx(1.0)
    assert music["VAE + vocoder copy"]["beatF_100ms"] > music["white noise"]["beatF_100ms"]


def test_white_noise_has_near_maximal_chroma_entropy(outside):
    _, _, _, music, _ = outside
    hmax = math.log2(12)
    assert music["white noise"]["chroma_entropy_bits"] > 0.97 * hmax
    assert music["true music"]["chroma_entropy_bits"] < music["white noise"]["chroma_entropy_bits"] - 0.2
    # a 1 kHz click sits on one pitch class: far below noise
    assert music["click track (dancer grid)"]["chroma_entropy_bits"] < 0.75 * hmax
    # mel Frechet distances: a click track is further from real songs than any real song set
    assert music["click track (dancer grid)"]["mel_fd"] > 3 * music["true music"]["mel_fd"]
    assert music["click track (dancer grid)"]["mel_fd"] > 3 * music["other real songs"]["mel_fd"]


def test_frozen_pose_does_not_move(outside):
    _, _, _, _, dance = outside
    f = dance["frozen pose"]
    assert f["jitter_m_s3"] < 1e-6 and f["accel_m_s2"] < 1e-6 and f["bone_sd_m"] < 1e-6
    assert f["travel_m"] < 1e-6 and f["skating_m_s"] < 1e-6
    assert f["specificity_z"] == 0.0
    r = dance["real dance"]
    assert r["jitter_m_s3"] > 10 and r["travel_m"] > 0.5 and r["bone_sd_m"] < 0.03


def test_real_vs_real_floor_is_below_the_frozen_pose(outside):
    _, _, doc, _, dance = outside
    frozen = dance["frozen pose"]
    for floor in ("real dance", "other real dances"):
        assert dance[floor]["kinetic_fd"] < frozen["kinetic_fd"], (floor, dance[floor]["kinetic_fd"], frozen["kinetic_fd"])
        assert dance[floor]["geometric_fd"] < frozen["geometric_fd"]
    assert doc["floors"]["kinetic_fd"]["draws"] and np.isfinite(doc["floors"]["kinetic_fd"]["mean"])


def test_generated_rows_are_scored_and_the_vae_copy_is_measured(outside):
    _, _, doc, music, dance = outside
    from momu_live.commands.eval_generate import GENERATED

    assert len(GENERATED) == 3
    for row in GENERATED:
        assert music[row]["n"] == 1 and dance[row]["n"] == 1
        assert 0 <= music[row]["beatF_100ms"] <= 1 and np.isfinite(music[row]["mel_fd"])
        assert np.isfinite(dance[row]["kinetic_fd"]) and dance[row]["jitter_m_s3"] > 0
        assert set(music[row]["per_seed"]) == {"0"}
    assert 0.01 < dance["VAE copy"]["mpjpe_root_relative_m"] < 0.5
    assert "in-loop" in json.dumps(doc["definitions"]).lower() or "IN THE LOOP" in json.dumps(doc["definitions"])


def test_figures_are_written(outside):
    out = outside[0]
    for name in ("outside_spectrograms.png", "outside_sticks.png", "outside_beats.png"):
        p = out / name
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20_000, name


def test_outside_suite_refuses_an_unknown_sampler_and_a_zero_guided_strength(dwm_shared, tmp_path, momu_cli):
    r = momu_cli("eval", "generate", "--suite", "outside", "--data", str(dwm_shared), "--sampler", "nope",
                 "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "nope" in r.stderr
    r = momu_cli("eval", "generate", "--suite", "outside", "--data", str(dwm_shared), "--beat-strength", "0",
                 "--out", str(tmp_path))
    assert r.returncode == 2 and "--beat-strength" in r.stderr


def test_align_start_undoes_a_turn_and_a_shift_about_the_first_pelvis():
    from momu_live.commands.eval_generate import align_start
    from momu_live.models.motion import synthetic_dance

    j = synthetic_dance(3.0, fps=21.5, seed=0).joints.astype(np.float64)
    a = 0.7
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    moved = j @ R.T + [1.0, 0.0, -2.0]
    assert np.abs(align_start(moved, j) - j).max() < 1e-5
    assert np.abs(align_start(j, j) - j).max() < 1e-6
