"""Kinematic rhythm signals on constructed motions with known answers (models/kinematics.py)."""
from __future__ import annotations

import numpy as np
import pytest

from momu_live import MomuError
from momu_live.models import kinematics as K
from momu_live.models.metrics import kinetic_features
from momu_live.models.motion import synthetic_dance
from momu_live.models.skeleton import CANONICAL_JOINTS, FEET, ROOT

J = len(CANONICAL_JOINTS)


def _moving(T: int, fps: float, vel_fn) -> np.ndarray:
    """All joints at small fixed offsets, translated by the integral of vel_fn(t) (3,) m/s."""
    t = np.arange(T) / fps
    v = np.stack([vel_fn(x) for x in t])  # (T, 3)
    pos = np.cumsum(v, axis=0) / fps  # (T, 3)
    offs = np.random.default_rng(0).normal(0, 0.3, (J, 3))
    return (pos[:, None, :] + offs[None]).astype(np.float64)


def test_directogram_bins_direction_and_speed():
    fps = 25.0
    right = _moving(10, fps, lambda t: np.array([2.0, 0.0, 0.0]))  # +x at 2 m/s
    d = K.directogram(right, fps, n_bins=8)
    assert d.shape == (10, 8)
    assert np.allclose(d[0], 0)
    assert np.allclose(d[1:, 0], 2.0 * J, rtol=1e-5) and np.allclose(d[1:, 1:], 0, atol=1e-6)
    up = _moving(10, fps, lambda t: np.array([0.0, 1.0, 0.7]))  # +y (z ignored: frontal plane)
    d = K.directogram(up, fps, n_bins=8)
    assert np.allclose(d[1:, 2], 1.0 * J, rtol=1e-5) and np.allclose(np.delete(d[1:], 2, axis=1), 0, atol=1e-6)


def test_kinematic_amplitude_is_zero_for_constant_velocity_and_spikes_on_reversal():
    fps = 25.0
    q = K.kinematic_amplitude(_moving(20, fps, lambda t: np.array([1.0, 0.5, 0.0])), fps)
    assert np.allclose(q, 0, atol=1e-6)
    # reverse the x velocity at frame 10: bin 0 empties, bin 4 fills with J * 1 m/s of new motion
    q = K.kinematic_amplitude(_moving(20, fps, lambda t: np.array([1.0 if t < 10 / fps - 1e-9 else -1.0, 0, 0])), fps)
    assert int(np.argmax(q)) == 10  # p[10] - p[9] is the first backward step (cumsum of v)
    assert q[10] == pytest.approx(J * 1.0, rel=1e-5)
    assert np.allclose(np.delete(q, 10), 0, atol=1e-6)


def test_flux_beats_land_on_direction_changes():
    fps, period = 30.0, 0.5  # a hand-clap-like back-and-forth: direction flips every 0.5 s
    T = int(8 * fps)
    x = _moving(T, fps, lambda t: np.array([1.0 if (t // period) % 2 == 0 else -1.0, 0, 0]))
    beats = K.flux_beats(x, fps)
    flips = np.arange(period, 8 - 1e-9, period)
    # every flip is found within 2 frames, and nothing else
    assert len(beats) == len(flips) - 1 or len(beats) == len(flips)
    d = np.abs(beats[:, None] - flips[None]).min(1)
    assert np.all(d <= 2 / fps)


def test_speed_minima_match_bailando_at_60fps():
    from scipy.ndimage import gaussian_filter
    from scipy.signal import argrelextrema

    fps = 60.0
    T = int(6 * fps)
    x = _moving(T, fps, lambda t: np.array([abs(np.sin(np.pi * t / 0.5)) + 0.05, 0, 0]))  # slowest every 0.5 s
    beats = K.speed_minima_beats(x, fps)
    # Bailando calc_db, written out: mean joint displacement, G(., 5), argrelextrema(np.less)
    kv = np.mean(np.sqrt(np.sum((x[1:] - x[:-1]) ** 2, axis=2)), axis=1)
    ref = argrelextrema(gaussian_filter(kv, 5), np.less)[0]
    assert np.array_equal(np.round(beats * fps).astype(int), ref)
    assert np.all(np.abs(beats - np.round(beats / 0.5) * 0.5) <= 1.5 / fps)


def test_feet_speed_and_pelvis_height():
    fps = 25.0
    x = _moving(50, fps, lambda t: np.array([0.0, 0.0, 1.5]))
    assert np.allclose(K.feet_speed(x, fps), 1.5, rtol=1e-5)
    t = np.arange(100) / fps
    y = np.zeros((100, J, 3))
    y[:, ROOT, 1] = 0.9 + 0.03 * np.cos(2 * np.pi * 1.5 * t)  # bobbing 1.5 Hz around 0.9 m
    h = K.pelvis_height(y, fps)
    assert abs(np.mean(h[25:-25])) < 0.005  # offset removed
    assert np.corrcoef(h[25:-25], np.cos(2 * np.pi * 1.5 * t[25:-25]))[0, 1] > 0.95
    m = synthetic_dance(4.0, fps, bpm=120)
    assert K.feet_speed(m.joints, fps).shape == (m.n_frames,)
    with pytest.raises(MomuError, match="canonical"):
        K.feet_speed(np.zeros((10, max(FEET) - 1, 3)), fps)


def test_numpy_directogram_matches_training_version():
    rhythm = pytest.importorskip("momu_live.models.rhythm")
    torch = pytest.importorskip("torch")
    m = synthetic_dance(3.0, 25.0, bpm=110)
    q_np = K.kinematic_amplitude(m.joints, 25.0)
    q_t = rhythm.kinematic_amplitude(torch.from_numpy(m.joints)[None], fps=25.0)[0].double().numpy()
    assert np.allclose(q_np[2:], q_t[2:], rtol=1e-4, atol=1e-4)  # frame 1 differs: no flux from the zero row here


def _kinetic_loop(p: np.ndarray, ft: float, w: int = 2) -> np.ndarray:
    """AIST++ KineticFeatures as its per-frame loops read (reference for the vectorised version)."""
    T, Jn = p.shape[:2]
    out = []
    for j in range(Jn):
        kh = kv = ex = 0.0
        for i in range(1, T):
            v, n = np.zeros(3), 0
            for k in range(-w, w + 1):
                if i + k - 1 < 0 or i + k >= T:
                    continue
                v += p[i + k, j] - p[i + k - 1, j]
                n += 1
            v /= n * ft
            kh += v[0] ** 2 + v[2] ** 2
            kv += v[1] ** 2
            a, n = np.zeros(3), 0
            for k in range(-w, w + 1):
                if i + k - 1 < 0 or i + k + 1 >= T:
                    continue
                a += ((p[i + k + 1, j] - p[i + k, j]) / ft - (p[i + k, j] - p[i + k - 1, j]) / ft) / ft
                n += 1
            ex += np.linalg.norm(a / n) if n else np.nan
        out += [kh / T, kv / T, ex / T]
    return np.array(out)


def test_kinetic_features_match_aist_loops():
    rng = np.random.default_rng(3)
    p = np.cumsum(rng.normal(0, 0.01, (40, 4, 3)), axis=0)
    ours = kinetic_features(p, 60.0, resample_to=None)
    ref = _kinetic_loop(p, 1 / 60.0)
    assert ours.shape == (12,)
    assert np.allclose(ours, ref, rtol=1e-9)


@pytest.mark.parametrize("bad,msg", [
    (np.full((10, J, 3), np.nan), "NaN"),
    (np.zeros((10, J)), r"\[T, J, 3\]"),
    (np.zeros((1, J, 3)), "too short"),
])
def test_bad_motion_raises_clear_errors(bad, msg):
    with pytest.raises(MomuError, match=msg):
        K.kinematic_amplitude(bad, 25.0)
