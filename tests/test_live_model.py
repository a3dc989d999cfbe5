"""The shipped generation model as the live back-end (momu_live/live/model_backend.py).

(The streaming log-mel it feeds music2motion with is tested in tests/test_audio.py.)
- motion2music on procedural-dance windows: contiguous finite audio, exact sample bookkeeping
  (after ``flush`` the audio covers exactly the fed motion frames), same seed -> same audio,
  live steps/guidance control reaches the sampler
- the pipeline's stream with the vocoder run apart (``vocode=False`` + ``vocode_stream``, as the back-end
  does to time it) equals the vocoder inside the step; ``Pipeline.flush`` returns the held-back tail
- music2motion from a click track: finite poses on the model grid with continuous exact times
- joint: audio + poses, both on the stream clock
- ``momu live`` end to end on the real dancer video: exit 0, the status heartbeat (real UDP peer)
  names the model, generated.wav holds non-silent audio
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from _cli import run_momu
from momu_live import MomuError
from momu_live.bridge.grammar import status_fields
from momu_live.live.backend import ClickBackend, LiveWindow, make_backend
from momu_live.live.model_backend import ModelBackend, ModelBackendState
from momu_live.live.monitor import OscMonitor, free_udp_port
from momu_live.models.timebase import DEFAULT_TIMEBASE
from momu_live.procedural import procedural_dance

SR = 22050
RATE = float(DEFAULT_TIMEBASE.motion_rate)


@pytest.fixture(scope="module")
def pipeline():
    from momu_live.models.pretrained import load_pipeline

    torch.set_num_threads(1)
    return load_pipeline(device="cpu", vocoder="fast")


def _dance_windows(seconds=6.5, fps=30.0, window=2.0, hop=0.5, invalid=None):
    m = procedural_dance(bpm=120.0, seconds=seconds + 1, fps=fps)
    J = m.joints.astype(np.float32)
    T = np.arange(len(J)) / fps
    valid = np.ones(len(J), bool)
    if invalid is not None:
        valid[(T >= invalid[0]) & (T < invalid[1])] = False
        J[~valid] = 0.0  # garbage in invalid frames must not leak into the model input
    wins = []
    for k, te in enumerate(np.arange(window + hop, seconds + 1e-9, hop)):
        sel = (T >= te - window) & (T < te)
        wins.append(LiveWindow(index=k, t_start=te - window, t_end=te, hop_start=te - hop, pose_times=T[sel], poses=J[sel], pose_confidence=np.ones((sel.sum(), 18), np.float32), pose_valid=valid[sel], audio=np.zeros(0, np.float32), sample_rate=SR, bpm=0.0, beat_time=None))
    return wins


def _run(be, wins):
    st = be.init_state()
    outs = []
    for w in wins:
        out, st = be.step(w, st)
        outs.append(out)
    return outs, st


def test_motion2music_audio_is_contiguous_exact_and_seeded(pipeline):
    be = ModelBackend("motion2music", pipeline, steps=2, seed=3, overlap=8, blend=1)
    assert not be.info.passthrough and be.info.label.startswith("model:") and "2 steps" in be.info.label
    wins = _dance_windows(invalid=(4.0, 4.4))
    outs, st = _run(be, wins)
    total = 0
    nxt = None
    for o in outs:
        assert o.audio is not None and o.audio.dtype == np.float32 and np.isfinite(o.audio).all()
        if nxt is not None and len(o.audio):
            assert abs(o.audio_time - nxt) < 1e-9  # contiguous with the previous call
        if len(o.audio):
            nxt = o.audio_time + len(o.audio) / SR
            assert o.decode_ms > 0
        total += len(o.audio)
    # audio sample 0 sits on the model grid: frame n0 at exactly n0 / motion_rate
    assert isinstance(st, ModelBackendState)
    n0 = st.n0
    first = next(o for o in outs if len(o.audio))
    assert abs(first.audio_time - n0 / RATE) < 1e-9 and abs(n0 / RATE - wins[0].hop_start) < 1 / RATE
    # every grid frame up to the newest pose was taken; whole latents fed, the odd one kept for later
    n_last = int(np.floor(wins[-1].pose_times[-1] * RATE + 1e-9))
    assert st.n_next == n_last + 1 and st.fed + len(st.pending) == n_last + 1 - n0
    assert st.fed % DEFAULT_TIMEBASE.motion_per_latent == 0 and len(st.pending) < 2
    # exact bookkeeping: the emitted audio lags only by the vocoder latency and the blend latents ...
    lag = pipeline.vocoder.latency_samples + be.blend * DEFAULT_TIMEBASE.samples_per_latent
    assert total == st.fed * 1024 - lag
    # ... and after flush it covers exactly the consumed motion duration
    tail, st2 = be.flush(st)
    assert abs(tail.audio_time - nxt) < 1e-9 and np.isfinite(tail.audio).all()
    assert total + len(tail.audio) == st.fed * 1024 == round(st.fed / RATE * SR)
    audio = np.concatenate([o.audio for o in outs] + [tail.audio])
    assert np.sqrt(np.mean(audio ** 2)) > 1e-3  # not silence
    # same seed -> same audio; another seed -> different audio
    again = np.concatenate([o.audio for o in _run(be, wins)[0]])
    assert np.array_equal(again, audio[:total])
    other = ModelBackend("motion2music", pipeline, steps=2, seed=4, overlap=8, blend=1)
    diff = np.concatenate([o.audio for o in _run(other, wins)[0]])
    assert len(diff) == total and not np.allclose(diff, audio[:total], atol=1e-3)
    assert not hasattr(be, "state")  # continuation state lives in the returned state only


def test_motion2music_lookahead_guesses_ahead_and_never_changes_the_real_stream(pipeline):
    """Lookahead: audio up to ``lookahead_s`` beyond the newest pose, from the dance continued one beat ahead;
    the real part of every window and the carried state are exactly those of a run without lookahead."""
    from momu_live.live.continuity import AudioStitcher

    wins = _dance_windows(seconds=5.0)
    plain, st_plain = _run(ModelBackend("motion2music", pipeline, steps=2, seed=3, blend=1), wins)
    be = ModelBackend("motion2music", pipeline, steps=2, seed=3, blend=1, lookahead_s=0.5)
    assert "lookahead 0.5 s" in be.info.label
    ahead, st = _run(be, wins)
    assert st.fed == st_plain.fed and st.n_next == st_plain.n_next  # the guess never entered the state
    for p, a, w in zip(plain, ahead, wins):
        assert np.array_equal(a.audio[: len(p.audio)], p.audio) and a.audio_time == p.audio_time
        if len(p.audio):
            end_plain = p.audio_time + len(p.audio) / SR
            end = a.audio_time + len(a.audio) / SR
            assert end - end_plain >= 0.4 and end >= w.t_end + 0.3  # audio ahead of the newest pose
            assert np.isfinite(a.audio).all() and np.sqrt(np.mean(a.audio[len(p.audio):] ** 2)) > 1e-3
    # through the playout's stitcher the guesses are replaced where not yet played: one contiguous stream
    sti, sent = AudioStitcher(SR), []
    for a in ahead:
        if len(a.audio):
            from momu_live.bridge.events import AudioBlock

            sent += sti.add(AudioBlock(a.audio, SR, a.audio_time))
    for x, y in zip(sent, sent[1:]):
        assert round(y.time * SR) == round(x.time * SR) + len(x.samples)
    assert sti.filled_s == 0 and sti.trimmed_s > 0


def test_extrapolated_dance_continues_from_the_last_pose_and_repeats_the_beat():
    from momu_live.live.model_backend import extrapolate_poses

    m = procedural_dance(bpm=120.0, seconds=4.0, fps=float(RATE))
    h = m.joints.astype(np.float32)
    period = int(round(float(RATE) * 0.5))
    g = extrapolate_poses(h, 40, period)
    assert g.shape == (40,) + h.shape[1:] and np.isfinite(g).all()
    assert np.abs(g[0] - h[-1]).max() < np.abs(h[-1] - h[-1 - period // 2]).max() + 1e-6  # starts near the dancer
    rel = g - g[:, :1] * np.array([1, 0, 1], np.float32)
    assert np.allclose(rel[period:2 * period], rel[2 * period:3 * period], atol=1e-5)  # one beat, repeated
    assert np.allclose(g[period:, 0, [0, 2]], h[-1, 0, [0, 2]], atol=1e-5)  # standing where the dancer stood


def test_live_controls_change_steps_and_guidance(pipeline):
    be = ModelBackend("motion2music", pipeline, steps=4, guidance=3.5)
    wins = _dance_windows(seconds=3.5)
    st = be.init_state()
    wins[1].controls = {"/momu/engine/set/steps": 1, "/momu/engine/set/guidance": 1.5}
    _, st = be.step(wins[0], st)
    assert st.spec.steps == 4
    _, st = be.step(wins[1], st)
    assert st.spec.steps == 1 and st.spec.guidance == 1.5 and "1 steps" in be.info.label
    # the values arrive validated: the OSC grammar rejects bad ones before they reach the engine's controls
    from momu_live.bridge.grammar import STEPS_ADDR, GrammarError, parse_control

    with pytest.raises(GrammarError):
        parse_control(STEPS_ADDR, ["garbage"])
    wins[2].controls = {STEPS_ADDR: parse_control(STEPS_ADDR, [2.0]).value}
    _, st = be.step(wins[2], st)
    assert st.spec.steps == 2 and st.spec.guidance == 1.5  # controls absent from a window leave the spec as it is


def test_pipeline_stream_vocoder_apart_equals_inside(pipeline):
    from momu_live.models.generation import SamplerSpec, StepOutput, StreamState

    spec = SamplerSpec(steps=1)
    j = procedural_dance(bpm=120.0, seconds=3.0, fps=RATE).joints.astype(np.float32)[:48]  # 3 chunks of 8 latents
    a = pipeline.init_stream("motion2music", overlap=4, seed=1, blend=2)
    b = pipeline.init_stream("motion2music", overlap=4, seed=1, blend=2)
    assert isinstance(a, StreamState) and a.task == "motion2music" and a.sampler.blend == 2
    n = 0
    for i in range(0, 48, 16):
        oa, a = pipeline.motion2music_step(j[i:i + 16], a, spec)
        ob, b = pipeline.motion2music_step(j[i:i + 16], b, spec, vocode=False)
        assert isinstance(oa, StepOutput) and ob.wav is None and oa.joints is None
        wb, b = pipeline.vocode_stream(ob.mel, b)
        assert torch.equal(oa.latents, ob.latents) and torch.equal(oa.mel, ob.mel) and torch.equal(oa.wav, wb)
        n += len(wb)
    fa, a = pipeline.flush(a)
    fb, b = pipeline.flush(b, vocode=False)
    wb, b = pipeline.vocode_stream(fb.mel, b, final=True)
    assert fa.latents.shape[-1] == 2 and fa.mel.shape == (80, 16) and torch.equal(fa.wav, wb)
    assert n + len(wb) == 24 * DEFAULT_TIMEBASE.samples_per_latent  # everything fed, nothing more
    assert a.sampler.pending is None and a.sampler.frames == 24
    with pytest.raises(MomuError, match="music2motion step on a motion2music stream"):
        pipeline.music2motion_step(torch.zeros(80, 8), a, spec)
    with pytest.raises(MomuError, match="no vocoder"):
        pipeline.vocode_stream(fb.mel, pipeline.init_stream("music2motion"))


def _clicks(seconds, bpm=120.0, tone=220.0):
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = 0.2 * np.sin(2 * np.pi * tone * t)
    L = int(0.03 * SR)
    click = np.sin(2 * np.pi * 900 * np.arange(L) / SR) * np.exp(-np.arange(L) / (0.01 * SR))
    for b in np.arange(0.05, seconds - 0.05, 60.0 / bpm):
        i = int(b * SR)
        y[i:i + L] += click[: n - i]
    return y.astype(np.float32)


def test_music2motion_poses_on_the_model_grid(pipeline):
    be = ModelBackend("music2motion", pipeline, steps=2, seed=0, blend=1)
    assert be.info.pose_rate == pytest.approx(RATE)
    y = _clicks(7.0)
    st = be.init_state()
    times, poses = [], []
    for k, te in enumerate(np.arange(2.5, 7.0 + 1e-9, 0.5)):
        seg = y[int(round((te - 2.0) * SR)):int(round(te * SR))]
        w = LiveWindow(index=k, t_start=te - 2.0, t_end=te, hop_start=te - 0.5, pose_times=np.zeros(0), poses=np.zeros((0, 18, 3), np.float32), pose_confidence=np.zeros((0, 18)), pose_valid=np.zeros(0, bool), audio=seg, sample_rate=SR, bpm=0.0, beat_time=None)
        out, st = be.step(w, st)
        assert len(out.pose_times) == len(out.poses)
        times.append(out.pose_times)
        poses.append(out.poses)
    t = np.concatenate(times)
    p = np.concatenate(poses)
    assert len(p) >= 0.8 * 4.5 * RATE and p.shape[1:] == (18, 3) and np.isfinite(p).all()
    assert np.allclose(np.diff(t), 1 / RATE, atol=1e-9)  # continuous, exact model rate across windows
    assert abs(t[0] - st.s0 / SR) < 1e-12 and st.s0 % 1024 == 0  # on the absolute grid
    assert t[-1] < 7.0 and p.std(axis=0).mean() > 1e-3  # no future poses; the body moves
    # a 44.1 kHz input is resampled to the model rate: the mel input buffer holds the 22.05 kHz signal
    from momu_live.models.audio import resample

    y44 = resample(y[: int(2.5 * SR)], SR, 2 * SR)[int(0.5 * 2 * SR):]  # [0.5, 2.5) s at 44.1 kHz
    w = LiveWindow(index=0, t_start=0.5, t_end=2.5, hop_start=2.0, pose_times=np.zeros(0), poses=np.zeros((0, 18, 3), np.float32), pose_confidence=np.zeros((0, 18)), pose_valid=np.zeros(0, bool), audio=y44, sample_rate=2 * SR, bpm=0.0, beat_time=None)
    _, st44 = be.step(w, be.init_state())
    buf = st44.mel.buf
    end = int(round(2.5 * SR))
    assert st44.in_next == end and 0 < len(buf) < 1024
    ref = y[end - len(buf):end - 64]  # away from the block edge (resampler filter tails)
    assert np.abs(buf[: len(ref)] - ref).max() < 0.05


def test_joint_generates_audio_and_poses_on_one_clock(pipeline):
    be = ModelBackend("joint", pipeline, steps=2, seed=0, blend=0)
    st = be.init_state()
    audio, times = [], []
    nxt = None
    for k, te in enumerate(np.arange(1.0, 4.0 + 1e-9, 0.5)):
        w = LiveWindow(index=k, t_start=te - 2, t_end=te, hop_start=te - 0.5, pose_times=np.zeros(0), poses=np.zeros((0, 18, 3), np.float32), pose_confidence=np.zeros((0, 18)), pose_valid=np.zeros(0, bool), audio=np.zeros(0, np.float32), sample_rate=SR, bpm=0.0, beat_time=None)
        out, st = be.step(w, st)
        if nxt is not None and len(out.audio):
            assert abs(out.audio_time - nxt) < 1e-9
        if len(out.audio):
            nxt = out.audio_time + len(out.audio) / SR
        audio.append(out.audio)
        times.append(out.pose_times)
        assert np.isfinite(out.poses).all()
    spl = DEFAULT_TIMEBASE.samples_per_latent
    assert st.fed == (int(round(4.0 * SR)) - st.s0) // spl  # latents accumulated exactly from the hops
    t = np.concatenate(times)
    assert len(t) == 2 * st.fed and np.allclose(np.diff(t), 1 / RATE, atol=1e-9)
    a = np.concatenate(audio)
    assert len(a) == st.fed * spl - pipeline.vocoder.latency_samples and np.abs(a).max() > 0.01


def test_make_backend_defaults_to_the_model_and_names_the_fix(tmp_path):
    be = make_backend("motion2music", threads=1)
    assert isinstance(be, ModelBackend) and "model:" in be.info.label and not be.info.passthrough
    assert make_backend("joint").pipe is be.pipe  # loaded once
    assert isinstance(make_backend("beats"), ClickBackend)  # beats never loads a model
    assert make_backend("motion2music", "passthrough").info.passthrough
    with pytest.raises(MomuError, match="passthrough"):
        make_backend("motion2music", str(tmp_path / "nope"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vae.json").write_text(json.dumps({"family": "vae", "format": 1, "config": {}}))
    (bad / "vae.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(MomuError, match="cannot load the generation model"):
        make_backend("motion2music", str(bad))


def test_cli_live_motion2music_runs_the_model(dancer_video, tmp_path):
    mon = OscMonitor()
    rec = tmp_path / "rec"
    try:  # in-process: the same entry point, exit status and output without the start-up of a new interpreter
        proc = run_momu("live", "--source", f"video:{dancer_video}", "--mode", "motion2music", "--osc-port", mon.port,
                        "--control-port", free_udp_port(), "--duration", "6", "--record", rec, "--threads", "1")
    finally:
        time.sleep(0.2)
        mon.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    msgs = [status_fields(a)["message"] for _, a in mon.of("/momu/status")]
    assert len(msgs) >= 4
    assert all("model: MoMu-Diffusion" in m and "pass-through" not in m for m in msgs), msgs[:3]
    wav, sr = sf.read(rec / "generated.wav")
    assert sr == SR and len(wav) > 1.5 * sr and np.isfinite(wav).all()
    assert np.sqrt(np.mean(wav[-sr:] ** 2)) > 1e-3  # generated music, not silence
    session = json.loads((rec / "session.json").read_text())
    assert "model: MoMu-Diffusion" in session["backend"] and session["windows"] >= 5
    assert session["latency"]["model"]["n"] >= 5 and session["latency"]["decode"]["median"] > 0


def test_window_grid_is_the_engine_tempo_in_stream_time():
    from momu_live.live.model_backend import window_grid

    w = _dance_windows(seconds=3.5)[2]
    assert window_grid(w, 0.0) is None  # tempo unknown: no guidance
    w.bpm, w.beat_time, w.meter = 120.0, 10.25, 3
    g = window_grid(w, stream_t0=10.0)
    b = np.asarray(g.beats)
    assert g.beats_per_bar == 3 and np.allclose(np.diff(b), 0.5)
    assert np.isclose(np.min(np.abs(b - 0.25)), 0.0)  # the tracked beat, in stream time
    assert b[0] <= w.t_start - 10.0 and b[-1] >= w.t_end - 10.0  # covers the window


def test_live_beat_guidance_follows_the_tracked_tempo_and_the_control(pipeline):
    def run(bpm, controls=None):
        be = ModelBackend("motion2music", pipeline, steps=2, seed=3, overlap=8, blend=1)
        wins = _dance_windows(seconds=4.5)
        for w in wins:
            w.bpm, w.beat_time = bpm, (1.0 if bpm else None)
            w.controls = dict(controls or {})
        outs, st = _run(be, wins)
        return np.concatenate([o.audio for o in outs]), st, be

    free, _, _ = run(0.0)  # no tempo: unguided
    off, st_off, be_off = run(120.0, {"/momu/engine/set/beat": 0.0})
    on, st_on, be_on = run(120.0)
    assert np.isfinite(on).all() and len(on) == len(free) == len(off)
    if pipeline.sampler.has_rhythm:  # strength 0 switches guidance off; the tempo still reaches the rhythm control
        assert not np.allclose(off, free, atol=1e-3)
    else:  # a DiT without the control: strength 0 over OSC is exactly the unguided model
        assert np.array_equal(off, free)
    assert not np.allclose(on, off, atol=1e-3)  # guidance acts on top of the same grid
    assert st_off.spec.beat.iters > 0 and st_off.spec.beat.music_step == 0.0 and "beat 0" in be_off.info.label
