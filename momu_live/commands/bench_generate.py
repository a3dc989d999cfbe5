"""``momu bench generate``: real-time factors of generation per task, step count, length and device.

RTF = wall time / generated seconds (lower is faster; < 1 is faster than real time), measured end to
end: VAE encode of the input, sampling, VAE decode and the vocoder (music outputs).  Inputs are
procedural (a synthetic dancer, a click-and-tone track), so the numbers need no data.  Rows with
task ``*_live`` time one live window step (``Pipeline.*_step``, ``--window`` new latent frames after
an ``--overlap`` prefix) divided by the window's duration; ``first_window`` rows time the first
window of a music->motion stream (the live latency to the first pose).  With ``--beat X`` (default 1)
every row is also timed with beat guidance (models/guidance.py) onto the inputs' 120 BPM grid, side by
side (task ``<task>+beat``), so its cost is a ratio measured in the same run.  ``--json`` prints
``{"rows": [{task, steps, seconds, device, rtf, ...}], ...}``.
"""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="real-time factors of motion2music / music2motion / joint generation",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--tasks", default="motion2music,music2motion,joint")
    p.add_argument("--steps", default="1,2,4,8,50", help="comma-separated step counts (50 = the many-step DDPM baseline)")
    p.add_argument("--seconds", default="10,60", help="comma-separated lengths")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per row (the median is reported)")
    p.add_argument("--window", type=int, default=11, help="live window: new latent frames per step (11 ~ 1 s)")
    p.add_argument("--overlap", type=int, default=4, help="live window: inpainted prefix frames")
    p.add_argument("--blend", type=int, default=4, help="live window: cross-faded frames")
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--beat", type=float, default=1.0, help="also time beat-guided rows at this strength (0: skip)")
    p.add_argument("--weights", default=None, help="folder with vae/dit weights (default: shipped)")
    p.add_argument("--vocoder", default="fast", help="fast, hifigan or griffinlim")
    p.add_argument("--debug-model", action="store_true", help="tiny untrained models (plumbing check only)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _ints(s: str) -> list[int]:
    from momu_live import MomuError

    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise MomuError(f"expected comma-separated integers, got {s!r}") from None


def synthetic_inputs(seconds: float, seed: int = 0):
    """(joints at the model rate (T, 18, 3), 22.05 kHz waveform) of ``seconds`` with a 120 bpm pulse."""
    import numpy as np

    from momu_live.models.motion import synthetic_dance
    from momu_live.models.timebase import DEFAULT_TIMEBASE as tb

    m = synthetic_dance(seconds + 0.5, fps=float(tb.motion_rate), bpm=120.0, seed=seed)
    sr = tb.sample_rate
    t = np.arange(int(seconds * sr)) / sr
    env = np.exp(-((t % 0.5) * 30.0))
    wav = (0.3 * env * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return m.joints, wav


def _time(fn, sync, repeats: int) -> float:
    import statistics
    import time

    fn()  # warm-up
    sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _offline_call(pipe, task: str, joints, wav, secs: float, spec, grid):
    """The whole-clip generation of ``task`` as a no-argument call (what the table times)."""
    from momu_live import MomuError

    if task == "motion2music":
        return lambda: pipe.motion2music(joints, 0, spec, grid=grid)
    if task == "music2motion":
        return lambda: pipe.music2motion(wav, 0, spec, grid=grid)
    if task == "joint":
        return lambda: pipe.joint(secs, 0, spec, grid=grid)
    raise MomuError(f"unknown task {task!r}")


def run(args) -> int:
    import json

    import torch

    from dataclasses import replace

    from momu_live import MomuError
    from momu_live.models.generation import SamplerSpec
    from momu_live.models.guidance import BeatSpec, grid_from_tempo

    torch.set_num_threads(args.threads)
    beats = [(False, 1.0)] + ([(True, args.beat)] if args.beat > 0 else [])
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MomuError("--device cuda asked but CUDA is not available")
    if args.debug_model:
        from momu_live.models.builders import debug_dit, debug_vae
        from momu_live.models.generation import Pipeline

        pipe = Pipeline(debug_vae(), debug_dit(), None, dev)
    else:
        from momu_live.models.pretrained import load_pipeline

        pipe = load_pipeline(args.weights, dev, vocoder=args.vocoder)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    rows = []
    devname = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{args.threads} threads"
    for secs in _ints(args.seconds):
        joints, wav = synthetic_inputs(secs)
        for steps in _ints(args.steps):
            spec = SamplerSpec(sampler="ddpm", steps=steps) if steps >= 50 else SamplerSpec(steps=steps)
            if args.guidance is not None:
                spec = SamplerSpec(spec.sampler, spec.steps, spec.schedule, args.guidance, spec.tc)
            for task in tasks:
                for guided, strength in (beats if steps <= 8 else beats[:1]):  # guidance: the few-step path
                    g = grid_from_tempo(120.0, secs + 1.0) if guided else None
                    fn = _offline_call(pipe, task, joints, wav, secs, replace(spec, beat=BeatSpec().scaled(strength)), g)
                    with torch.no_grad():  # not inference_mode: beat guidance takes gradients through the decoders
                        dt = _time(fn, sync, args.repeats)
                    rows.append({"task": task + ("+beat" if guided else ""), "steps": steps, "sampler": spec.sampler,
                                 "seconds": secs, "device": dev.type, "rtf": dt / secs, "wall_s": dt})
        # each task's offline default (models/generation.OFFLINE_SAMPLER: what `momu generate` runs), unguided
        from momu_live.models.generation import offline_spec

        for task in tasks:
            sp = offline_spec(task, **({} if args.guidance is None else {"guidance": args.guidance}))
            fn = _offline_call(pipe, task, joints, wav, secs, sp, grid_from_tempo(120.0, secs + 1.0))
            with torch.no_grad():
                dt = _time(fn, sync, args.repeats)
            rows.append({"task": f"{task} (offline default)", "steps": sp.steps, "sampler": sp.sampler, "seconds": secs,
                         "device": dev.type, "rtf": dt / secs, "wall_s": dt})
    # live window steps (k new frames after an overlap prefix) and first-window latency
    tb = pipe.tb
    k, O = args.window, args.overlap
    win_s = k / float(tb.latent_rate)
    joints, wav = synthetic_inputs(10)
    from momu_live.models.audio import log_mel

    mel = log_mel(torch.from_numpy(wav))  # (80, N)
    for steps in [s for s in _ints(args.steps) if s <= 8]:
        spec = SamplerSpec(steps=steps)
        if args.guidance is not None:
            spec = SamplerSpec(spec.sampler, steps, None, args.guidance, spec.tc)
        for task in tasks:
            for guided, strength in beats:
                def live(task=task, spec=replace(spec, beat=BeatSpec().scaled(strength)),
                         g=grid_from_tempo(120.0, 20.0) if guided else None):
                    st = pipe.init_stream(task, O, 0, args.blend)
                    n = 2 * k
                    # prime one window so the timed step has a full overlap prefix
                    if task == "motion2music":
                        _, st = pipe.motion2music_step(joints[:n], st, spec, grid=g)
                        return lambda: pipe.motion2music_step(joints[n:2 * n], st, spec, grid=g)
                    if task == "music2motion":
                        _, st = pipe.music2motion_step(mel[:, : 8 * k], st, spec, grid=g)
                        return lambda: pipe.music2motion_step(mel[:, 8 * k: 16 * k], st, spec, grid=g)
                    _, st = pipe.joint_step(k, st, spec, grid=g)
                    return lambda: pipe.joint_step(k, st, spec, grid=g)

                with torch.no_grad():
                    dt = _time(live(), sync, max(3, args.repeats))
                rows.append({"task": f"{task}_live" + ("+beat" if guided else ""), "steps": steps, "sampler": spec.sampler,
                             "seconds": round(win_s, 3), "device": dev.type, "rtf": dt / win_s, "wall_s": dt})
        if "music2motion" in tasks:
            def first(spec=spec):
                st = pipe.init_stream("music2motion", O, 0, args.blend)
                return pipe.music2motion_step(mel[:, : 8 * k], st, spec)

            with torch.no_grad():
                dt = _time(first, sync, max(3, args.repeats))
            rows.append({"task": "music2motion_first_window", "steps": steps, "sampler": spec.sampler,
                         "seconds": round(win_s, 3), "device": dev.type, "rtf": dt / win_s, "wall_s": dt})
    vocname = getattr(pipe.vocoder, "name", None)
    if args.json:
        print(json.dumps({"rows": rows, "device_name": devname, "vocoder": vocname, "window": k, "overlap": O,
                          "blend": args.blend}))
        return 0
    print(f"generation real-time factors on {devname} (vocoder: {vocname}; RTF < 1 = faster than real time)")
    print(f"{'task':<32}{'steps':>6}{'sampler':>10}{'seconds':>9}{'wall s':>10}{'RTF':>9}")
    for r in rows:
        print(f"{r['task']:<32}{r['steps']:>6}{r['sampler']:>10}{r['seconds']:>9}{r['wall_s']:>10.4f}{r['rtf']:>9.4f}")
    by = {(r["task"], r["steps"], r["seconds"]): r["wall_s"] for r in rows}
    secs = _ints(args.seconds)
    if len(secs) >= 2:
        a, b = secs[0], secs[-1]
        print(f"cost growth {a} s -> {b} s (wall-time ratio; {b / a:.0f}x longer output):")
        for task in tasks:
            for steps in _ints(args.steps):
                if (task, steps, a) in by and (task, steps, b) in by:
                    print(f"  {task:<14} {steps:>3} steps: x{by[(task, steps, b)] / by[(task, steps, a)]:.2f}")
    guided = [r for r in rows if r["task"].endswith("+beat")]
    if guided:
        print("beat guidance cost (guided / unguided wall time, same run):")
        for r in guided:
            base = by.get((r["task"][: -len("+beat")], r["steps"], r["seconds"]))
            if base:
                print(f"  {r['task']:<24} {r['steps']:>3} steps {r['seconds']:>6} s: x{r['wall_s'] / base:.2f}")
    return 0
