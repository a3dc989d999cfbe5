"""``momu data corpus``: render/collect a licence-clean music corpus for music-VAE pre-training."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "corpus", help="music pre-training corpus: music21 dance tunes via fluidsynth + Debian game music",
        description="Render music21's dance tunes (Ryan's Mammoth Collection) through fluidsynth + FluidR3_GM with "
                    "tempo and instrument augmentation, and convert Debian's nexuiz-music / singularity-music tracks "
                    "(installed, or fetched with --fetch-debian). Writes OUT/wav/*.wav (22.05 kHz mono) and "
                    "OUT/index.csv, then prints the hours per source.",
    )
    p.add_argument("--out", required=True, help="corpus folder")
    p.add_argument("--tunes", type=int, default=20, help="dance tunes to render (0: all)")
    p.add_argument("--variants", type=int, default=2, help="tempo/instrument variants per tune")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-music21", action="store_true", help="skip the music21 rendering")
    p.add_argument("--debian", action="store_true", help="convert nexuiz-music / singularity-music if installed")
    p.add_argument("--fetch-debian", action="store_true", help="apt-get download + unpack them when not installed")
    p.add_argument("--debian-cache", default=None, help="folder for the downloaded .debs (reused when present)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from momu_live.models.corpus import convert_debian, corpus_hours, render_music21, write_index

    entries = []
    if not args.no_music21:
        entries += render_music21(args.out, args.tunes or None, args.variants, args.seed, progress=not args.no_progress)
    if args.debian or args.fetch_debian:
        found = convert_debian(args.out, fetch=args.fetch_debian, cache_dir=args.debian_cache, progress=not args.no_progress)
        if not found:
            print("no Debian music packages installed (pass --fetch-debian to download them)")
        entries += found
    write_index(args.out, entries)
    hours = corpus_hours(args.out)
    if args.json:
        print(json.dumps({"files": len(entries), "hours": hours, "total_hours": sum(hours.values())}))
    else:
        for src, h in hours.items():
            print(f"{src:>28}: {h:.3f} h")
        print(f"{'total':>28}: {sum(hours.values()):.3f} h ({len(entries)} files written now)")
    return 0
