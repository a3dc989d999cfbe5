"""The licence-clean demo media: procedural dancer and fluidsynth-rendered tune."""
from __future__ import annotations

import numpy as np
import pytest

from momu_live.models.skeleton import BONES, JOINT_INDEX
from momu_live.procedural import procedural_dance


def _feet_speed(m):
    j = m.joints
    feet = [JOINT_INDEX["l_ankle"], JOINT_INDEX["r_ankle"]]
    return np.linalg.norm(np.diff(j[:, feet], axis=0), axis=-1).sum(-1) * m.fps  # (T-1,)


@pytest.mark.parametrize("bpm,fps", [(120.0, 25.0), (97.0, 30.0)])
def test_procedural_feet_rest_on_the_beats(bpm, fps):
    m = procedural_dance(bpm=bpm, seconds=12.0, fps=fps)
    speed = _feet_speed(m)
    t = (np.arange(len(speed)) + 0.5) / fps
    phase = np.mod(t * bpm / 60.0, 1.0)
    near = np.minimum(phase, 1 - phase) < 0.1
    mid = np.abs(phase - 0.5) < 0.15
    # feet are nearly still on the beat and move between beats
    assert speed[near].mean() < 0.5 * speed[mid].mean()
    assert np.allclose(np.diff(m.meta["beat_times"]), 60.0 / bpm)


def test_procedural_bones_rigid_and_feet_on_floor():
    m = procedural_dance(bpm=110.0, seconds=8.0, fps=25.0)
    j = m.joints
    lengths = np.stack([np.linalg.norm(j[:, a] - j[:, b], axis=-1) for a, b in BONES], 1)
    assert lengths.std(0).max() < 0.01  # metres
    assert 0.0 <= j[:, JOINT_INDEX["l_toe"], 1].min() < 0.06
    assert 1.5 < j[:, JOINT_INDEX["head"], 1].mean() < 1.8


def test_rendered_tune_has_its_tempo(tmp_path):
    librosa = pytest.importorskip("librosa")
    from momu_live.demo_media import render_midi, tune_to_midi

    mid = tmp_path / "t.mid"
    dur = tune_to_midi("ryansMammoth/AcaciaReel.abc", mid, bpm=100.0)
    wav = render_midi(mid, 22050)
    assert abs(len(wav) / 22050 - dur) < 3.0  # fluidsynth adds a release tail
    tempo, _ = librosa.beat.beat_track(y=wav[: 22050 * 15], sr=22050, start_bpm=100.0)
    assert abs(float(np.atleast_1d(tempo)[0]) - 100.0) < 3.0
