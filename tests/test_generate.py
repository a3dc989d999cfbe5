"""Generation pipelines end to end with debug models: three tasks, continuation, live steps, CLI errors."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from momu_live import MomuError
from momu_live.models.builders import debug_dit, debug_vae
from momu_live.models.generation import LatentSampler, Pipeline, SamplerSpec
from momu_live.models.motion import synthetic_dance
from momu_live.models.timebase import DEFAULT_TIMEBASE as TB

REPO = Path(__file__).resolve().parents[1]


def _randomise(m, std=0.15, seed=0):
    torch.manual_seed(seed)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=std)
    return m.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return Pipeline(debug_vae().eval(), _randomise(debug_dit(4)), None)


def _wav(seconds, sr=22050):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-(t % 0.5) * 20)).astype(np.float32)


def _joints(seconds):
    return synthetic_dance(seconds, fps=float(TB.motion_rate)).joints


def test_three_tasks_end_to_end(pipe):
    spec = SamplerSpec(steps=3)
    j = _joints(4.0)
    r = pipe.motion2music(j, seed=1, spec=spec)
    L = len(j) // 2
    assert r["latents"].shape == (1, 4, L) and r["mel"].shape == (80, 8 * L) and torch.isfinite(r["mel"]).all()
    r2 = pipe.music2motion(_wav(4.0), seed=1, spec=spec)
    L2 = int(4.0 * 22050) // 256 // 8
    assert r2["joints"].shape == (2 * L2, 18, 3) and np.isfinite(r2["joints"]).all()
    r3 = pipe.joint(3.0, seed=1, spec=SamplerSpec(steps=4, tc=0.5))
    L3 = pipe.latent_frames(3.0)
    assert r3["latents"].shape == (2, 4, L3) and r3["mel"].shape == (80, 8 * L3) and r3["joints"].shape == (2 * L3, 18, 3)
    # same seed -> same output; other seed -> different
    again = pipe.motion2music(j, seed=1, spec=spec)
    other = pipe.motion2music(j, seed=2, spec=spec)
    assert torch.equal(again["latents"], r["latents"]) and not torch.allclose(other["latents"], r["latents"])


def test_bad_inputs_are_clear_errors(pipe):
    with pytest.raises(MomuError, match="positive"):
        pipe.joint(0)
    with pytest.raises(MomuError, match="positive"):
        pipe.joint(-2)
    with pytest.raises(MomuError, match="empty|short"):
        pipe.music2motion(np.zeros(0, np.float32))
    with pytest.raises(MomuError, match="silent"):
        pipe.music2motion(np.zeros(22050, np.float32))
    with pytest.raises(MomuError, match="too short"):
        pipe.motion2music(_joints(4.0)[:1])


def test_continuation_equals_one_pass_on_the_overlap(pipe):
    s = pipe.sampler
    spec = SamplerSpec(steps=4)
    cond = torch.randn(1, 4, 40)
    first = s.sample("motion2music", 24, cond[..., :24], seed=3, spec=spec)
    O = 8
    cont = s.sample("motion2music", 24, cond[..., 16:40], seed=4, spec=spec, prefix=first[..., 16:24])
    assert torch.allclose(cont[..., :O], first[..., 16:24], atol=1e-4)
    # joint continuation keeps both modalities' overlap
    j1 = s.sample("joint", 20, None, seed=1, spec=spec)
    j2 = s.sample("joint", 20, None, seed=2, spec=spec, prefix=j1[..., -6:])
    assert torch.allclose(j2[..., :6], j1[..., -6:], atol=1e-4)


@pytest.mark.parametrize("blend", [0, 3])
def test_window_steps_chunked_equal_offline_windows(pipe, blend):
    s = pipe.sampler
    spec = SamplerSpec(steps=2)
    cond = torch.randn(1, 4, 37)
    whole = s.windows("music2motion", cond, 37, window=10, overlap=4, seed=9, spec=spec, blend=blend)
    assert whole.shape == (1, 4, 37)
    st = LatentSampler.init_state(4, 9, blend)
    outs = []
    for a in range(0, 37, 10):
        new, st = s.step("music2motion", cond[..., a:a + 10], st, spec)
        outs.append(new)
    assert outs[0].shape[-1] == 10 - blend  # the live output lags by ``blend`` frames
    rest, st = LatentSampler.flush(st)
    if blend:
        outs.append(rest)
    assert torch.equal(torch.cat(outs, -1), whole) and st.frames == 37 and st.index == 4 and st.pending is None


def test_cross_fade_blends_held_frames_with_their_regeneration(pipe):
    """With blend, the frames after each inpainted prefix fade from the previous window's estimate to the new one."""
    from momu_live.models.generation import window_seed

    s = pipe.sampler
    spec = SamplerSpec(steps=2)
    st = LatentSampler.init_state(4, 1, 3)
    first, st = s.step("joint", None, st, spec, n_frames=10)
    held, prev = st.pending.clone(), st.prev.clone()
    assert first.shape[-1] == 7 and held.shape[-1] == 3 and torch.equal(prev, first[..., -4:])
    second, st = s.step("joint", None, st, spec, n_frames=10)
    regen = s.sample("joint", 4 + 3 + 10, None, window_seed(1, 1), spec, prefix=prev)[..., 4:7]
    w = torch.tensor([3, 2, 1]) / 4  # weight of the held estimate
    assert torch.allclose(second[..., :3], w * held + (1 - w) * regen, atol=1e-5)
    assert second.shape[-1] == 10 and st.frames == 17


def test_live_motion2music_step_matches_offline_windowed(pipe):
    spec = SamplerSpec(steps=2)
    j = _joints(6.0)
    k = 8  # latent frames per live window
    n = (len(j) // (2 * k)) * 2 * k
    j = j[:n]
    off = pipe.motion2music(j, seed=5, spec=spec, window=k, overlap=4, blend=2)
    st = pipe.init_stream("motion2music", overlap=4, seed=5, blend=2)
    lat, mels = [], []
    for a in range(0, n, 2 * k):
        out, st = pipe.motion2music_step(j[a:a + 2 * k], st, spec)
        lat.append(out.latents)
        mels.append(out.mel)
    live = torch.cat(lat, -1)
    assert live.shape[-1] == n // 2 - 2  # all but the 2 held-back frames
    assert torch.allclose(live, off["latents"][..., : live.shape[-1]], atol=1e-5)
    assert torch.allclose(torch.cat(mels, -1), off["mel"][:, : 8 * live.shape[-1]], atol=1e-4)


def test_live_music2motion_and_joint_steps_continue_the_trajectory(pipe):
    from momu_live.models.audio import log_mel

    spec = SamplerSpec(steps=2)
    mel = log_mel(torch.from_numpy(_wav(4.0)))
    k = 5
    n = mel.shape[-1] // (8 * k) * 8 * k
    off = pipe.music2motion(_wav(4.0)[: n * 256], seed=2, spec=spec, window=k, overlap=3, blend=2)
    st = pipe.init_stream("music2motion", overlap=3, seed=2, blend=2)
    js = []
    for a in range(0, n, 8 * k):
        out, st = pipe.music2motion_step(mel[:, a:a + 8 * k], st, spec)
        js.append(out.joints)
    out, st = pipe.flush(st)  # the 2 held-back latents
    assert out.latents.shape[-1] == 2 and out.mel is None and len(out.joints) == 4
    assert np.allclose(np.concatenate(js + [out.joints]), off["joints"], atol=1e-3)
    st = pipe.init_stream("joint", overlap=3, seed=1, blend=1)
    offj = pipe.joint(4 * k / float(TB.latent_rate) + 1e-6, seed=1, spec=spec, window=k, overlap=3, blend=1)
    parts = []
    for _ in range(4):
        out, st = pipe.joint_step(k, st, spec)
        assert out.wav is None  # no vocoder in this pipeline
        parts.append(out.joints)
    out, st = pipe.flush(st)
    assert out.latents.shape == (2, 4, 1) and out.mel.shape == (80, 8) and out.wav is None
    assert np.allclose(np.concatenate(parts + [out.joints]), offj["joints"], atol=1e-3)


# ---- CLI (in-process, tests/_cli.py) with debug weights
@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from momu_live.models.checkpoint import save_checkpoint
    from momu_live.models.vae import SIZES as VAE_SIZES

    d = tmp_path_factory.mktemp("w")
    vae = debug_vae()
    stats = {m: {"mean": [0.0] * 4, "std": [1.0] * 4} for m in ("music", "motion")}
    save_checkpoint(d / "vae", vae, VAE_SIZES["debug"], "vae", {"latent_stats": stats})
    dit = _randomise(debug_dit(4), std=0.05)
    save_checkpoint(d / "dit", dit, dit.cfg, "dit", {})
    return d


def _momu(*args, cwd):
    from _cli import run_momu

    return run_momu(*args, cwd=cwd)


def test_cli_joint_and_music2motion(weights, tmp_path):
    from momu_live.models.audio import save_wav
    from momu_live.models.motion import load_motion

    r = _momu("generate", "joint", "--seconds", 2, "--out-dir", tmp_path / "j", "--weights", weights, "--steps", 2,
              "--no-progress", "--threads", 1, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = load_motion(tmp_path / "j" / "motion.npz")
    assert abs(m.fps - float(TB.motion_rate)) < 1e-6 and m.n_frames == 2 * int(2 * float(TB.latent_rate))
    assert (tmp_path / "j" / "music.wav").stat().st_size > 40000 and (tmp_path / "j" / "dance.mp4").stat().st_size > 0
    assert json.loads((tmp_path / "j" / "generation.json").read_text())["steps"] == 2
    # outputs are never overwritten without --force
    r = _momu("generate", "joint", "--seconds", 2, "--out-dir", tmp_path / "j", "--weights", weights, cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr
    save_wav(tmp_path / "in.wav", _wav(3.0), 22050)
    r = _momu("generate", "music2motion", "--music", tmp_path / "in.wav", "--out", tmp_path / "m.npz", "--bvh",
              tmp_path / "m.bvh", "--weights", weights, "--steps", 1, "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert load_motion(tmp_path / "m.npz").n_frames > 0 and (tmp_path / "m.bvh").read_text().startswith("HIERARCHY")
    # without --steps / --sampler: the task's offline sampler (models/generation.OFFLINE_SAMPLER), recorded in the file
    r = _momu("generate", "music2motion", "--music", tmp_path / "in.wav", "--out", tmp_path / "d.npz", "--weights",
              weights, "--no-progress", "--threads", 1, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    meta = load_motion(tmp_path / "d.npz").meta
    assert (meta["sampler"], meta["schedule"], meta["steps"]) == ("ddpm", "flow", 16)


def test_offline_spec_per_task_and_overrides():
    from momu_live import MomuError
    from momu_live.models.generation import OFFLINE_SAMPLER, offline_spec

    assert offline_spec("motion2music") == OFFLINE_SAMPLER["motion2music"]
    assert offline_spec("music2motion").sampler == "ddpm" and offline_spec("music2motion").schedule == "flow"
    j = offline_spec("joint")  # joint keeps the live sampler; offline defaults are unguided (--beat-strength 0)
    assert (j.sampler, j.steps, j.schedule) == (SamplerSpec().sampler, SamplerSpec().steps, None)
    assert not any(sp.beat.active for sp in OFFLINE_SAMPLER.values())
    # another sampler without a schedule gets its usual one; steps and other fields override
    e = offline_spec("music2motion", "euler", 8, guidance=2.0)
    assert (e.sampler, e.schedule, e.steps, e.guidance) == ("euler", None, 8, 2.0)
    assert offline_spec("music2motion", steps=4).schedule == "flow"
    # beat guidance needs a deterministic path: the ancestral default becomes Euler on the same schedule and steps,
    # unless a sampler is named
    from momu_live.models.guidance import BeatSpec

    g = offline_spec("music2motion", beat=BeatSpec())
    assert (g.sampler, g.schedule, g.steps) == ("euler", "flow", 16)
    assert offline_spec("music2motion", beat=BeatSpec().scaled(0.0)).sampler == "ddpm"
    assert offline_spec("music2motion", "ddpm", beat=BeatSpec()).sampler == "ddpm"
    # the ancestral sampler on the flow schedule runs and is seeded: same seed, same output; another seed differs
    den = lambda x, s: 0.5 * x / (1 + s[:, None, None] ** 2)  # noqa: E731
    from momu_live.models.sampling import get_sampler

    sp = offline_spec("music2motion")
    x = torch.randn(1, 4, 8) * sp.sigmas()[0]
    run = lambda seed: get_sampler(sp.sampler)(den, x.clone(), sp.sigmas(), generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1)) and torch.isfinite(run(0)).all()
    with pytest.raises(MomuError):
        offline_spec("dance")


@pytest.mark.parametrize("seconds", ["0", "-3"])
def test_cli_rejects_non_positive_seconds(weights, tmp_path, seconds):
    r = _momu("generate", "joint", f"--seconds={seconds}", "--out-dir", tmp_path / "j", "--weights", weights, cwd=tmp_path)
    assert r.returncode == 2 and "seconds must be positive" in r.stderr


def test_cli_rejects_empty_audio_and_missing_files(weights, tmp_path):
    import soundfile as sf

    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), 22050)
    r = _momu("generate", "music2motion", "--music", tmp_path / "empty.wav", "--out", tmp_path / "o.npz",
              "--weights", weights, cwd=tmp_path)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
    r = _momu("generate", "motion2music", "--motion", tmp_path / "nope.npz", "--out", tmp_path / "o.wav",
              "--weights", weights, cwd=tmp_path)
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_cli_rejects_a_video_with_no_person(weights, tmp_path):
    import cv2

    p = tmp_path / "empty.avi"
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for i in range(20):
        w.write(np.full((120, 160, 3), 40 + i, np.uint8))
    w.release()
    r = _momu("generate", "motion2music", "--motion", p, "--out", tmp_path / "o.wav", "--weights", weights,
              "--no-progress", cwd=tmp_path)
    assert r.returncode == 2 and "no person" in r.stderr, r.stderr[-800:]


def test_cli_output_names_follow_their_format(weights, tmp_path):
    """An output named for another format is refused up front, naming the extensions that output is written as."""
    save = tmp_path / "in.wav"
    from momu_live.models.audio import save_wav

    save_wav(save, _wav(2.0), TB.sample_rate)
    np.savez(tmp_path / "d.npz", joints=_joints(3.0), fps=float(TB.motion_rate))
    cases = [
        (["motion2music", "--motion", tmp_path / "d.npz", "--out", tmp_path / "y.txt"], "--out", ".wav"),
        (["motion2music", "--motion", tmp_path / "d.npz", "--out", tmp_path / "y.wav", "--mux", tmp_path / "v.wav"],
         "--mux", ".mp4"),
        (["music2motion", "--music", save, "--out", tmp_path / "y.txt"], "--out", ".npz"),
        (["music2motion", "--music", save, "--out", tmp_path / "y.wav"], "--out", ".npz"),
        (["music2motion", "--music", save, "--out", tmp_path / "y.npz", "--bvh", tmp_path / "y.fbx"], "--bvh", ".bvh"),
        (["music2motion", "--music", save, "--out", tmp_path / "y.npz", "--render", tmp_path / "y.gif"], "--render", ".mp4"),
    ]
    for args, flag, ext in cases:
        r = _momu("generate", *args, "--weights", weights, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.startswith(f"error: {flag} ") and ext in r.stderr, (args, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "in.wav"]  # nothing written
    (tmp_path / "file").write_text("x")
    r = _momu("generate", "joint", "--seconds", 2, "--out-dir", tmp_path / "file", cwd=tmp_path)
    assert r.returncode == 2 and "--out-dir" in r.stderr and "is a file" in r.stderr


def test_cli_weights_folder_must_hold_a_model(weights, tmp_path):
    """An empty --weights folder is an error naming the missing files, not a silent fallback to the shipped weights."""
    import shutil

    (tmp_path / "empty").mkdir()
    r = _momu("generate", "joint", "--seconds", 2, "--out-dir", tmp_path / "j", "--weights", tmp_path / "empty",
              cwd=tmp_path)
    assert r.returncode == 2 and not (tmp_path / "j").exists()
    assert "holds no model files" in r.stderr and "dit.safetensors + dit.json" in r.stderr
    assert "vae.safetensors + vae.json" in r.stderr and "momu train diffusion" in r.stderr
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(weights / "dit.safetensors", half)
    r = _momu("generate", "joint", "--seconds", 2, "--out-dir", tmp_path / "j", "--weights", half, cwd=tmp_path)
    assert r.returncode == 2 and "dit.json is missing" in r.stderr
    r = _momu("generate", "joint", "--seconds", 2, "--out-dir", tmp_path / "j", "--weights", tmp_path / "nope",
              cwd=tmp_path)
    assert r.returncode == 2 and "is not a folder" in r.stderr


def test_cli_progress_only_on_a_terminal(weights, tmp_path):
    """No progress bars when stderr is not a terminal: an error is the only thing on stderr; a terminal gets bars."""
    import contextlib
    import io

    import soundfile as sf

    from momu_live.cli import main

    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), TB.sample_rate)
    r = _momu("generate", "music2motion", "--music", tmp_path / "empty.wav", "--out", tmp_path / "o.npz",
              "--weights", weights, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith("error: ")
    r = _momu("generate", "joint", "--seconds", 2, "--out-dir", tmp_path / "j", "--weights", weights, "--steps", 2,
              "--no-render", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    err = Terminal()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["generate", "joint", "--seconds", "2", "--out-dir", str(tmp_path / "t"), "--weights", str(weights),
                   "--steps", "2", "--no-render"])
    assert rc == 0 and "joint (euler, 2 steps)" in err.getvalue() and "2/2" in err.getvalue()


def test_bench_generate_json_rows(tmp_path):
    r = _momu("bench", "generate", "--debug-model", "--steps", "1,2", "--seconds", "2,4", "--repeats", 1, "--threads", 1,
              "--window", 4, "--overlap", 2, "--blend", 1, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = doc["rows"]
    for task in ("motion2music", "music2motion", "joint"):
        for steps in (1, 2):
            for secs in (2, 4):
                row = next(x for x in rows if (x["task"], x["steps"], x["seconds"]) == (task, steps, secs))
                assert row["device"] == "cpu" and 0 < row["rtf"] < 50
        assert any(x["task"] == f"{task}_live" for x in rows)
        off = [x for x in rows if x["task"] == f"{task} (offline default)"]  # what `momu generate` runs
        from momu_live.models.generation import OFFLINE_SAMPLER

        assert {x["seconds"] for x in off} == {2, 4}
        assert all((x["steps"], x["sampler"]) == (OFFLINE_SAMPLER[task].steps, OFFLINE_SAMPLER[task].sampler) for x in off)
    assert {"task", "steps", "seconds", "device", "rtf"} <= set(rows[0])


def test_eval_helpers_frechet_and_seams():
    from momu_live.commands.eval_generate import frechet, seam_stats

    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet(a, a) < 1e-6
    assert abs(frechet(a, a + np.array([2.0, 0, 0])) - 4.0) < 0.05
    x = np.cumsum(rng.normal(scale=0.01, size=(200, 2)), axis=0)
    x[100:] += 1.0  # a seam at frame 100
    s = seam_stats(x, [100], "test")
    assert s["ratio"] > 20 and s["n_borders"] == 1
    assert seam_stats(x, [50], "test")["ratio"] < 3


def test_cli_motion2music_from_real_video_with_mux(weights, tmp_path, dancer_video):
    """Real MediaPipe pose on the real test video -> music -> the video muxed with the generated soundtrack."""
    r = _momu("generate", "motion2music", "--motion", dancer_video, "--seconds", 3, "--out", tmp_path / "a.wav",
              "--mux", tmp_path / "a.mp4", "--weights", weights, "--steps", 2, "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-800:]
    import soundfile as sf

    wav, sr = sf.read(str(tmp_path / "a.wav"))
    assert sr == 22050 and 2.5 * sr < len(wav) <= 3.0 * sr
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,duration", "-of", "json",
                            str(tmp_path / "a.mp4")], capture_output=True, text=True)
    streams = {s["codec_type"]: float(s["duration"]) for s in json.loads(probe.stdout)["streams"]}
    assert set(streams) == {"video", "audio"} and abs(streams["video"] - streams["audio"]) < 0.1
