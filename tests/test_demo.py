"""`momu demo`: the README's main job, end to end on the shipped weights and bundled media."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from momu_live.models.motion import load_motion


def _momu(*args, **kw):
    """The README's main job as a user runs it: its own process (the end-to-end check of `momu demo`)."""
    return subprocess.run([sys.executable, "-m", "momu_live.cli", *args], capture_output=True, text=True, timeout=300, **kw)


def test_demo_writes_every_output_and_metrics(tmp_path):
    out = tmp_path / "demo"
    r = _momu("demo", "--out", str(out), "--seconds", "8")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    wav, sr = sf.read(out / "music_for_dance.wav")
    assert sr == 22050 and abs(len(wav) / sr - 8.0) < 0.2
    assert np.sqrt(np.mean(wav**2)) > 1e-3  # real audio, not silence
    m = load_motion(out / "dance_for_music.npz")
    assert abs(m.seconds - 8.0) < 0.2 and np.isfinite(m.joints).all()
    assert (out / "dance_for_music.bvh").read_text().startswith("HIERARCHY")
    for name in ("dance_with_generated_music.mp4", "generated_dance.mp4", "beats.png"):
        assert (out / name).stat().st_size > 10_000, name
    rows = summary["metrics"]
    assert set(rows) == {"dance + generated music", "music + generated dance", "dance + unrelated music (baseline)",
                         "dance + generated music, no beat guidance", "music + generated dance, no beat guidance"}
    for row in rows.values():
        assert all(np.isfinite(v) for v in row.values())
    # beat guidance (on by default) locks both generations to the other side's beat, far above the baseline
    z = "coherence z (feet@beat)"
    assert summary["beat_grids"]["dancer"]["bpm"] == pytest.approx(120.0, rel=0.02)
    for name in ("dance + generated music", "music + generated dance"):
        assert rows[name][z] > max(rows[f"{name}, no beat guidance"][z], rows["dance + unrelated music (baseline)"][z]) + 1.0
    assert str(out) in r.stdout


def test_demo_refuses_to_overwrite_and_bad_seconds(tmp_path, momu_cli):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    r = momu_cli("demo", "--out", str(out))
    assert r.returncode == 2 and "--force" in r.stderr
    r = momu_cli("demo", "--out", str(tmp_path / "e"), "--seconds", "0")
    assert r.returncode == 2 and "--seconds" in r.stderr
    assert (out / "keep.txt").read_text() == "x"
