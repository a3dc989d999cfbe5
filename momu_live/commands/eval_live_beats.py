"""``momu eval live-beats``: the live beat clock judged against the music's own beats.

The reference is outside the loop: the beats of the soundtrack (a video's music track, or the audio
file itself) from librosa's beat tracker, offline (``models/beats.py``, pinned settings).  The beats
under test are the ones the live engine publishes: from the dancer's poses (``--video``) or from the
audio (``--audio``), predicted and sent ahead of time by the beat clock (``live/beatclock.py``).

Two ways to run the real tracker:

- replay (default, faster than real time): poses come from the live pose pipeline (MediaPipe + One-Euro
  smoothing, ``CameraSource``) run once and cached (``--poses``), each fed at its timestamp; the engine
  clock at which it arrives is its time plus the capture and pose time measured for that frame.  Audio
  is fed in 1024-sample blocks, each available at its last sample's time.
- ``--live``: the real ``LiveEngine`` (mode beats) on the real source at real-time pace, sending OSC to a
  UDP socket here that reads every bundle's timetag: lead = timetag - arrival (wall clock).

Printed (after ``--settle`` s): the tempo against the soundtrack's (median, share of beats within 4 %),
octave flips (beat-to-beat tempo jumps of more than 25 %), tempo messages Ableton would get, beat
F-measure at +-70 and +-100 ms, lead times; the baselines: a constant-tempo click at the soundtrack's
tempo with random phase (mean and 95th percentile over ``--trials`` phases) and the previous late
tracker (``tempo.TempoTracker``); and, for a dancer, how strongly the motion envelope itself is locked
to the music's beats (``beat coherence``: the resultant length of the envelope folded on the music's
beat phase; the soundtrack's own onset envelope for comparison).  ``--json`` writes everything,
``--plot`` a PNG (tempo over time, beats against the reference, lead times and beat errors).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

SETTLE_S = 8.0


def register(subparsers) -> None:
    p = subparsers.add_parser("live-beats", help="live beat clock vs the soundtrack's beats (tempo, flips, F, lead)",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="a dance video with its music track (beats from the dancer)")
    src.add_argument("--audio", help="a music file (beats from the audio, as a DAW input)")
    p.add_argument("--live", action="store_true", help="run the real engine at real-time pace over UDP")
    p.add_argument("--poses", default=None, help="pose cache .npz for --video (made when missing; default: next to "
                                                 "--json, else in the user cache)")
    p.add_argument("--seconds", type=float, default=None, help="use only the first S seconds")
    p.add_argument("--settle", type=float, default=SETTLE_S, help="seconds left out of the scores (default 8)")
    p.add_argument("--lead", type=float, default=None, help="publish beats this long ahead (default: the clock's 0.25 s)")
    p.add_argument("--trials", type=int, default=200, help="random phases of the constant-tempo baseline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="PATH", help="write all numbers here")
    p.add_argument("--plot", default=None, metavar="PNG", help="write the plot here")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------
# scoring (pure)


def ref_tempo(ref_beats: np.ndarray) -> float:
    """The reference tempo: 60 / the median inter-beat interval (BPM)."""
    return 60.0 / float(np.median(np.diff(ref_beats))) if len(ref_beats) > 2 else 0.0


def octave_flips(bpm: np.ndarray, ratio: float = 1.25) -> int:
    """Beat-to-beat tempo jumps by more than ``ratio`` (either way) in a published tempo sequence."""
    b = np.asarray(bpm, np.float64)
    if len(b) < 2:
        return 0
    return int(np.sum(np.abs(np.diff(np.log(b))) > math.log(ratio)))


def ableton_messages(beats: list[dict], tolerance: float = 0.5) -> list[tuple[float, float]]:
    """(time, bpm) of the tempo messages the AbletonOSC target would send for these published beats."""
    from momu_live.bridge.events import Beat
    from momu_live.bridge.router import TempoPolicyState, ableton_tempo_step

    st, out = TempoPolicyState(), []
    for b in beats:
        bpm, st = ableton_tempo_step(st, Beat(b["index"], b["time"], b["bpm"], 0.0, b["downbeat"]), tolerance)
        if bpm is not None:
            out.append((b["time"], bpm))
    return out


def score_beats(beats: list[dict], ref: np.ndarray, settle: float, t_end: float) -> dict:
    """Tempo, flips, F-measures and lead times of published ``beats`` [{index, time, bpm, downbeat, lead}]."""
    from momu_live.models.metrics import beat_f_measure

    rt = ref_tempo(ref)
    t = np.array([b["time"] for b in beats], np.float64)
    bpm = np.array([b["bpm"] for b in beats], np.float64)
    lead = np.array([b["lead"] for b in beats if b.get("lead") is not None], np.float64)
    late = (t >= settle) & (t <= t_end)
    r = ref[(ref >= settle) & (ref <= t_end)]
    e = t[late]
    out = {"n_beats": int(len(t)), "n_scored": int(late.sum()), "ref_bpm": rt}
    if late.any():
        med = float(np.median(bpm[late]))
        out.update(bpm_median=med, tempo_error=abs(med / rt - 1.0) if rt else None,
                   within_4pct=float(np.mean(np.abs(bpm[late] / rt - 1.0) <= 0.04)) if rt else None,
                   octave_flips=octave_flips(bpm[late]))
    else:
        out.update(bpm_median=None, tempo_error=None, within_4pct=0.0, octave_flips=0)
    for tol in (0.07, 0.1):
        out[f"f{int(tol * 1000)}"] = beat_f_measure(r, e, tol)
    abl = ableton_messages(beats)
    minutes = max(1e-9, (t_end - settle) / 60.0)
    jumps = np.abs(np.diff([b for _, b in abl])) if len(abl) > 1 else np.zeros(0)
    out["ableton"] = {"messages": len(abl), "after_settle_per_min": sum(1 for x, _ in abl if x >= settle) / minutes,
                      "max_jump_bpm": float(jumps.max()) if len(jumps) else 0.0}
    if len(lead):
        out["lead_ms"] = {"min": float(lead.min() * 1e3), "p5": float(np.percentile(lead, 5) * 1e3),
                          "median": float(np.median(lead) * 1e3), "max": float(lead.max() * 1e3),
                          "under_50ms": int(np.sum(lead < 0.05))}
    return out


def random_phase_baseline(ref: np.ndarray, settle: float, t_end: float, trials: int, seed: int = 0) -> dict:
    """A constant-tempo click at the reference tempo with a random phase: F at +-70/100 ms (mean, p95)."""
    from momu_live.models.metrics import beat_f_measure

    rng = np.random.default_rng(seed)
    period = 60.0 / ref_tempo(ref)
    r = ref[(ref >= settle) & (ref <= t_end)]
    f = {70: [], 100: []}
    for _ in range(trials):
        e = np.arange(settle + rng.uniform(0, period), t_end, period)
        for tol in f:
            f[tol].append(beat_f_measure(r, e, tol / 1000)["f"])
    return {f"f{k}": {"mean": float(np.mean(v)), "p95": float(np.percentile(v, 95))} for k, v in f.items()}


def beat_coherence(times: np.ndarray, values: np.ndarray, ref: np.ndarray) -> float:
    """How strongly an envelope is locked to the reference beats: ``|sum v e^{2 pi i phi}| / sum v`` with
    ``phi`` the position of each sample between its two reference beats (0: no lock, 1: all on one phase)."""
    t, v = np.asarray(times, np.float64), np.clip(np.asarray(values, np.float64), 0, None)
    m = (t > ref[0]) & (t < ref[-1])
    t, v = t[m], v[m]
    if v.sum() <= 0:
        return 0.0
    i = np.clip(np.searchsorted(ref, t) - 1, 0, len(ref) - 2)
    phi = (t - ref[i]) / (ref[i + 1] - ref[i])
    return float(np.abs(np.sum(v * np.exp(2j * np.pi * phi))) / v.sum())


# ------------------------------------------------------------------------------------------------
# inputs


def reference_beats(path: Path, seconds: float | None) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(wav, librosa beat times, sr, librosa tempo) of a file's music (a video's soundtrack too)."""
    from momu_live.models.audio import load_audio
    from momu_live.models.beats import DEFAULT_BEATS, music_beats

    wav, sr = load_audio(path, DEFAULT_BEATS.sample_rate)
    if seconds:
        wav = wav[: int(seconds * sr)]
    tempo, beats = music_beats(wav, sr)
    return wav, beats, sr, tempo


def live_poses(video: Path, cache: Path | None, seconds: float | None = None) -> dict:
    """Poses of ``video`` (its first ``seconds``) through the live pose pipeline (``CameraSource``:
    MediaPipe, person tracking, One-Euro), as fast as it goes, with each frame's measured capture and
    pose time; cached in ``cache`` (None: not cached)."""
    import time

    from momu_live.live.sources import CameraSource

    if cache is not None and cache.exists():
        d = np.load(cache)
        return {k: d[k] for k in d.files}
    items = []
    src = CameraSource(path=video, realtime=False)
    src.prepare()
    t0 = time.monotonic()
    src.start(items.append, lambda m: None, lambda: time.monotonic() - t0)
    while not src.finished:
        if seconds is not None and items and items[-1].t >= seconds:
            src.stop()
            break
        time.sleep(0.05)
    src.join()
    J = np.full((len(items), 18, 3), np.nan, np.float32)
    for i, it in enumerate(items):
        if it.joints is not None:
            J[i] = it.joints
    out = {"t": np.array([i.t for i in items]), "joints": J, "person": np.array([i.person for i in items]),
           "pose_ms": np.array([i.pose_ms for i in items]), "capture_ms": np.array([i.capture_ms for i in items])}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **out)
    return out


def replay_poses(poses: dict, cfg, seconds: float | None = None) -> tuple[list[dict], dict]:
    """The beat clock on cached poses, each at its time; the engine clock at arrival = time + capture +
    pose ms.  Returns the published beats and the kinematic envelope (for the coherence check)."""
    from momu_live.live.beatclock import BeatClock
    from momu_live.live.tempo import KinematicOnsetState, kinematic_onset_step

    bc = BeatClock(cfg)
    out, env_t, env_v, kin = [], [], [], KinematicOnsetState()
    for t, j, pm, cm, person in zip(poses["t"], poses["joints"], poses["pose_ms"], poses["capture_ms"], poses["person"]):
        if seconds and t > seconds:
            break
        if person != 0:
            continue
        j = None if not np.isfinite(j).any() else j
        bc.add_pose(j, float(t))
        tc, o, kin = kinematic_onset_step(j, float(t), kin)
        if tc is not None:
            env_t.append(tc)
            env_v.append(o)
        now = float(t) + (float(pm) + float(cm)) / 1000.0
        out += [{"index": b.index, "time": b.time, "bpm": b.bpm, "downbeat": b.downbeat, "lead": b.time - now,
                 "sent": now} for b in bc.due(now)]
    return out, {"t": np.array(env_t), "v": np.array(env_v), "skipped": bc.state.skipped,
                 "switches": bc.state.switches}


def replay_audio(wav: np.ndarray, sr: int, cfg, block: int = 1024) -> tuple[list[dict], dict]:
    """The beat clock on audio blocks, each available at its last sample's time (as ``AudioFileSource``)."""
    from momu_live.live.beatclock import BeatClock
    from momu_live.live.tempo import AudioOnsetState, audio_onset_step

    bc = BeatClock(cfg)
    out, env_t, env_v, aud = [], [], [], AudioOnsetState()
    for i in range(0, len(wav), block):
        x = wav[i:i + block]
        bc.add_audio(x, i / sr, sr)
        ts, fx, aud = audio_onset_step(x, i / sr, sr, aud)
        env_t += list(ts)
        env_v += list(fx)
        now = (i + len(x)) / sr
        out += [{"index": b.index, "time": b.time, "bpm": b.bpm, "downbeat": b.downbeat, "lead": b.time - now,
                 "sent": now} for b in bc.due(now)]
    return out, {"t": np.array(env_t), "v": np.array(env_v), "skipped": bc.state.skipped,
                 "switches": bc.state.switches}


def late_tracker(kind: str, data, sr: int = 22050, seconds: float | None = None) -> list[dict]:
    """The previous tracker (``tempo.TempoTracker``: a beat when its grid passes it), for comparison;
    lead = beat time - the input time at which it came out (negative: late)."""
    from momu_live.live.tempo import TempoTracker

    tr, out = TempoTracker(), []
    if kind == "pose":
        for t, j, pm, cm, person in zip(data["t"], data["joints"], data["pose_ms"], data["capture_ms"], data["person"]):
            if (seconds and t > seconds) or person != 0:
                continue
            now = float(t) + (float(pm) + float(cm)) / 1000.0
            for b in tr.add_pose(None if not np.isfinite(j).any() else j, float(t)):
                out.append({"index": b.index, "time": b.time, "bpm": b.bpm, "downbeat": b.downbeat, "lead": b.time - now})
    else:
        for i in range(0, len(data), 1024):
            x = data[i:i + 1024]
            now = (i + len(x)) / sr
            for b in tr.add_audio(x, i / sr, sr):
                out.append({"index": b.index, "time": b.time, "bpm": b.bpm, "downbeat": b.downbeat, "lead": b.time - now})
    return out


class BeatReceiver:
    """A real UDP peer for ``/momu/beat``: each beat by name (``grammar.beat_fields``) with its arrival
    (Unix time) and ``lead`` = its bundle's timetag - arrival (how early it came)."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.got: list[dict] = []
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()

    def _run(self) -> None:
        import socket
        import time

        from momu_live.bridge.grammar import beat_fields
        from momu_live.bridge.osc import Bundle, decode_packet, timetag_to_unix

        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            arrival = time.time()
            try:
                pkt = decode_packet(data)
            except Exception:
                continue
            tag = timetag_to_unix(pkt.timetag) if isinstance(pkt, Bundle) and pkt.timetag != 1 else None
            for m in (pkt.messages if isinstance(pkt, Bundle) else [pkt]):
                if m.address == "/momu/beat":
                    self.got.append({**beat_fields(m.args), "lead": None if tag is None else tag - arrival,
                                     "arrival": arrival})

    def close(self) -> None:
        self._stop.set()
        self._th.join(1.0)
        self.sock.close()


def run_live(spec: str, seconds: float, lead: float | None) -> list[dict]:
    """The real engine (mode beats) on ``spec`` at real-time pace; beats received over UDP with their
    bundle timetags: lead = timetag - arrival, beat time = the message's ``time``."""
    import time
    from dataclasses import replace

    from momu_live.live.backend import make_backend
    from momu_live.live.engine import EngineConfig, LiveEngine
    from momu_live.live.sinks import make_output
    from momu_live.live.sources import make_source

    rx = BeatReceiver()
    cfg = EngineConfig(mode="beats", heartbeat_hz=1.0)
    if lead is not None:
        cfg.beatclock = replace(cfg.beatclock, lead_s=lead)
    engine = LiveEngine(cfg, make_source(spec, realtime=True), make_backend("beats"),
                        make_output(None, "127.0.0.1", rx.port))
    try:
        engine.run(duration=seconds)
        time.sleep(0.5)
    finally:
        rx.close()
    return rx.got


# ------------------------------------------------------------------------------------------------
# report


def plot(path: str, res: dict, beats: list[dict], late: list[dict], ref: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 1, figsize=(12, 9))
    rt = res["clock"]["ref_bpm"]
    t = np.array([b["time"] for b in beats])
    ax[0].plot(t, [b["bpm"] for b in beats], ".-", label="beat clock (published)")
    if late:
        ax[0].plot([b["time"] for b in late], [b["bpm"] for b in late], ".", alpha=0.5, label="late tracker (before)")
    ax[0].axhline(rt, color="k", lw=1, label=f"soundtrack {rt:.1f} BPM")
    ax[0].fill_between([0, max(t.max() if len(t) else 1, ref.max())], rt * 0.96, rt * 1.04, color="k", alpha=0.08)
    ax[0].axvline(res["settle_s"], color="gray", ls=":")
    ax[0].set_ylabel("BPM")
    ax[0].legend(loc="upper right", fontsize=8)
    ax[0].set_title(title)
    ax[1].vlines(ref, 0, 1, color="k", lw=1, label="soundtrack beats (librosa)")
    d = np.array([np.min(np.abs(ref - x)) for x in t]) if len(t) else np.zeros(0)
    ax[1].vlines(t[d <= 0.1], 1.1, 2.1, color="tab:green", lw=1.5, label="published, within 100 ms")
    ax[1].vlines(t[d > 0.1], 1.1, 2.1, color="tab:red", lw=1.5, label="published, off")
    ax[1].set_yticks([])
    ax[1].legend(loc="upper right", fontsize=8, ncol=3)
    ax[1].set_xlabel("stream time (s)")
    if len(t):
        signed = np.array([(ref - x)[np.argmin(np.abs(ref - x))] for x in t]) * -1000  # published - nearest ref
        ax[2].hist(signed, bins=40, alpha=0.6, label="published - nearest soundtrack beat (ms)")
    leads = [b["lead"] * 1000 for b in beats if b.get("lead") is not None]
    if leads:
        ax[2].hist(leads, bins=40, alpha=0.6, label="lead: timetag - send (ms)")
    ax[2].axvline(50, color="k", ls=":")
    ax[2].legend(fontsize=8)
    ax[2].set_xlabel("ms")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}"


def run(args: argparse.Namespace) -> int:
    import json
    import os
    from dataclasses import replace

    from momu_live import MomuError
    from momu_live.live.beatclock import BeatClockConfig

    path = Path(args.video or args.audio)
    if not path.exists():
        raise MomuError(f"{path} not found")
    if args.settle < 0 or (args.seconds is not None and args.seconds <= args.settle):
        raise MomuError("--seconds must be longer than --settle")
    wav, ref, sr, lib_tempo = reference_beats(path, args.seconds)
    t_end = len(wav) / sr
    cfg = BeatClockConfig() if args.lead is None else replace(BeatClockConfig(), lead_s=args.lead)
    kind = "pose" if args.video else "audio"
    env = None
    late = []
    if args.live:
        spec = f"video:{path}" if kind == "pose" else f"file:{path}"
        beats = run_live(spec, t_end + 0.5, args.lead)
    elif kind == "pose":
        cache = Path(args.poses) if args.poses else (
            Path(args.json).with_suffix(".poses.npz") if args.json else
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "momu" / "live_poses" / f"{path.stem}.npz")
        poses = live_poses(path, cache)
        beats, env = replay_poses(poses, cfg, args.seconds)
        late = late_tracker("pose", poses, seconds=args.seconds)
    else:
        beats, env = replay_audio(wav, sr, cfg)
        late = late_tracker("audio", wav, sr)
    res = {"input": str(path), "kind": kind, "mode": "live" if args.live else "replay", "settle_s": args.settle,
           "seconds": t_end, "librosa_tempo": lib_tempo, "n_ref_beats": int(len(ref)),
           "config": {"lead_s": cfg.lead_s, "min_lead_s": cfg.min_lead_s, "prior_bpm": cfg.prior_bpm},
           "clock": score_beats(beats, ref, args.settle, t_end),
           "baseline_random_phase": random_phase_baseline(ref, args.settle, t_end, args.trials, args.seed)}
    if late:
        res["baseline_late_tracker"] = score_beats(late, ref, args.settle, t_end)
    if env is not None:
        res["clock"]["skipped_beats"] = int(env["skipped"])
        res["clock"]["tempo_switches"] = int(env["switches"])
        from momu_live.models.beats import onset_strength

        o = onset_strength(wav, sr, 512)
        res["beat_coherence"] = {"input_envelope": beat_coherence(env["t"], env["v"], ref),
                                 "soundtrack_onsets": beat_coherence(np.arange(len(o)) * 512 / sr, o, ref)}
    c, b, lt = res["clock"], res["baseline_random_phase"], res.get("baseline_late_tracker")
    print(f"{path.name} ({kind}, {res['mode']}): soundtrack {c['ref_bpm']:.1f} BPM (librosa {lib_tempo:.1f}), "
          f"{len(ref)} beats, scored after {args.settle:g} s")
    print(f"{'':24s} {'BPM':>7s} {'err':>6s} {'in 4%':>6s} {'flips':>5s} {'F@70':>6s} {'F@100':>6s} {'Ableton/min':>11s} "
          f"{'lead min/p5/med ms':>20s}")
    for name, s in (("beat clock", c), ("late tracker (before)", lt)):
        if s is None:
            continue
        ld = s.get("lead_ms")
        lds = f"{ld['min']:.0f}/{ld['p5']:.0f}/{ld['median']:.0f}" if ld else "-"
        print(f"{name:24s} {_fmt(s['bpm_median'], 1):>7s} {_fmt(s['tempo_error']):>6s} {_fmt(s['within_4pct'], 2):>6s} "
              f"{s['octave_flips']:>5d} {s['f70']['f']:>6.3f} {s['f100']['f']:>6.3f} {s['ableton']['after_settle_per_min']:>11.1f} "
              f"{lds:>20s}")
    print(f"{'random-phase click':24s} {c['ref_bpm']:>7.1f} {0.0:>6.3f} {1.0:>6.2f} {0:>5d} {b['f70']['mean']:>6.3f} "
          f"{b['f100']['mean']:>6.3f}   (p95 over {args.trials} phases: F@70 {b['f70']['p95']:.3f}, F@100 {b['f100']['p95']:.3f})")
    if "beat_coherence" in res:
        bc = res["beat_coherence"]
        print(f"beat coherence with the soundtrack's beats: input envelope {bc['input_envelope']:.3f}, "
              f"soundtrack onsets {bc['soundtrack_onsets']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({**res, "beats": beats}, indent=1, default=float))
        print(f"json: {args.json}")
    if args.plot:
        plot(args.plot, res, beats, late, ref, f"{path.name}: beats from the {'dancer' if kind == 'pose' else 'audio'}")
        print(f"plot: {args.plot}")
    return 0
