"""``momu live``: the live daemon (sources -> engine -> OSC/MIDI/audio/recordings)."""
from __future__ import annotations

import argparse
import textwrap

from momu_live import MomuError
from momu_live.modes import MODES, Mode

DEFAULT_MODE = {"pose": Mode.MOTION2MUSIC.value, "audio": Mode.MUSIC2MOTION.value, "none": Mode.JOINT.value}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, and the description/epilog (the control table) kept as written."""


def _controls_epilog() -> str:
    from momu_live.bridge.grammar import controls_text

    return "OSC control messages (to --control-port; docs/OSC.md):\n" + controls_text()


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "live", help="run live: webcam/video/audio/OSC in; music, poses, beats, status out",
        description=textwrap.fill(
            "Run the live engine.  motion2music / music2motion / joint run the shipped MoMu-Diffusion model "
            "(streaming, explicit state); --model passthrough runs a clearly labelled pass-through instead "
            "(metronome at the tracked tempo / procedural beat-synced dancer); the status says which.", 100),
        epilog=_controls_epilog(), formatter_class=_HelpFormatter)
    p.add_argument("--source", default="webcam:0",
                   help="webcam[:N] | video:PATH | audio:DEVICE (name substring) | file:PATH (audio) | osc | none")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="default: motion2music for pose sources, music2motion for audio, joint for none")
    p.add_argument("--preset", default=None, help="output preset (momu presets); default: the generic /momu grammar")
    p.add_argument("--osc-host", default="127.0.0.1", help="where OSC output goes")
    p.add_argument("--osc-port", type=int, default=None, help="OSC destination port (default: the preset's, 9000 for generic)")
    p.add_argument("--control-port", type=int, default=9001, help="OSC control (and --source osc pose) input port")
    p.add_argument("--listen", default="127.0.0.1", help="address the control port binds (0.0.0.0 for the network)")
    p.add_argument("--record", default=None, metavar="DIR", help="record generated.wav, poses.npz, events.jsonl here")
    p.add_argument("--force", action="store_true", help="--record: overwrite a recording already in DIR")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop cleanly (exit 0) after S seconds")
    p.add_argument("--window", type=float, default=2.0, help="analysis window (s)")
    p.add_argument("--hop", type=float, default=0.5, help="scheduler hop (s)")
    p.add_argument("--heartbeat-hz", type=float, default=2.0, help="status messages per second (>= 1)")
    p.add_argument("--fast", action="store_true", help="files: process as fast as possible instead of real-time pace")
    p.add_argument("--loop", action="store_true", help="files: loop forever")
    p.add_argument("--fps", type=float, default=None, help="video: play at this rate instead of the file's")
    p.add_argument("--model", default=None, metavar="DIR|passthrough",
                   help="weights folder (vae/dit .safetensors + .json); default: the shipped models/weights; "
                        "'passthrough' = the labelled pass-through, no model")
    p.add_argument("--no-model", action="store_true", help="same as --model passthrough")
    p.add_argument("--steps", type=int, default=4, help="sampler steps per window (live: /momu/engine/set/steps)")
    p.add_argument("--guidance", type=float, default=3.5, help="CFG / cross-guidance scale (/momu/engine/set/guidance)")
    p.add_argument("--seed", type=int, default=0, help="noise seed of the generation model")
    p.add_argument("--beat-strength", type=float, default=1.0,
                   help="beat guidance onto the tracked / forced tempo (x the default step; 0: off; /momu/engine/set/beat)")
    p.add_argument("--lookahead", type=float, default=1.0, metavar="S",
                   help="motion2music: generate S seconds ahead of the dancer (the dance continued one beat at a time) "
                        "so audio plays on time, not a window late; 0: off (/momu/engine/set/lookahead)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for the model")
    p.add_argument("--audio-out", default=None, metavar="DEVICE", help="play generated audio on this output device")
    p.add_argument("--midi-out", default=None, metavar="PORT",
                   help="MIDI beat notes + clock (24 ppq) to this port (name substring; bridge/midi.py)")
    p.add_argument("--midi-clock-in", default=None, metavar="PORT",
                   help="follow a MIDI clock from this input port (name substring): its tempo holds the beat clock "
                        "while it runs; stop hands the tempo back to the dancer / music")
    p.add_argument("--link", action="store_true", help="Ableton Link tempo sync (needs aalink; optional)")
    p.add_argument("--print-status", action="store_true", help="print each status heartbeat to stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging
    import signal
    import threading

    from momu_live.live.backend import make_backend
    from momu_live.bridge.grammar import GrammarError, check_control
    from momu_live.live.control import ControlInput
    from momu_live.live.engine import EngineConfig, LiveEngine
    from momu_live.live.sinks import make_output
    from momu_live.models.timebase import DEFAULT_TIMEBASE
    from momu_live.live.sources import make_source

    log = logging.getLogger("momu.live")
    if args.duration is not None and args.duration <= 0:
        raise MomuError("--duration must be positive seconds")
    try:  # the same ranges as the live controls (one grammar)
        check_control("/momu/engine/set/window", args.window)
        check_control("/momu/engine/set/hop", args.hop)
        check_control("/momu/engine/set/steps", args.steps)
        check_control("/momu/engine/set/guidance", args.guidance)
        check_control("/momu/engine/set/beat", args.beat_strength)
        check_control("/momu/engine/set/lookahead", args.lookahead)
    except GrammarError as exc:
        raise MomuError(f"{exc} (the same range as the OSC control; see momu live --help)") from None
    if args.hop > args.window:
        raise MomuError(f"--hop {args.hop} must be between 0.02 s and --window ({args.window} s)")
    source = make_source(args.source, realtime=not args.fast, fps=args.fps, loop=args.loop)
    mode = args.mode or DEFAULT_MODE[source.kind]
    if mode == "music2motion" and source.kind == "pose":
        raise MomuError("--mode music2motion needs music in: --source audio:DEVICE or file:PATH")
    if mode in ("motion2music", "beats") and source.kind == "audio":
        log.info("%s on an audio source: tempo and beats come from the music", mode)
    if args.steps < 1 or args.threads < 1:
        raise MomuError("--steps and --threads must be >= 1")
    def backend_factory(m: str):
        return make_backend(m, "passthrough" if args.no_model else args.model, device=args.device,
                            steps=args.steps, guidance=args.guidance, seed=args.seed, threads=args.threads,
                            beat=args.beat_strength, lookahead=args.lookahead)

    backend = backend_factory(mode)
    control = ControlInput(args.listen, args.control_port)  # fails early (port taken) before devices open
    opened: list = [control]
    try:
        output = make_output(args.preset, args.osc_host, args.osc_port,
                             {"audio_device": args.audio_out, "midi_port": args.midi_out},
                             sinks=[_StatusPrinter()] if args.print_status else [])
        opened.append(output)
        link = None
        if args.link:
            from momu_live.live.clock import LinkSync

            link = LinkSync()
            opened.append(link)
        clock_port = None
        if args.midi_clock_in:
            from momu_live.bridge.midi import open_input

            clock_port = open_input(args.midi_clock_in)  # fails early, naming the inputs
            opened.append(clock_port)
        recorder = None
        if args.record:
            from momu_live.live.recorder import Recorder

            recorder = Recorder(args.record, DEFAULT_TIMEBASE.sample_rate, {"mode": mode, "source": args.source, "preset": args.preset,
                                                      "backend": backend.info.label},
                                overwrite=args.force)
    except BaseException:
        for o in reversed(opened):
            o.close()
        raise
    cfg = EngineConfig(mode=mode, window_s=args.window, hop_s=args.hop, heartbeat_hz=args.heartbeat_hz,
                       realtime=not args.fast)
    engine = LiveEngine(cfg, source, backend, output, recorder, control, link, backend_factory=backend_factory)

    clock_in = None
    if clock_port is not None:
        from momu_live.bridge.midi import MidiClockIn

        clock_in = MidiClockIn(lambda bpm, at: engine.external_tempo(bpm, "midi clock", at), clock_port)

    def on_signal(signum, frame):
        engine.stop(signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    osc_to = ", ".join(f"{t.sender.host}:{t.sender.port}" for t in getattr(output, "targets", [])) or "no OSC target"
    log.info("momu live: %s -> %s (%s), OSC to %s, control on %s:%d", args.source, mode, backend.info.label,
             osc_to, control.host, control.port)
    try:
        reason = engine.run(args.duration)
    finally:
        if clock_in is not None:
            clock_in.close()
    log.info("stopped: %s; %d windows, %d dropped, %d beats", reason, engine.windows, engine.dropped, engine.beats_sent)
    return 0


class _StatusPrinter:
    def emit(self, ev) -> None:
        from momu_live.bridge.events import Status

        if isinstance(ev, Status):
            lat = " ".join(f"{k}={v:.1f}" for k, v in ev.latency_ms.items())
            print(f"[{ev.time:7.2f}s] {ev.mode} fps={ev.fps:.0f} bpm={ev.bpm:.1f} dropped={ev.dropped} ms: {lat} | {ev.message}",
                  flush=True)

    def close(self) -> None:
        pass
