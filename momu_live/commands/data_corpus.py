"""``momu data corpus``: build a licence-clean music corpus with beat/bar times, or encode one to DiT latents."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "corpus", help="music corpus with beat/bar times: music21 dance tunes via fluidsynth + Debian game music",
        description="Build: render music21's dance tunes (Ryan's Mammoth Collection) through fluidsynth + FluidR3_GM "
                    "with tempo (70-180 BPM), instrument and drum-groove augmentation, with their exact beat and bar "
                    "times from the score, and convert the Debian game-music packages (nexuiz, singularity, "
                    "warzone2100, wesnoth-1.16, planetblupi; installed, or fetched with --fetch-debian) with the beat "
                    "tracker's beats and each track's licence. Writes OUT/wav/*.wav (22.05 kHz mono), OUT/beats/*.json, "
                    "OUT/index.csv and OUT/licences/, then prints hours per source and licence. "
                    "Encode (--encode FILE): the corpus in --out to the DiT's music latents + rhythm control "
                    "(train_diffusion's latents format, kind 'corpus') with the frozen BiCoR-VAE; builds nothing. "
                    "docs/corpus.md has the details.",
    )
    p.add_argument("--out", required=True, help="corpus folder")
    p.add_argument("--tunes", type=int, default=20, help="dance tunes to render (0: all 996)")
    p.add_argument("--variants", type=int, default=2, help="tempo/instrument/groove variants per tune")
    p.add_argument("--first-variant", type=int, default=0,
                   help="number the variants from here (add variants to an existing corpus, with another --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drums", type=float, default=0.5, help="probability of a drum groove per variant")
    p.add_argument("--tempo-jitter", type=float, default=0.2, help="dance tempo range x U(1 - j, 1 + j)")
    p.add_argument("--no-music21", action="store_true", help="skip the music21 rendering")
    p.add_argument("--debian", action="store_true", help="convert the Debian music packages that are installed")
    p.add_argument("--fetch-debian", action="store_true", help="apt-get download + unpack them when not installed")
    p.add_argument("--debian-cache", default=None, help="folder for the downloaded .debs (reused when present)")
    p.add_argument("--encode", default=None, metavar="FILE",
                   help="encode the corpus in --out to FILE (.npz: music/<id>, rhythm/<id>, ids, splits, sources)")
    p.add_argument("--vae", default=None, help="with --encode: BiCoR-VAE checkpoint (default: models/weights/vae)")
    p.add_argument("--val-every", type=int, default=20, help="with --encode: every Nth tune goes to val (0: none)")
    p.add_argument("--segment-seconds", type=float, default=60.0, help="with --encode: longest segment")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (--encode)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import time

    from momu_live import MomuError
    from momu_live.models.corpus import RenderConfig, convert_debian, corpus_summary, render_music21, write_index

    if args.encode:
        return _encode(args)
    if not 0.0 <= args.drums <= 1.0 or not 0.0 <= args.tempo_jitter < 1.0:
        raise MomuError("--drums must be in [0, 1] and --tempo-jitter in [0, 1)")
    t0 = time.perf_counter()
    entries, timings = [], {}
    if not args.no_music21:
        cfg = RenderConfig(tempo_jitter=args.tempo_jitter, drums=args.drums)
        t = time.perf_counter()
        got = render_music21(args.out, args.tunes or None, args.variants, args.seed, progress=not args.no_progress, cfg=cfg,
                             first_variant=args.first_variant)
        timings["music21_s"] = time.perf_counter() - t
        timings["music21_audio_s"] = sum(e.seconds for e in got)
        entries += got
        write_index(args.out, entries)
    if args.debian or args.fetch_debian:
        t = time.perf_counter()
        found = convert_debian(args.out, fetch=args.fetch_debian, cache_dir=args.debian_cache, progress=not args.no_progress)
        timings["debian_s"] = time.perf_counter() - t
        timings["debian_audio_s"] = sum(e.seconds for e in found)
        if not found:
            print("no Debian music packages installed (pass --fetch-debian to download them)")
        entries += found
    write_index(args.out, entries)
    summary = corpus_summary(args.out)
    timings["total_s"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"files": len(entries), "hours": {k: v["hours"] for k, v in summary.items()},
                          "total_hours": sum(v["hours"] for v in summary.values()), "sources": summary,
                          "timings": timings}))
        return 0
    _print_summary(summary, f"{len(entries)} files written now")
    for k in ("music21", "debian"):
        if f"{k}_s" in timings:
            print(f"{k}: {timings[f'{k}_audio_s'] / 3600:.2f} h of audio in {timings[f'{k}_s'] / 60:.1f} min "
                  f"({timings[f'{k}_audio_s'] / max(timings[f'{k}_s'], 1e-9):.0f}x real time)")
    return 0


def _print_summary(summary: dict, note: str) -> None:
    for src, s in summary.items():
        beats = ", ".join(f"{n} {k}" for k, n in s["beats"].items())
        print(f"{src:>30}: {s['hours']:7.3f} h  {s['tracks']:5d} tracks  beats: {beats}")
        for lic, h in s["licences"].items():
            print(f"{'':>32}{h:7.3f} h  {lic}")
    print(f"{'total':>30}: {sum(s['hours'] for s in summary.values()):7.3f} h ({note})")


def _encode(args) -> int:
    import hashlib
    import json
    import time
    from pathlib import Path

    import torch

    from momu_live import MomuError
    from momu_live.models.corpus import EncodeConfig, encode_corpus
    from momu_live.models.vae import default_weights_path, load_bicor_vae

    if args.threads < 1:
        raise MomuError("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    vpath = Path(args.vae) if args.vae else default_weights_path()
    if vpath.is_dir():
        vpath = vpath / "vae"
    vpath = vpath.with_suffix(".safetensors")
    if not vpath.exists() or not vpath.with_suffix(".json").exists():
        raise MomuError(f"VAE checkpoint {vpath} (+ .json) not found; pass --vae CKPT (a `momu train vae` export)")
    vae = load_bicor_vae(vpath, args.device)
    vae.source_sha256 = hashlib.sha256(vpath.read_bytes()).hexdigest()
    t = time.perf_counter()
    res = encode_corpus(args.out, vae, args.encode, args.device, progress=not args.no_progress,
                        cfg=EncodeConfig(val_every=args.val_every, segment_s=args.segment_seconds))
    res["seconds"] = time.perf_counter() - t
    res["vae"] = str(vpath)
    if args.json:
        print(json.dumps(res))
        return 0
    for src, h in res["hours"].items():
        print(f"{src:>30}: {h:7.3f} h encoded")
    print(f"{res['segments']} segments ({res['val_segments']} val) of {res['tracks']} tracks -> {res['path']} "
          f"in {res['seconds'] / 60:.1f} min with {vpath.name}")
    for s in res["skipped"]:
        print(f"skipped {s}")
    return 0
