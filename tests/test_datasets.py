"""Dataset loaders on synthetic folders (DwM format, AIST++ layout, a video folder) and windowing."""
from __future__ import annotations

import csv
import json
import pickle
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from momu_live import MomuError
from momu_live.models.datasets import (
    DWM_SHARED_GROUPS, ClipDataset, DancePair, aist_music_id, load_aist, load_dwm, load_video_folder, make_clips,
    split_dwm, split_pairs, to_model_rate, window_frames,
)
from momu_live.models.motion import Motion, synthetic_dance
from momu_live.models.skeleton import COCO17_JOINTS, JOINT_INDEX as J, bone_lengths, chirality_score, facing_direction
from momu_live.models.timebase import DEFAULT_TIMEBASE

SR = 22050
DWM_NAMES = ("head_left", "head_right", "spine", "left_shoulder", "left_elbow", "left_forearm", "left_wrist",
             "left_hip", "left_knee", "left_ankle", "left_heel", "left_toe", "right_shoulder", "right_elbow",
             "right_wrist", "right_hand", "right_hip", "right_knee", "right_ankle", "right_heel", "right_toe",
             "right_wrist_2", "left_wrist_2")


def _dwm23(j):
    """Canonical joints -> DwM 23-joint arrays in its mirrored frame."""
    pts = {}
    for c, s in (("l", "left"), ("r", "right")):
        for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle", "toe"):
            pts[f"{s}_{part}"] = j[:, J[f"{c}_{part}"]]
        pts[f"{s}_heel"] = j[:, J[f"{c}_ankle"]] - [0, 0.05, 0]
    left = np.cross([0.0, 1.0, 0.0], facing_direction(j))
    pts["head_left"], pts["head_right"] = j[:, J["head"]] + 0.05 * left, j[:, J["head"]] - 0.05 * left
    pts["spine"] = j[:, J["spine"]]
    pts["left_forearm"] = pts["left_wrist"]
    pts["right_hand"] = pts["right_wrist_2"] = pts["left_wrist_2"] = pts["right_wrist"]
    out = np.stack([pts[n] for n in DWM_NAMES], 1).astype(np.float32)
    out[..., 0] *= -1
    return out


@pytest.fixture(scope="module")
def dwm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dwm")
    ids = ["DANCE_W_10", "DANCE_W_14", "DANCE_W_7", "DANCE_R_9", "DANCE_C_6", "DANCE_C_4", "DANCE_R_2"]
    rows = []
    for k, did in enumerate(ids):
        sec = 6.0 + k
        m = synthetic_dance(seconds=sec, fps=25.0, seed=k)
        d = root / did
        d.mkdir()
        np.save(d / "motion.npy", _dwm23(m.joints))
        t = np.arange(int(sec * SR)) / SR
        sf.write(d / "audio.flac", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR, subtype="PCM_16")
        (d / "meta.json").write_text(json.dumps({"fps": 25, "sample_rate": SR, "genre": did.split("_")[1]}))
        rows.append({"dance_id": did, "genre": did.split("_")[1], "frames": m.n_frames, "seconds": sec})
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (root / "skeleton.json").write_text(json.dumps({"joint_names": list(DWM_NAMES)}))
    return root


def test_load_dwm_canonical(dwm_dir):
    pairs = load_dwm(dwm_dir)
    assert len(pairs) == 7
    p = pairs[0]
    assert p.motion.joints.shape[1:] == (18, 3) and p.sample_rate == SR
    assert p.seconds == pytest.approx(p.motion.seconds, abs=1e-3)
    assert chirality_score(p.motion.joints) > 0.9  # mirrored frame undone
    ref = synthetic_dance(seconds=6.0, fps=25.0, seed=0).joints
    np.testing.assert_allclose(p.motion.joints[:, J["l_knee"]], ref[:, J["l_knee"]], atol=1e-5)
    with pytest.raises(MomuError, match="index.csv"):
        load_dwm(dwm_dir / "DANCE_W_10")


def test_split_by_dance(dwm_dir):
    pairs = load_dwm(dwm_dir)
    train, val = split_pairs(pairs)
    assert {p.name for p in val} == {"DANCE_W_10", "DANCE_W_14", "DANCE_W_7", "DANCE_R_9", "DANCE_C_6"}
    assert {p.name for p in train} == {"DANCE_C_4", "DANCE_R_2"}
    ids = [p.name for p in pairs]
    with pytest.raises(MomuError, match="shared-motion group"):
        split_dwm(ids, validation=("DANCE_W_10",))  # splits the group (W_10, W_14, W_7)
    for group in DWM_SHARED_GROUPS:
        tr, va = split_dwm(list(group), validation=group)
        assert tr == [] and sorted(va) == sorted(group)


def _ramp_pair(seconds=20.0, fps=25.0) -> DancePair:
    """Motion whose pelvis x is its own time and audio whose samples are their own time."""
    T = int(seconds * fps)
    joints = np.tile(synthetic_dance(seconds=1 / fps, fps=fps).joints, (T, 1, 1))
    joints[:, :, 0] = (np.arange(T) / fps)[:, None]
    wav = (np.arange(int(seconds * SR)) / SR).astype(np.float32)
    return DancePair("ramp", Motion(joints=joints, fps=fps), wav, SR)


def test_windows_are_exactly_aligned():
    tb = DEFAULT_TIMEBASE
    pair = _ramp_pair()
    motion, wav = to_model_rate(pair)
    assert len(wav) == len(motion) * 1024
    T = window_frames(5.0)
    assert T % tb.motion_per_latent == 0 and T == 106  # floor(5 * 21.533) = 107 -> 106 (whole latents)
    clips = make_clips([pair], 5.0, hop_seconds=2.0)
    assert len(clips) >= 7
    for c in clips:
        assert c.motion.shape == (T, 18, 3) and c.wav.shape == (T * 1024,)
        assert c.start % tb.motion_per_latent == 0
        # motion frame k and audio sample k*1024 sit at the same instant
        t_motion = c.motion[:, 0, 0]
        t_audio = c.wav[:: 1024]
        np.testing.assert_allclose(t_motion, t_audio, atol=1e-4)
        assert c.wav[0] == pytest.approx(c.start_sample / SR, abs=1e-6)


def test_window_too_short():
    with pytest.raises(MomuError, match="latent"):
        window_frames(0.05)


def test_clip_dataset(dwm_dir):
    import torch

    pairs = load_dwm(dwm_dir)
    ds = ClipDataset(pairs, seconds=3.0, hop_seconds=1.5, mirror_prob=0.5, random_yaw=True, seed=7)
    m, w = ds[0]
    assert isinstance(m, torch.Tensor) and m.shape == (ds.window, 18, 3) and w.shape == (ds.window * 1024,)
    m2, _ = ds[0]
    torch.testing.assert_close(m, m2)  # augmentation reproducible per item
    raw = ds.clip(0).motion
    np.testing.assert_allclose(bone_lengths(m.numpy()), bone_lengths(raw), atol=1e-4)  # rigid augmentation
    np.testing.assert_allclose(np.sort(m.numpy()[..., 1].ravel()), np.sort(raw[..., 1].ravel()), atol=1e-5)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True)
    mb, wb = next(iter(loader))
    assert mb.shape == (4, ds.window, 18, 3) and wb.shape == (4, ds.window * 1024)
    with pytest.raises(MomuError, match="no 60"):
        ClipDataset(pairs, seconds=60.0)


# -- AIST++ ----------------------------------------------------------------------------------------

def _coco(j):
    f = facing_direction(j)
    left = np.cross([0.0, 1.0, 0.0], f)
    h = j[:, J["head"]]
    pts = {"nose": h + 0.1 * f, "left_eye": h + 0.03 * left + 0.08 * f, "right_eye": h - 0.03 * left + 0.08 * f,
           "left_ear": h + 0.07 * left - 0.05 * f, "right_ear": h - 0.07 * left - 0.05 * f}
    for c, s in (("l", "left"), ("r", "right")):
        for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
            pts[f"{s}_{part}"] = j[:, J[f"{c}_{part}"]]
    return np.stack([pts[n] for n in COCO17_JOINTS], 1)


@pytest.fixture(scope="module")
def aist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("aist") / "aist_plusplus_final"
    (root / "keypoints3d").mkdir(parents=True)
    (root / "wavs").mkdir()
    ref = {}
    for k, (seq, mirrored) in enumerate([("gBR_sBM_cAll_d04_mBR0_ch01", False), ("gPO_sFM_cAll_d10_mPO1_ch02", True)]):
        m = synthetic_dance(seconds=4.0, fps=60.0, seed=10 + k)
        ref[seq] = m.joints
        kp = _coco(m.joints) * 100.0  # cm
        if mirrored:
            kp[50:53, 9] = np.nan  # an untriangulated left wrist for three frames
        kp = kp * np.array([1.0, -1.0, -1.0])  # a y-down world frame (proper rotation)
        if mirrored:
            kp[..., 0] *= -1
        with open(root / "keypoints3d" / f"{seq}.pkl", "wb") as f:
            pickle.dump({"keypoints3d": kp.astype(np.float64), "keypoints3d_optim": kp.astype(np.float64)}, f, protocol=2 + 2 * k)
        sf.write(root / "wavs" / f"{aist_music_id(seq)}.wav", np.zeros(int(5.0 * SR), np.float32), SR)
    (root / "ignore_list.txt").write_text("gXX_sBM_cAll_d04_mBR0_ch09\n")
    return root, ref


class _Evil:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-momu-test",))


def test_load_aist(aist_dir):
    root, ref = aist_dir
    pairs = load_aist(root)
    assert [p.name for p in pairs] == sorted(ref)
    for p in pairs:
        r = ref[p.name]
        assert p.motion.fps == 60.0 and p.motion.n_frames == 240 and len(p.wav) == 4 * SR
        assert p.motion.meta["up"] == "-y" and p.motion.meta["metres_per_unit"] == 0.01
        assert p.motion.meta["mirrored"] == p.name.startswith("gPO")
        assert p.motion.meta["missing_keypoints"] == (3 if p.name.startswith("gPO") else 0)
        assert np.isfinite(p.motion.joints).all()
        if p.name.startswith("gPO"):
            assert (p.motion.confidence[50:53, J["l_wrist"]] == 0).all() and (p.motion.confidence[49, J["l_wrist"]] == 1)
            np.testing.assert_allclose(p.motion.joints[50:53, J["l_wrist"]], r[50:53, J["l_wrist"]], atol=0.01)
        for name in ("pelvis", "l_knee", "r_wrist", "neck"):
            np.testing.assert_allclose(p.motion.joints[:, J[name]], r[:, J[name]], atol=1e-4, err_msg=name)
        assert (p.motion.confidence[:, J["l_toe"]] == 0).all()
        for c in "lr":  # derived toes point forwards, also for the mirrored recording
            d = p.motion.joints[:, J[f"{c}_toe"]] - p.motion.joints[:, J[f"{c}_ankle"]]
            assert (np.sum(d * facing_direction(r), -1) > 0.05).all()
        assert chirality_score(p.motion.joints) > 0.9
    assert pairs[0].meta["music"] == "mBR0" and pairs[0].genre == "BR"


def test_aist_refuses_code_in_pickles(aist_dir, tmp_path):
    root, _ = aist_dir
    bad = tmp_path / "aist"
    shutil.copytree(root, bad)
    with open(bad / "keypoints3d" / "gBR_sBM_cAll_d04_mBR0_ch01.pkl", "wb") as f:
        pickle.dump({"keypoints3d": _Evil()}, f)
    with pytest.raises(MomuError, match="refusing to load shutil.rmtree"):
        load_aist(bad)
    with pytest.raises(MomuError, match="music folder"):
        load_aist(root, wav_dir=tmp_path / "nowhere")
    with pytest.raises(MomuError, match="keypoints3d/ missing"):
        load_aist(tmp_path)


# -- a folder of videos ----------------------------------------------------------------------------

def test_video_folder_extracts_once_and_caches(dancer_video, tmp_path):
    vids = tmp_path / "videos"
    vids.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(dancer_video), "-t", "3", "-c:v", "mjpeg", "-q:v", "3",
                    "-c:a", "pcm_s16le", str(vids / "clip.avi")], check=True)
    cache = tmp_path / "cache"
    first = load_video_folder(vids, cache_dir=cache, progress=False)
    assert len(first) == 1 and first[0].meta["pose_cache_hit"] is False
    p = first[0]
    assert 70 <= p.motion.n_frames <= 76 and p.motion.fps == pytest.approx(25.0)
    assert abs(len(p.wav) / SR - p.motion.seconds) < 0.05
    assert len(list(cache.glob("*.npz"))) == 1
    again = load_video_folder(vids, cache_dir=cache, progress=False)
    assert again[0].meta["pose_cache_hit"] is True
    np.testing.assert_array_equal(again[0].motion.joints, p.motion.joints)
    with pytest.raises(MomuError, match="no videos"):
        load_video_folder(cache)
    # a soundtrack that starts 0.5 s after the picture is padded so sample 0 = frame 0
    late = tmp_path / "late"
    late.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(vids / "clip.avi"), "-itsoffset", "0.5", "-i", str(vids / "clip.avi"),
                    "-map", "0:v", "-map", "1:a", "-c", "copy", str(late / "clip.mkv")], check=True)
    shifted = load_video_folder(late, cache_dir=cache, progress=False)[0]
    assert shifted.meta["av_offset_s"] == pytest.approx(0.5, abs=0.03)
    k = int(0.5 * SR)
    np.testing.assert_allclose(shifted.wav[k + 100: k + 20000], p.wav[100:20000], atol=2e-3)
    assert np.abs(shifted.wav[: k - 2000]).max() == 0


def test_cli_data_windows(dwm_dir, tmp_path, momu_cli):
    out = tmp_path / "clips.npz"
    r = momu_cli("data", "windows", "--data", str(dwm_dir), "--seconds", "3", "--hop", "1.5", "--out", str(out),
                 "--plot", str(tmp_path / "c.png"))
    assert r.returncode == 0, r.stderr
    with np.load(out, allow_pickle=False) as z:
        motion, wav, split, names = z["motion"], z["wav"], z["split"], z["names"]
        T = window_frames(3.0)
        assert motion.shape[1:] == (T, 18, 3) and wav.shape == (len(motion), T * 1024)
        assert set(names[split == "val"]) == {"DANCE_W_10", "DANCE_W_14", "DANCE_W_7", "DANCE_R_9", "DANCE_C_6"}
        assert str(z["motion_rate"]) == "11025/512"
        # int16 audio of the fixture's 0.3-amplitude sine
        assert 0.25 < np.abs(wav).max() / 32767 < 0.35
    assert (tmp_path / "c.png").stat().st_size > 5000
    r = momu_cli("data", "windows", "--data", str(tmp_path / "none"), "--out", str(out))
    assert r.returncode == 2 and "not a folder" in r.stderr
