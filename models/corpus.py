"""Music pre-training corpus for the music VAE beyond the paired dances (no licence issues).

Two sources:
- music21's bundled corpus: the dance tunes of Ryan's Mammoth Collection (1883, public domain; reels,
  jigs, hornpipes, strathspeys, waltzes, polkas, clogs, marches, chosen by the dance type in the file
  name), rendered through fluidsynth + FluidR3_GM.sf2 with tempo augmentation (a per-dance-type tempo
  range times a random factor) and instrument augmentation (a random melodic General MIDI program,
  plus a drum groove for duple-metre dances half of the time).
- Debian's ``nexuiz-music`` and ``singularity-music`` packages (game soundtracks, GPL/free licences):
  their .ogg tracks are converted when the packages are installed, or fetched with ``apt-get
  download`` + ``dpkg-deb -x`` (no root needed) when ``fetch_debian`` is set.

Everything is written as 22.05 kHz mono 16-bit WAV under ``OUT/wav`` with ``OUT/index.csv``
(file, source, title, dance, bpm, program, drums, seconds).  ``corpus_hours(OUT)`` sums the index.
Heavy imports (music21, mido, soundfile) happen inside the functions.
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE

# quarter-note tempo ranges per dance type (music21 counts quarters; reels etc. are written in eighths)
DANCE_TEMPI: dict[str, tuple[float, float]] = {
    "reel": (180, 220), "hornpipe": (140, 180), "clog": (140, 180), "strathspey": (120, 150),
    "jig": (170, 210), "waltz": (140, 180), "polka": (170, 210), "march": (100, 124), "schottische": (130, 160),
    "quadrille": (160, 200), "mazurka": (130, 160), "galop": (180, 220), "fling": (150, 180),
}
DUPLE = {"reel", "hornpipe", "clog", "strathspey", "polka", "march", "schottische", "quadrille", "galop", "fling"}
# melodic General MIDI programs used for instrument augmentation
PROGRAMS: tuple[int, ...] = (0, 1, 4, 6, 19, 21, 22, 24, 25, 40, 41, 46, 56, 60, 65, 68, 71, 73, 75, 105, 110)
DEBIAN_PACKAGES = ("nexuiz-music", "singularity-music")
INDEX_FIELDS = ("file", "source", "title", "dance", "bpm", "program", "drums", "seconds")


@dataclass
class CorpusEntry:
    file: str
    source: str
    title: str
    dance: str
    bpm: float
    program: int
    drums: bool
    seconds: float


def dance_type(name: str) -> str | None:
    """Dance type from a Ryan's Mammoth file name (``7thRegimentReel.abc`` -> "reel"), else None."""
    low = name.lower()
    for d in DANCE_TEMPI:
        if re.search(d + r"s?(\.abc)?$", low) or low.endswith(d + ".abc"):
            return d
    return None


def dance_tunes() -> list[tuple[str, str]]:
    """(path, dance type) of the music21 corpus dance tunes, sorted by path."""
    from music21 import corpus

    out = []
    for p in corpus.getCorePaths():
        p = str(p)
        if "ryansMammoth" in p:
            d = dance_type(Path(p).name)
            if d is not None:
                out.append((p, d))
    return sorted(out)


def render_music21(out_dir: str | Path, max_tunes: int | None = 20, variants: int = 2, seed: int = 0,
                   tempo_jitter: float = 0.15, progress: bool = True) -> list[CorpusEntry]:
    """Render ``max_tunes`` dance tunes x ``variants`` augmentations to ``out_dir/wav``."""
    import soundfile as sf
    from tqdm import tqdm

    from momu_live.demo_media import find_soundfont, render_midi, tune_to_midi

    if shutil.which("fluidsynth") is None:
        raise MomuError("fluidsynth not found: install Debian `fluidsynth` and `fluid-soundfont-gm`")
    sf2 = find_soundfont()
    rng = np.random.default_rng(seed)
    tunes = dance_tunes()
    if not tunes:
        raise MomuError("music21's corpus has no Ryan's Mammoth dance tunes in this installation")
    order = rng.permutation(len(tunes))
    if max_tunes is not None:
        order = order[:max_tunes]
    wav_dir = Path(out_dir) / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    with tempfile.TemporaryDirectory() as td:
        for k in tqdm(order, desc="render", disable=not progress):
            path, dance = tunes[k]
            lo, hi = DANCE_TEMPI[dance]
            for v in range(variants):
                bpm = float(rng.uniform(lo, hi) * rng.uniform(1 - tempo_jitter, 1 + tempo_jitter))
                program = int(rng.choice(PROGRAMS))
                drums = bool(dance in DUPLE and rng.random() < 0.5)
                mid = Path(td) / "tune.mid"
                try:
                    tune_to_midi(path, mid, bpm=bpm, program=program, drums=drums)
                    wav = render_midi(mid, DEFAULT_TIMEBASE.sample_rate, sf2)
                except MomuError:
                    raise
                except Exception as exc:  # a tune music21 cannot parse: skip it, say so
                    print(f"skipped {Path(path).name}: {exc}")
                    break
                name = f"m21_{Path(path).stem}_{v}.wav"
                sf.write(str(wav_dir / name), wav, DEFAULT_TIMEBASE.sample_rate, subtype="PCM_16")
                entries.append(CorpusEntry(f"wav/{name}", "music21:ryansMammoth", Path(path).stem, dance, round(bpm, 1),
                                           program, drums, round(len(wav) / DEFAULT_TIMEBASE.sample_rate, 2)))
    return entries


def debian_tracks(fetch: bool = False, cache_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """(package, .ogg path) of the Debian game-music packages: installed files, or fetched .debs unpacked."""
    found = []
    cache = Path(cache_dir) if cache_dir else None
    for pkg in DEBIAN_PACKAGES:
        files = []
        proc = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True) if shutil.which("dpkg") else None
        if proc is not None and proc.returncode == 0:
            listed = [Path(x) for x in proc.stdout.split() if Path(x).is_file()]
            files = [x for x in listed if x.suffix == ".ogg"]
            pk3 = [x for x in listed if x.suffix == ".pk3"]
            if pk3:
                cache = cache or Path(tempfile.mkdtemp(prefix="momu_deb_"))
                files += _unpack_pk3(pk3, cache / pkg / "pk3")
        elif fetch:
            if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
                raise MomuError("apt-get/dpkg-deb not found: the Debian music packages need a Debian system")
            cache = cache or Path(tempfile.mkdtemp(prefix="momu_deb_"))
            cache.mkdir(parents=True, exist_ok=True)
            debs = list(cache.glob(f"{pkg}_*.deb"))
            if not debs:
                r = subprocess.run(["apt-get", "download", pkg], cwd=cache, capture_output=True, text=True)
                if r.returncode != 0:
                    raise MomuError(f"apt-get download {pkg} failed: {r.stderr.strip()[:200]}; run apt-get update or "
                                    "install the package")
                debs = list(cache.glob(f"{pkg}_*.deb"))
            root = cache / pkg
            if not root.exists():
                subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
            files = sorted(set(root.rglob("*.ogg")) | set(_unpack_pk3(sorted(root.rglob("*.pk3")), root / "pk3")))
        found += [(pkg, f) for f in sorted(files)]
    return found


def _unpack_pk3(archives: list[Path], dest: Path) -> list[Path]:
    """The .ogg members of Quake-style .pk3 (zip) archives (Nexuiz keeps its music in data/music.pk3)."""
    import zipfile

    out = []
    for a in archives:
        with zipfile.ZipFile(a) as z:
            for name in z.namelist():
                if name.lower().endswith(".ogg"):
                    target = dest / Path(name).name
                    if not target.exists():
                        dest.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(z.read(name))
                    out.append(target)
    return sorted(out)


def convert_debian(out_dir: str | Path, fetch: bool = False, cache_dir: str | Path | None = None,
                   progress: bool = True) -> list[CorpusEntry]:
    """Convert the Debian game-music tracks to 22.05 kHz mono WAV in ``out_dir/wav``."""
    import soundfile as sf
    from tqdm import tqdm

    from momu_live.models.audio import load_audio

    wav_dir = Path(out_dir) / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for pkg, path in tqdm(debian_tracks(fetch, cache_dir), desc="debian", disable=not progress):
        wav, sr = load_audio(path, DEFAULT_TIMEBASE.sample_rate)
        name = f"{pkg}_{path.stem}.wav"
        sf.write(str(wav_dir / name), wav, sr, subtype="PCM_16")
        entries.append(CorpusEntry(f"wav/{name}", f"debian:{pkg}", path.stem, "", 0.0, -1, False, round(len(wav) / sr, 2)))
    return entries


def write_index(out_dir: str | Path, entries: list[CorpusEntry]) -> Path:
    """Append ``entries`` to ``out_dir/index.csv`` (replacing rows of the same file)."""
    path = Path(out_dir) / "index.csv"
    rows = {}
    if path.exists():
        with open(path) as f:
            rows = {r["file"]: r for r in csv.DictReader(f)}
    for e in entries:
        rows[e.file] = {k: getattr(e, k) for k in INDEX_FIELDS}
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=INDEX_FIELDS)
        w.writeheader()
        w.writerows(rows.values())
    return path


def corpus_hours(out_dir: str | Path) -> dict[str, float]:
    """Hours of audio per source in a corpus folder (from its index.csv)."""
    path = Path(out_dir) / "index.csv"
    if not path.exists():
        raise MomuError(f"{path} not found; build the corpus with `momu data corpus --out {out_dir}`")
    hours: dict[str, float] = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            hours[r["source"]] = hours.get(r["source"], 0.0) + float(r["seconds"]) / 3600
    return hours


def corpus_mels(out_dir: str | Path, progress: bool = True):
    """Log-mels (80, N) float16 of every corpus file, for music-VAE pre-training (packing.PackedDance-like
    music-only entries: yields (name, mel))."""
    import torch

    from momu_live.models.audio import load_audio, log_mel

    path = Path(out_dir) / "index.csv"
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        wav, _ = load_audio(Path(out_dir) / r["file"], DEFAULT_TIMEBASE.sample_rate)
        yield r["file"], log_mel(torch.from_numpy(wav)).numpy().astype(np.float16)
