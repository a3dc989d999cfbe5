"""``momu bench vocoder``: fast vocoder vs HiFi-GAN universal, side by side in one run."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "vocoder", help="speed (real-time factor) and fidelity of the fast vocoder vs HiFi-GAN universal",
        description="Vocodes the log-mel of a music clip with the fast iSTFT vocoder, HiFi-GAN universal and the "
                    "Griffin-Lim fallback in one run; prints real-time factors on --threads CPU threads, log-mel L1 "
                    "and multi-resolution STFT distance to the original, and writes a spectrogram PNG "
                    "(original / teacher / student). Default clip: a validation DwM dance when ../shared is present, "
                    "else the bundled public-domain hornpipe (music21 corpus rendered with fluidsynth).",
    )
    p.add_argument("--audio", default=None, help="music file to use (any format load_audio reads)")
    p.add_argument("--offset", type=float, default=20.0, help="start second in the clip (clamped to fit)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of the fast vocoder (median and min reported)")
    p.add_argument("--chunk", type=int, default=8, help="mel frames per block for the streaming timing")
    p.add_argument("--weights", default=None, help="fast vocoder checkpoint (default: the shipped weights)")
    p.add_argument("--no-griffinlim", action="store_true")
    p.add_argument("--png", default="out/bench_vocoder.png", help="spectrogram figure ('' to skip)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def _default_audio():
    import os
    from pathlib import Path

    from momu_live.demo_media import DEMO_MUSIC
    from momu_live.models.datasets import DWM_VALIDATION

    repo = Path(__file__).resolve().parents[2]
    shared = Path(os.environ.get("MOMU_SHARED", repo.parent / "shared"))
    cand = shared / "data" / "dwm" / DWM_VALIDATION[3] / "audio.flac"  # a rumba (DANCE_R_9)
    if cand.exists():
        return cand, f"DwM validation {DWM_VALIDATION[3]}"
    if DEMO_MUSIC.exists():
        return DEMO_MUSIC, "bundled hornpipe (music21 corpus, FluidR3 GM)"
    return None, "music21 tune rendered with fluidsynth"


def _render_tune():
    import tempfile
    from pathlib import Path

    from momu_live.demo_media import render_midi, tune_to_midi

    with tempfile.TemporaryDirectory() as td:
        mid = Path(td) / "tune.mid"
        tune_to_midi("ryansMammoth/DanceOfTheHoursHornpipe", mid, bpm=120, repeats=2)
        return render_midi(mid)


def run(args) -> int:
    import json
    import os
    import statistics
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from momu_live import MomuError
    from momu_live.models.audio import DEFAULT_MEL, load_audio, log_mel
    from momu_live.models.train_vocoder import mr_stft_loss
    from momu_live.models.vocoder import GriffinLimVocoder, load_fast, load_vocoder

    if args.threads < 1 or args.seconds <= 0:
        raise MomuError("--threads must be >= 1 and --seconds > 0")
    torch.set_num_threads(args.threads)
    sr, hop = DEFAULT_MEL.sample_rate, DEFAULT_MEL.hop_length
    if args.audio:
        wav, _ = load_audio(args.audio, sr)
        source = str(args.audio)
    else:
        path, source = _default_audio()
        wav = load_audio(path, sr)[0] if path else _render_tune()
    n = int(args.seconds * sr)
    if len(wav) < hop * 16:
        raise MomuError(f"audio too short for a benchmark ({len(wav)} samples); give a longer --audio")
    a = max(0, min(int(args.offset * sr), len(wav) - n))
    wav = wav[a : a + n]
    wav = wav[: (len(wav) // hop) * hop]
    x = torch.from_numpy(np.ascontiguousarray(wav))  # (N,)
    mel = log_mel(x)  # (80, F)
    seconds = len(wav) / sr

    fast = load_fast(args.weights)
    hifi = load_vocoder("hifigan")

    best = {}

    def timed(fn, repeats):
        fn(mel[:, :32])  # warm-up
        ts, out = [], None
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn(mel)
            ts.append(time.perf_counter() - t)
        best[fn] = min(ts)
        return out, statistics.median(ts)

    def stream_fast():
        st, outs = fast.init_state(1), []
        for i in range(0, mel.shape[-1], args.chunk):
            o, st = fast.stream(mel[None, :, i : i + args.chunk], st, final=i + args.chunk >= mel.shape[-1])
            outs.append(o[0])
        return torch.cat(outs)

    y_fast, t_fast = timed(fast, args.repeats)
    y_hifi, t_hifi = timed(hifi, 1)
    stream_fn = lambda m: stream_fast() if m.shape[-1] == mel.shape[-1] else fast(m)  # noqa: E731
    y_stream, t_stream = timed(stream_fn, args.repeats)
    res = {
        "source": source, "seconds": round(seconds, 3), "threads": args.threads,
        "rtf_fast": t_fast / seconds, "rtf_hifigan": t_hifi / seconds,
        "rtf_fast_streaming": t_stream / seconds, "stream_chunk_frames": args.chunk,
        "rtf_fast_min": best[fast] / seconds, "rtf_fast_streaming_min": best[stream_fn] / seconds,
        "speedup": t_hifi / t_fast, "repeats": args.repeats,
        "loadavg_1min": os.getloadavg()[0], "cpu_count": os.cpu_count(),
        "mel_l1_fast": float((log_mel(y_fast) - mel).abs().mean()),
        "mel_l1_hifigan": float((log_mel(y_hifi) - mel).abs().mean()),
        "mr_stft_fast": float(mr_stft_loss(y_fast[None], x[None])),
        "mr_stft_hifigan": float(mr_stft_loss(y_hifi[None], x[None])),
        "stream_max_abs_diff": float((y_stream - y_fast).abs().max()),
        "latency_ms_fast": 1000 * fast.latency_samples / sr,
        "latency_ms_hifigan": 1000 * hifi.latency_samples / sr,
    }
    res["mel_l1_ratio"] = res["mel_l1_fast"] / res["mel_l1_hifigan"]
    res["mr_stft_ratio"] = res["mr_stft_fast"] / res["mr_stft_hifigan"]
    y_gl = None
    if not args.no_griffinlim:
        y_gl, t_gl = timed(GriffinLimVocoder(), 1)
        res.update(rtf_griffinlim=t_gl / seconds, mel_l1_griffinlim=float((log_mel(y_gl) - mel).abs().mean()),
                   mr_stft_griffinlim=float(mr_stft_loss(y_gl[None], x[None])))
    if args.png:
        res["png"] = str(_plot(Path(args.png), mel, log_mel(y_hifi), log_mel(y_fast), res))
    if args.json:
        print(json.dumps(res))
        return 0
    from rich.console import Console
    from rich.table import Table

    tab = Table(title=f"vocoder bench: {source}, {seconds:.1f} s, {args.threads} threads, "
                      f"load average {res['loadavg_1min']:.1f} on {res['cpu_count']} CPUs (RTF: median of {args.repeats})")
    for c in ("vocoder", "RTF", "log-mel L1", "MR-STFT", "latency ms"):
        tab.add_column(c, justify="right")
    tab.add_row("fast (whole)", f"{res['rtf_fast']:.4f}", f"{res['mel_l1_fast']:.3f}", f"{res['mr_stft_fast']:.3f}", f"{res['latency_ms_fast']:.0f}")
    tab.add_row(f"fast (stream {args.chunk} fr)", f"{res['rtf_fast_streaming']:.4f}", "=", "=", f"{res['latency_ms_fast']:.0f}")
    tab.add_row("HiFi-GAN universal", f"{res['rtf_hifigan']:.4f}", f"{res['mel_l1_hifigan']:.3f}", f"{res['mr_stft_hifigan']:.3f}", f"{res['latency_ms_hifigan']:.0f}")
    if y_gl is not None:
        tab.add_row("Griffin-Lim (fallback)", f"{res['rtf_griffinlim']:.4f}", f"{res['mel_l1_griffinlim']:.3f}", f"{res['mr_stft_griffinlim']:.3f}", "-")
    Console().print(tab)
    print(f"speed-up fast vs HiFi-GAN: {res['speedup']:.1f}x; fidelity ratio fast/HiFi-GAN: mel L1 {res['mel_l1_ratio']:.3f}, "
          f"MR-STFT {res['mr_stft_ratio']:.3f}; streaming max |diff| {res['stream_max_abs_diff']:.2e}")
    if args.png:
        print(f"wrote {res['png']}")
    return 0


def _plot(path, mel, mel_teacher, mel_student, res):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from momu_live.models.timebase import DEFAULT_TIMEBASE as tb

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    titles = ("original", f"teacher: HiFi-GAN universal (mel L1 {res['mel_l1_hifigan']:.3f}, RTF {res['rtf_hifigan']:.3f})",
              f"student: fast iSTFT vocoder (mel L1 {res['mel_l1_fast']:.3f}, RTF {res['rtf_fast']:.4f})")
    for ax, m, t in zip(axes, (mel, mel_teacher, mel_student), titles):
        ax.imshow(m.numpy(), origin="lower", aspect="auto", vmin=-11.5, vmax=float(mel.max()), cmap="magma",
                  extent=(0, m.shape[-1] * tb.hop_length / tb.sample_rate, 0, m.shape[0]))
        ax.set_title(t, fontsize=9)
        ax.set_ylabel("mel bin")
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
