"""``momu bench live``: latency per stage and end to end, memory over time and drops of the live engine.

Runs the real engine on a video paced as a camera (default 30 fps) into a real UDP OSC receiver and
prints median / p95 per stage (capture, pose, window, model, decode, send, e2e, audio_lag), RSS over time
with its slope, CPU use, every drop counter, and continuity: the longest gap in the generated audio stream
(stream time no block delivered), its longest silence (a click track is silent between clicks by design),
the longest pause between generated pose frames sent, the load-ladder moves
and the seconds the playout had to continue.  ``--hog N`` runs N real CPU-burning processes beside it
(a loaded machine).  ``--json`` prints the same as JSON, ``--plot`` writes a PNG of latency and RSS over time.
"""
from __future__ import annotations

import os
from pathlib import Path

from momu_live import MomuError
from momu_live.modes import MODES


def _default_video() -> Path | None:
    shared = Path(os.environ.get("MOMU_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
    p = shared / "fixtures" / "dancer.avi"
    return p if p.exists() else None


def register(subparsers) -> None:
    p = subparsers.add_parser("live", help="live engine latency per stage, memory and drops",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--source", default=None, help="video:PATH (default: ../shared/fixtures/dancer.avi), or any "
                                                  "momu live source")
    p.add_argument("--mode", default="motion2music", choices=MODES,
                   help="music2motion defaults to the bundled demo music as the source, joint to no source")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to run (the video loops)")
    p.add_argument("--fps", type=float, default=30.0, help="pace the video at this input rate")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--model", default=None, help="weights folder, or 'passthrough' (default: the shipped model)")
    p.add_argument("--steps", type=int, default=4, help="sampling steps of the model")
    p.add_argument("--beat-strength", type=float, default=1.0, help="beat guidance of the model (0: off)")
    p.add_argument("--lookahead", type=float, default=1.0, help="motion2music lookahead (s; 0: off)")
    p.add_argument("--hog", type=int, default=0, metavar="N", help="N CPU-burning processes run beside the engine")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds left out of the statistics")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", default=None, metavar="PNG", help="write latency and RSS over time to this PNG")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import resource
    import time

    import numpy as np
    import torch

    from momu_live.live.backend import make_backend
    from momu_live.live.engine import EngineConfig, LiveEngine
    from momu_live.live.latency import STAGES, rss_mb
    from momu_live.live.monitor import OscMonitor
    from momu_live.live.sinks import make_output
    from momu_live.live.sources import make_source

    torch.set_num_threads(args.threads)
    spec = args.source
    if spec is None and args.mode == "music2motion":
        spec = f"file:{Path(__file__).resolve().parents[1] / 'assets' / 'demo_music.flac'}"
    elif spec is None and args.mode == "joint":
        spec = "none"
    elif spec is None:
        v = _default_video()
        if v is None:
            raise MomuError("no default video (../shared/fixtures/dancer.avi); pass --source video:PATH")
        spec = f"video:{v}"
    if args.seconds <= args.warmup:
        raise MomuError("--seconds must be longer than --warmup")
    source = make_source(spec, realtime=True, fps=args.fps, loop=True)
    box: dict = {}

    def on_pose(frame, arrival):  # capture -> received by a real UDP peer (router thread + socket included)
        eng = box.get("engine")
        w = eng.capture_wall(frame) if eng is not None else None
        if w is not None:
            eng.stats.add("e2e_wire", (arrival - w) * 1000.0)

    mon = OscMonitor(keep=False, on_pose=on_pose)
    tap = _GeneratedTap(args.warmup)
    backend = make_backend(args.mode, args.model, steps=args.steps, threads=args.threads, beat=args.beat_strength,
                           lookahead=args.lookahead)
    engine = LiveEngine(EngineConfig(mode=args.mode, heartbeat_hz=1.0), source, backend,
                        make_output(None, "127.0.0.1", mon.port, sinks=[tap]))
    box["engine"] = engine
    hogs = _start_hogs(args.hog)
    try:
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        w0 = time.monotonic()
        engine.run(duration=args.seconds)
        wall = time.monotonic() - w0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    time.sleep(0.2)
    mon.close()
    since = w0 + args.warmup
    lat = engine.stats.summary(since=since)
    rss = np.array([(t, m) for t, m in engine.rss if t >= args.warmup])  # (K, 2)
    slope = float(np.polyfit(rss[:, 0], rss[:, 1], 1)[0] * 60.0) if len(rss) >= 3 else 0.0
    received = mon.counts.get("/momu/pose/frame", 0)
    res = {
        "source": spec, "mode": args.mode, "seconds": args.seconds, "input_fps": args.fps, "threads": args.threads,
        "backend": engine.backend.info.label,
        "latency_ms": {s: {k: round(v, 3) for k, v in lat[s].items()} for s in STAGES if s in lat},
        "rss_mb": {"start": round(float(rss[0, 1]), 1) if len(rss) else 0.0,
                   "end": round(float(rss[-1, 1]), 1) if len(rss) else 0.0,
                   "max": round(float(rss[:, 1].max()), 1) if len(rss) else 0.0,
                   "slope_mb_per_min": round(slope, 3), "now": round(rss_mb(), 1)},
        "cpu_cores_used": round(((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) / wall, 3),
        "frames": {"processed": source.stats.frames, "no_person": source.stats.no_person,
                   "received_by_osc_peer": received},
        "drops": {"source": source.stats.dropped, "output_queue": engine.out.dropped,
                  "skipped_windows": engine.skipped_windows, "total": engine.dropped},
        "windows": engine.windows, "beats": engine.beats_sent, "hogs": args.hog,
        "continuity": {**tap.summary(), "adaptations": engine.adaptations,
                       "continued_audio_s": round(engine.playout.audio.filled_s, 3),
                       "continued_poses_s": round(engine.playout.poses.filled_s, 3)},
        "rss_series": [[round(float(t), 2), round(float(m), 2)] for t, m in engine.rss],
    }
    if args.plot:
        _plot(engine, w0, res, args.plot)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"momu live: {args.mode} on {Path(spec.partition(':')[2]).name or spec} at {args.fps:g} fps input, "
                    f"{args.seconds:g} s, {args.threads} torch threads")
    for c in ("stage", "median ms", "p95 ms", "max ms", "n"):
        t.add_column(c, justify="right" if c != "stage" else "left")
    for s in STAGES:
        if s in lat:
            d = lat[s]
            t.add_row(s, f"{d['median']:.2f}", f"{d['p95']:.2f}", f"{d['max']:.2f}", str(d["n"]))
    con = Console()
    con.print(t)
    r = res["rss_mb"]
    con.print(f"RSS MiB: start {r['start']} end {r['end']} max {r['max']} slope {r['slope_mb_per_min']:+.2f} MiB/min; "
              f"CPU {res['cpu_cores_used']:.2f} cores")
    con.print(f"frames {res['frames']}; drops {res['drops']}; windows {res['windows']}; beats {res['beats']}")
    con.print(f"continuity: {res['continuity']}")
    con.print(f"back-end: {res['backend']}")
    return 0


class _GeneratedTap:
    """A sink that measures the generated streams' shape in O(1) memory: gaps in the audio stream's clock
    (stream time no block covered), the longest silence (|x| <= 1e-4) across blocks, and the longest
    pause between generated pose frames sent (a frozen avatar)."""

    def __init__(self, warmup_s: float = 0.0):
        self.warmup_s = warmup_s
        self.t0: float | None = None  # stream time of the first audio block
        self.end: float | None = None  # stream time just after the last block
        self.audio_s = 0.0
        self.gap_s = 0.0  # longest uncovered stretch after the warm-up
        self.silence_s = 0.0  # longest silent run after the warm-up
        self._run_s = 0.0  # the silent run going on at the end of the last block
        self.poses = 0
        self._last_pose: float | None = None
        self._first_pose: float | None = None
        self.pose_pause_s = 0.0

    def emit(self, ev) -> None:
        import time

        import numpy as np

        from momu_live.bridge.events import AudioBlock, PoseFrame

        if isinstance(ev, AudioBlock):
            x = np.asarray(ev.samples, np.float32).reshape(-1)
            sr, t = ev.sample_rate, float(ev.time)
            if self.t0 is None:
                self.t0 = t
            counted = t - self.t0 >= self.warmup_s
            if self.end is not None and t > self.end and counted:
                self.gap_s = max(self.gap_s, t - self.end)
                self._run_s = 0.0
            quiet = np.abs(x) <= 1e-4
            loud = np.flatnonzero(~quiet)
            if len(loud) == 0:
                self._run_s += len(x) / sr
            else:
                head = loud[0] / sr
                inner = (np.diff(loud).max() - 1) / sr if len(loud) > 1 else 0.0
                if counted:
                    self.silence_s = max(self.silence_s, self._run_s + head, inner)
                self._run_s = (len(x) - 1 - loud[-1]) / sr
            if counted:
                self.silence_s = max(self.silence_s, self._run_s)
            self.end = max(self.end or t, t + len(x) / sr)
            self.audio_s += len(x) / sr
        elif isinstance(ev, PoseFrame) and ev.source == "generated":
            now = time.monotonic()
            self._first_pose = now if self._first_pose is None else self._first_pose
            if self._last_pose is not None and now - self._first_pose >= self.warmup_s:
                self.pose_pause_s = max(self.pose_pause_s, now - self._last_pose)
            self._last_pose = now
            self.poses += 1

    def close(self) -> None:
        pass

    def summary(self) -> dict:
        out: dict = {}
        if self.t0 is not None:
            out.update(audio_seconds=round(self.audio_s, 2), longest_audio_gap_ms=round(1000 * self.gap_s, 1),
                       longest_silence_ms=round(1000 * self.silence_s, 1))
        if self.poses > 1:
            out.update(generated_poses=self.poses, longest_pose_pause_ms=round(1000 * self.pose_pause_s, 1))
        return out


def _start_hogs(n: int) -> list:
    """``n`` real CPU-burning child processes (a loaded machine), killed by the caller."""
    import subprocess
    import sys

    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, n))]


def _plot(engine, w0: float, res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for s in ("pose", "model", "e2e"):
        w, ms = engine.stats.history(s)
        if len(w):
            a.plot(w - w0, ms, ".", ms=2, label=s)
    a.set_ylabel("ms")
    a.set_yscale("log")
    a.legend()
    a.set_title(f"momu live {res['mode']}: latency per stage")
    rss = np.array(res["rss_series"])
    if len(rss):
        b.plot(rss[:, 0], rss[:, 1])
    b.set_ylabel("RSS MiB")
    b.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
