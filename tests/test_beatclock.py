"""The predictive beat clock (momu_live/live/beatclock.py) and the beat-timing policies around it.

Real media: the bundled demo_music.flac (audio input, judged against librosa's beats of the same file,
offline) and ../shared/fixtures/dancer.avi (the dancer; skipped without ../shared).  Real peers: the
live engine sends to a real UDP socket that reads each bundle's timetag; control messages go to the
engine's real OSC control port.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from momu_live.bridge.events import Beat
from momu_live.bridge.router import TempoPolicyState, ableton_tempo_step
from momu_live.live.beatclock import (BeatClockConfig, BeatClockState, beatclock_step, clock_bpm, due_beats, predict,
                                      release_manual, set_manual)

DEMO = Path(__file__).resolve().parents[1] / "momu_live" / "assets" / "demo_music.flac"


def _pulses(bpm: float, seconds: float, rate: float = 50.0, phase: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(int(seconds * rate)) / rate
    ph = ((t - phase) * bpm / 60.0) % 1.0
    return t, np.exp(-0.5 * (np.minimum(ph, 1 - ph) * 60.0 / bpm / 0.03) ** 2)  # a bump on every beat


def test_beatclock_chunked_equals_whole_and_locks():
    rng = np.random.default_rng(0)
    t, v = _pulses(120.0, 14.0, 50.0, 0.13)
    t = t + rng.uniform(0, 0.004, len(t))  # jittered input times
    whole = beatclock_step(t, v, BeatClockState())
    st = BeatClockState()
    for a, b in ((0, 1), (1, 90), (90, 91), (91, 500), (500, len(t))):
        st = beatclock_step(t[a:b], v[a:b], st)
    assert st.period == whole.period and st.anchor_t == whole.anchor_t and st.anchor_k == whole.anchor_k
    assert abs(clock_bpm(st) - 120.0) < 1.0
    ahead = predict(st, BeatClockConfig(), 14.0, 16.0)
    err = [abs(((b.time - 0.13) / 0.5 + 0.5) % 1.0 - 0.5) * 0.5 for b in ahead]
    assert len(ahead) == 4 and max(err) < 0.02, err  # forecast beats land on the true beats (< 20 ms)
    assert [b.phase for b in ahead] == [(b.index % 4) / 4 for b in ahead]


def test_octave_candidate_must_last_before_the_tempo_switches():
    cfg = BeatClockConfig()
    t1, v1 = _pulses(120.0, 12.0)
    st = beatclock_step(t1, v1, BeatClockState(), cfg)
    assert abs(clock_bpm(st) - 120) < 1.5
    # 4 s of a half-tempo pattern (every other beat missing): an octave candidate, not lasting: no switch
    t2, v2 = _pulses(60.0, 4.0, phase=0.1)
    s2 = beatclock_step(t2 + 12.0, v2, st, cfg)
    t3, v3 = _pulses(120.0, 6.0)
    s3 = beatclock_step(t3 + 16.0, v3, s2, cfg)
    assert s3.switches == 0 and abs(clock_bpm(s3) - 120) < 3
    # a lasting change to 90 BPM (not an octave): the clock follows once it has won for switch_s
    t4, v4 = _pulses(90.0, 14.0)
    s4 = beatclock_step(t4 + 22.0, v4, s3, cfg)
    assert abs(clock_bpm(s4) - 90) < 2 and s4.switches == 1


def test_due_beats_are_published_once_ahead_and_never_late():
    cfg = BeatClockConfig(lead_s=0.25, min_lead_s=0.05)
    t, v = _pulses(120.0, 10.0)
    st = beatclock_step(t, v, BeatClockState(), cfg)
    out, now = [], 10.0
    while now < 14.0:  # poll every 40 ms, as pose frames come
        bs, st = due_beats(st, cfg, now)
        out += [(b.index, b.time - now) for b in bs]
        now += 0.04
    idx = [i for i, _ in out]
    assert idx == sorted(set(idx)) and len(idx) == 9  # beats 10.1 ... 14.1 s at 120 BPM, each once
    assert all(0.05 <= lead <= 0.25 + 1e-9 for _, lead in out), out
    # a phase jump that puts the next beat closer than min_lead_s: skipped, not sent late
    st2 = replace(st, anchor_t=st.anchor_t + 0.2)
    bs, st3 = due_beats(st2, cfg, now)
    assert all(b.time - now >= 0.05 for b in bs)


def test_manual_tempo_holds_until_handed_back():
    cfg = BeatClockConfig()
    t, v = _pulses(120.0, 30.0)
    st = beatclock_step(t[:500], v[:500], BeatClockState(), cfg)
    st = set_manual(st, 100.0, 10.0)
    st = beatclock_step(t[500:1400], v[500:1400], st, cfg)  # 18 s of a 120 BPM dancer: the hold wins
    assert clock_bpm(st) == pytest.approx(100.0)
    st = release_manual(st)
    st = beatclock_step(t[1400:], v[1400:], st, cfg)
    assert st.manual_bpm == 0


def test_ableton_tempo_at_most_once_a_bar_and_only_on_lasting_changes():
    st, sent = TempoPolicyState(), []
    rng = np.random.default_rng(0)
    bpms = list(120 + rng.normal(0, 0.8, 64)) + [140.0] * 32  # a wobbly 120, then a lasting change to 140
    for k, bpm in enumerate(bpms):
        out, st = ableton_tempo_step(st, Beat(k, k * 0.5, float(bpm), 0.0, k % 4 == 0), 0.5, lasting_bars=1)
        if out is not None:
            sent.append((k, out))
    ks = [k for k, _ in sent]
    assert all(k % 4 == 0 for k in ks) and len(ks) == len(set(k // 4 for k in ks))  # downbeats: <= one a bar
    assert sent[-1][1] == 140.0 and sent[-1][0] == 68  # the change went out once it lasted a bar
    wobble = [b for k, b in sent if k < 64]
    assert len(wobble) <= 1 + 64 // 16  # a 0.8 BPM wobble reaches the DAW far less than once a bar


def test_midi_clock_in_and_link_peer_tempo():
    from momu_live.bridge.midi import MidiClockIn, clock_in_bpm
    from momu_live.live.clock import LinkSync

    got = []
    ci = MidiClockIn(lambda bpm, at: got.append(bpm), timeout_s=0.3)
    try:
        ci.handle("start", 0.0)
        for k in range(24 * 3 + 1):
            ci.handle("clock", k * 60.0 / 100.0 / 24)
        assert len(got) == 3 and got[-1] == pytest.approx(100.0)  # pulses 24, 48, 72: a beat each
        assert clock_in_bpm(np.arange(25) * 60.0 / 128.0 / 24) == pytest.approx(128.0)
        ci.handle("stop", 2.0)
        assert got[-1] == 0.0  # hands the tempo back
    finally:
        ci.close()

    class FakeLink:
        tempo = 120.0

    peer = []
    link = LinkSync(link=FakeLink(), tolerance=0.5, on_peer_tempo=peer.append)
    for k in range(16):  # the dancer at 124: Link follows on a downbeat once the change lasted a bar
        link.beat(k * 0.5, 124.0, k % 4 == 0)
    assert link.link.tempo == 124.0 and link.updates == 1
    link.link.tempo = 97.0  # another peer (the DAW) sets the tempo
    link.beat(8.5, 124.0, True)
    assert peer == [97.0] and link.link.tempo == 97.0  # the peer holds it; not overwritten


@pytest.fixture(scope="module")
def demo_reference():
    from momu_live.commands.eval_live_beats import reference_beats

    return reference_beats(DEMO, None)


def test_audio_input_beats_f70_on_demo_music(demo_reference):
    from momu_live.commands.eval_live_beats import replay_audio, score_beats

    wav, ref, sr, _ = demo_reference
    beats, _ = replay_audio(wav, sr, BeatClockConfig())
    s = score_beats(beats, ref, 8.0, len(wav) / sr)
    assert s["f70"]["f"] >= 0.8, s  # measured 0.975 (librosa's beats of the same file are the reference)
    assert s["tempo_error"] < 0.04 and s["octave_flips"] == 0
    assert s["lead_ms"]["min"] >= 50.0


def test_engine_publishes_beats_ahead_with_timetags_and_holds_a_manual_tempo():
    """The real engine on demo_music.flac at real-time pace: every /momu/beat arrives in a bundle >= 50 ms
    before its timetag; /momu/tempo/set/bpm 100 holds for > 10 s until /momu/tempo/set/follow 1."""
    from momu_live.live.backend import make_backend
    from momu_live.live.control import ControlInput
    from momu_live.live.engine import EngineConfig, LiveEngine
    from momu_live.live.monitor import osc_message
    from momu_live.live.sinks import make_output
    from momu_live.live.sources import AudioFileSource

    from momu_live.commands.eval_live_beats import BeatReceiver

    rx = BeatReceiver()
    control = ControlInput("127.0.0.1", 0)
    engine = LiveEngine(EngineConfig(mode="beats", heartbeat_hz=2.0), AudioFileSource(DEMO, realtime=True),
                        make_backend("beats"), make_output(None, "127.0.0.1", rx.port), control=control)
    runner = threading.Thread(target=engine.run, kwargs={"duration": 20.0})
    cs = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        runner.start()
        time.sleep(6.0)
        t_hold = time.time()
        cs.sendto(osc_message("/momu/tempo/set/bpm", [100.0]), ("127.0.0.1", control.port))
        time.sleep(11.0)
        t_back = time.time()
        cs.sendto(osc_message("/momu/tempo/set/follow", [1]), ("127.0.0.1", control.port))
        runner.join(30)
    finally:
        cs.close()
        rx.close()
    got = [(b["arrival"], b["arrival"] + b["lead"], b) for b in rx.got if b["lead"] is not None]
    assert len(got) >= 25 and len(got) == len(rx.got)  # every beat came in a timetagged bundle
    leads = np.array([tag - arrival for arrival, tag, _ in got])
    assert leads.min() >= 0.05, leads  # every beat is on the wire >= 50 ms before it falls
    phases = {round(a["phase"], 3) for _, _, a in got}
    assert phases == {0.0, 0.25, 0.5, 0.75}  # the bar phase is real
    held = [a["bpm"] for arrival, _, a in got if t_hold + 0.3 < arrival < t_back]
    assert len(held) >= 15 and all(b == pytest.approx(100.0) for b in held)  # > 10 s held, nothing moved it
    after = [a["bpm"] for arrival, _, a in got if arrival > t_back + 1.5]
    assert after and abs(after[-1] - 112.3) < 3  # handed back: the music's tempo again
    assert engine.tempo_origin == ""


@pytest.fixture(scope="module")
def dancer_excerpt(dancer_video):
    from momu_live.commands.eval_live_beats import live_poses, reference_beats

    seconds = 24.0
    wav, ref, sr, _ = reference_beats(dancer_video, seconds)
    return live_poses(dancer_video, None, seconds), ref, seconds


def test_dancer_fixture_excerpt(dancer_excerpt):
    """The real dancer through the live pose pipeline: beats published ahead, a stable tempo, Ableton
    at most once a bar.  Measured on the whole fixture (``momu eval live-beats --video``): this dancer is
    not on the soundtrack's beat (beat coherence of the motion 0.02), so the tempo (~170 BPM vs 129) and
    F@100 (~0.48, a random-phase click at the right tempo scores 0.41 on average) miss the issue's
    targets; the numbers are in docs/live.md."""
    from momu_live.commands.eval_live_beats import replay_poses, score_beats

    poses, ref, seconds = dancer_excerpt
    beats, env = replay_poses(poses, BeatClockConfig(), seconds)
    s = score_beats(beats, ref, 8.0, seconds)
    assert s["n_scored"] >= 20
    assert s["lead_ms"]["min"] >= 50.0
    assert s["octave_flips"] == 0
    bpm = np.array([b["bpm"] for b in beats if b["time"] >= 8.0])
    assert bpm.max() / bpm.min() < 1.2  # no wandering over 16 s
    assert s["ableton"]["messages"] <= len(beats) // 4 + 1


def test_live_music_scoring_offsets_and_tempo():
    from momu_live.commands.eval_live_music import offsets_to_reference, score

    ref = np.arange(0, 30, 0.5)  # 120 BPM
    on = score(ref + 0.02, ref, 8.0, 30.0)
    assert on["median_offset_ms"] == pytest.approx(20.0, abs=1e-6) and on["f70"] == 1.0
    assert on["tempo_ratio"] == pytest.approx(1.0)
    off = score(ref + 0.25, ref, 8.0, 30.0)  # exactly between the beats: the worst phase
    assert off["median_offset_ms"] == pytest.approx(250.0, abs=1e-6) and off["f100"] == 0.0
    fast = score(np.arange(0, 30, 60 / 171), ref, 8.0, 30.0)
    assert fast["tempo_ratio"] == pytest.approx(171 / 120, rel=1e-3)
    assert offsets_to_reference(np.array([]), ref).size == 0
