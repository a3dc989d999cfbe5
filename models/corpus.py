"""Music pre-training corpus with beat and bar times, and its encoding to the DiT's music latents + rhythm control.

Sources (docs/corpus.md has the hours, licences and commands):

- **music21 renders** (``render_music21``): the dance tunes of Ryan's Mammoth Collection (1883, public domain;
  reels, jigs, hornpipes, strathspeys, clogs, flings, chosen by the dance type in the file name) laid out on a
  regular metrical grid (``score_tune``: repeats expanded, anacrusis kept, broken bars around repeats repaired) and
  written to MIDI here (``tune_midi``), so the beat and bar times are **exact**: they come from the score and the
  MIDI tempo, not from a tracker.  Augmentation per variant: a tempo drawn from the dance type's range
  (``DANCE_TEMPI``, beats per minute of the score's metrical beat, kept inside ``RenderConfig.bpm_range`` = the
  issue's 70-180 BPM by moving to the next metrical level or clipping), a melodic General MIDI program, a base
  velocity, and (``RenderConfig.drums`` of the time) a drum groove on the beat/bar grid of the tune's metre
  (``GROOVES``).  Rendered through fluidsynth + FluidR3_GM (momu_live/demo_media.render_midi).  fluidsynth
  starts a note ``FLUIDSYNTH_OFFSET_S`` after its MIDI time (measured, ``measure_render_offset``); the stored
  beat times include it.
- **Debian game-music packages** (``convert_debian``, ``DEBIAN_PACKAGES``): their .ogg/.opus tracks, from the
  installed packages or fetched with ``apt-get download`` + ``dpkg-deb -x`` (no root); the licence of every
  track is read from the package's copyright file (and an album's ``license.txt``, ``track_licence``).  Their
  beats come from the beat tracker (models/guidance.grid_from_music on models/beats.py) and are marked
  ``tracked``, not exact; their bar phase is a guess (4 beats per bar from the first tracked beat).

Layout of a corpus folder ``OUT``: ``OUT/wav/<name>.wav`` (22.05 kHz mono 16-bit), ``OUT/beats/<name>.json``
(``{"beats": [s], "downbeats": [s], "beats_per_bar": n, "bpm": x, "kind": "exact"|"tracked", ...}``),
``OUT/index.csv`` (``INDEX_FIELDS``; one row per file, with its licence) and ``OUT/licences/`` (the copyright
files the licences were read from).  ``corpus_summary`` sums hours per source and licence.

``encode_corpus`` turns a corpus folder into a latents file in models/train_diffusion's format (``"ids"``,
``"splits"``, ``"music/<id>"`` (C, L) fp16, ``"rhythm/<id>"`` (6, L) fp16, plus ``"sources"`` and
``"kind" = "corpus"``): every track cut into <= 60 s segments, log-mel (models/audio.log_mel), the frozen
BiCoR-VAE music encoder, and the rhythm control (models/rhythm_control.rhythm_features) of its beat grid.

Heavy imports (music21, mido, soundfile, torch) happen inside the functions.
"""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE

# Tempo range per dance type in beats per minute of the score's METRICAL beat (music21 TimeSignature.beatDuration:
# the half note of 2/2, the quarter of 2/4 and 4/4, the dotted quarter of 6/8, 9/8 and 12/8).  Reels are the
# fastest duple dances, hornpipes and clogs slower and dotted, jigs lilt in compound time, strathspeys are counted
# in four; the ranges keep that character while a variant's tempo is this range x (1 +- tempo_jitter), moved into
# RenderConfig.bpm_range (``choose_tempo``).
DANCE_TEMPI: dict[str, tuple[float, float]] = {
    "reel": (100, 125), "hornpipe": (78, 100), "clog": (80, 105), "strathspey": (110, 135), "jig": (105, 130),
    "waltz": (120, 170), "polka": (100, 125), "march": (100, 124), "schottische": (120, 150), "quadrille": (100, 125),
    "mazurka": (120, 160), "galop": (120, 150), "fling": (90, 115),
}
# melodic General MIDI programs used for instrument augmentation
PROGRAMS: tuple[int, ...] = (0, 1, 4, 6, 19, 21, 22, 24, 25, 40, 41, 46, 56, 60, 65, 68, 71, 73, 75, 105, 110)
DEBIAN_PACKAGES = ("nexuiz-music", "singularity-music", "warzone2100-music", "wesnoth-1.16-music", "planetblupi-music-ogg")
AUDIO_SUFFIXES = (".ogg", ".opus")
MUSIC21_SOURCE = "music21:ryansMammoth"
MUSIC21_LICENCE = "public-domain score (Ryan's Mammoth Collection, 1883) + MIT soundfont (FluidR3_GM)"
INDEX_FIELDS = ("file", "source", "title", "dance", "bpm", "program", "drums", "seconds", "licence", "beats",
                "beats_per_bar", "beat_kind", "groove", "metre")
# fluidsynth (2.3, -F fast render, 22.05 kHz) starts the sound of a note this long after its MIDI time: a fixed
# ~3 ms plus its 64-sample block and millisecond timer (0-3 ms), plus the sample's own lead-in.  Median of
# ``measure_render_offset()`` over the melodic PROGRAMS and kick/snare/hat (192 notes): 5.46 ms, range 3.2-8.6 ms
# (docs/corpus.md); the stored beat times add it, leaving +-3.2 ms.
FLUIDSYNTH_OFFSET_S = 0.0055
TICKS_PER_QUARTER = 960  # = 2^6 * 3 * 5: every duplet, triplet and quintuplet position is a whole tick
# General MIDI drum notes
KICK, SIDE_STICK, SNARE, CLOSED_HAT, PEDAL_HAT, CRASH, RIDE = 36, 37, 38, 42, 44, 49, 51


@dataclass
class CorpusEntry:
    """One row of ``OUT/index.csv``."""

    file: str
    source: str
    title: str
    dance: str
    bpm: float
    program: int
    drums: bool
    seconds: float
    licence: str = ""
    beats: str = ""  # beats json, relative to the corpus folder
    beats_per_bar: int = 0
    beat_kind: str = ""  # "exact" (from the score) | "tracked" (beat tracker)
    groove: str = ""
    metre: str = ""


@dataclass
class RenderConfig:
    """Augmentation of the music21 renders."""

    tempo_jitter: float = 0.2  # the dance range's tempo x U(1 - j, 1 + j)
    bpm_range: tuple[float, float] = (70.0, 180.0)  # beat tempo of every render (the range)
    drums: float = 0.5  # probability of a drum groove
    grooves: tuple[str, ...] = ("backbeat", "pulse", "ride")  # drawn from GROOVES
    velocity: tuple[int, int] = (70, 92)  # base melody velocity range (accents add to it)
    programs: tuple[int, ...] = PROGRAMS
    expand_repeats: bool = True
    min_bars: int = 8  # tunes shorter than this (after repairs) are skipped
    sample_rate: int = DEFAULT_TIMEBASE.sample_rate


@dataclass
class EncodeConfig:
    """``encode_corpus`` settings."""

    val_every: int = 20  # every val_every-th tune (all its variants and segments) goes to "val"; 0: none
    segment_s: float = 60.0  # tracks are cut into equal segments of at most this length
    min_frames: int = 64  # tracks shorter than this many latent frames (5.9 s) are skipped


# ------------------------------------------------------------------------------------------------
# music21 dance tunes
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


@dataclass
class ScoreTune:
    """A tune laid out on a regular metrical grid; times in quarter notes from its first note.

    Bars are regular from ``first_downbeat_q`` on (every ``bar_q``); the notes before it are the anacrusis."""

    title: str
    metre: str  # "6/8"
    beat_q: Fraction  # metrical beat (quarters): 3/2 for 6/8
    beats_per_bar: int  # metrical beats per bar: 2 for 6/8
    compound: bool  # the beat divides in three
    first_downbeat_q: Fraction
    end_q: Fraction
    notes: list[tuple[Fraction, Fraction, tuple[int, ...]]]  # (start, duration, MIDI pitches)
    repairs: dict = field(default_factory=dict)

    @property
    def bar_q(self) -> Fraction:
        return self.beat_q * self.beats_per_bar

    @property
    def bars(self) -> int:
        return max(0, math.ceil((self.end_q - self.first_downbeat_q) / self.bar_q))


def score_tune(path: str | Path, expand_repeats: bool = True) -> ScoreTune:
    """Parse a music21 corpus tune into a ``ScoreTune`` with exactly regular bars.

    Measures are walked in order (repeats expanded, ties merged, grace notes dropped) keeping the position in the
    bar: the first measure, when shorter than a bar, is an anacrusis ending at the first bar line; a measure
    marked as a pickup (music21 ``paddingLeft``) leads into the next bar line, and is dropped after a complete
    bar (a repeat replaying the anacrusis, ``repairs["dropped_pickups"]``); another short measure that fits after
    the previous short one completes its bar (ABC splits bars at repeat signs); every other measure starts at a
    bar line, the notes that sounded to the end of the previous measure held over the gap when that one was
    short (``filled_gaps``, ``filled_quarters``); a measure longer than the bar or a change of metre ends the
    tune there (``truncated_at``)."""
    from music21 import corpus, stream

    name = Path(str(path)).stem
    try:
        score = corpus.parse(str(path))
    except Exception as exc:  # music21 raises many kinds
        raise MomuError(f"music21 cannot parse {path}: {exc}") from None
    part = score.parts[0] if getattr(score, "parts", None) is not None and len(score.parts) else score
    repairs = {"expanded": False, "dropped_pickups": 0, "filled_gaps": 0, "filled_quarters": 0.0, "truncated_at": None}
    if expand_repeats:
        try:
            part = part.expandRepeats()
            repairs["expanded"] = True
        except Exception:  # malformed repeat structure: play it as written
            pass
    part = part.stripTies()
    measures = list(part.getElementsByClass(stream.Measure))
    if not measures:
        raise MomuError(f"{name}: the score has no measures")
    ts = None
    notes: list[list] = []  # [start, duration, pitches]
    pos: Fraction | None = None  # position in the bar where the previous kept measure ended (0: a bar line)
    out_q = Fraction(0)  # where the next kept measure starts
    first_db: Fraction | None = None
    prev_notes: list[int] = []  # indices (in notes) of the previous kept measure's notes
    for m in measures:
        if m.timeSignature is not None:
            if ts is not None and m.timeSignature.ratioString != ts.ratioString:
                repairs["truncated_at"] = f"metre change to {m.timeSignature.ratioString} at bar {m.number}"
                break
            ts = m.timeSignature
        if ts is None:
            ts = part.getTimeSignatures()[0]
        bar = Fraction(ts.barDuration.quarterLength)
        dur = Fraction(m.duration.quarterLength)
        if dur <= 0:
            continue
        gap = Fraction(0)
        if pos is None:  # the first measure: a short one is the anacrusis
            start = bar - dur if dur < bar else Fraction(0)
        elif dur < bar and (m.paddingLeft or 0) > 0:  # marked as a pickup: it leads into the next bar line
            start = bar - dur
            if pos == 0 or start < pos:  # after a complete bar (a repeat replays the anacrusis)
                repairs["dropped_pickups"] += 1
                continue
            gap = start - pos
        elif dur < bar and 0 < pos and pos + dur <= bar:  # completes the previous short measure (split bar)
            start = pos
        else:  # a full bar, or a short one from the bar line
            start = Fraction(0)
            gap = (bar - pos) % bar
        if start + dur > bar:
            repairs["truncated_at"] = f"bar {m.number} is longer than a {ts.ratioString} bar"
            break
        if gap:
            for i in prev_notes:  # hold the notes that sounded to the end of the previous measure
                if notes[i][0] + notes[i][1] >= out_q:
                    notes[i][1] += gap
            out_q += gap
            repairs["filled_gaps"] += 1
            repairs["filled_quarters"] += float(gap)
        if start == 0 and first_db is None:
            first_db = out_q
        prev_notes = []
        for n in m.flatten().notes:
            d = Fraction(n.duration.quarterLength)
            if n.duration.isGrace or d <= 0:
                continue
            prev_notes.append(len(notes))
            notes.append([out_q + Fraction(n.offset), d, tuple(int(p.midi) for p in n.pitches)])
        out_q += dur
        pos = (start + dur) % bar
    if ts is None or not notes:
        raise MomuError(f"{name}: no notes or no time signature in the score")
    if first_db is None:
        first_db = out_q
    notes.sort(key=lambda x: (x[0], x[2]))
    t0 = notes[0][0]  # a leading rest: start at the first note, keeping the bar position
    beat_q = Fraction(ts.beatDuration.quarterLength)
    tune = ScoreTune(name, ts.ratioString, beat_q, int(ts.beatCount), int(ts.beatDivisionCount) == 3,
                     first_db - t0, out_q - t0, [(a - t0, d, p) for a, d, p in notes], repairs)
    if t0 > first_db:  # the tune starts after the first bar line: the first downbeat is the next one
        k = math.ceil((t0 - first_db) / tune.bar_q)
        tune.first_downbeat_q = first_db + k * tune.bar_q - t0
    return tune


def choose_tempo(tune: ScoreTune, dance: str, rng: np.random.Generator, cfg: RenderConfig) -> tuple[float, Fraction, int]:
    """(beat BPM, beat unit in quarters, beats per bar) of one variant of ``tune``.

    The tempo is drawn from the dance type's ``DANCE_TEMPI`` x U(1 - jitter, 1 + jitter) at the metrical beat;
    a tempo under ``bpm_range`` counts the beat's halves when the beat divides in two (2/2 -> quarters), one over
    it counts pairs of beats when there is an even number per bar (4/4 -> halves); what is still outside the
    range is clipped into it."""
    lo, hi = DANCE_TEMPI.get(dance, (100.0, 125.0))
    bpm = float(rng.uniform(lo, hi) * rng.uniform(1 - cfg.tempo_jitter, 1 + cfg.tempo_jitter))
    unit, bpb = tune.beat_q, tune.beats_per_bar
    if bpm < cfg.bpm_range[0] and not tune.compound:
        unit, bpb, bpm = unit / 2, bpb * 2, bpm * 2
    elif bpm > cfg.bpm_range[1] and bpb % 2 == 0:
        unit, bpb, bpm = unit * 2, bpb // 2, bpm / 2
    return float(np.clip(bpm, *cfg.bpm_range)), unit, bpb


# ------------------------------------------------------------------------------------------------
# drum grooves on the beat/bar grid
GROOVES = {
    "backbeat": "kick on the downbeat (and the middle beat of 4), snare on the other beats, closed hat on every "
                "division of the beat",
    "pulse": "kick on every beat (the downbeat accented), snare on the off-beat division, pedal hat on the beats",
    "ride": "kick on the downbeat, side stick on the other beats, ride on every division",
}


def groove_hits(groove: str, beats_per_bar: int, divisions: int) -> list[tuple[Fraction, int, int]]:
    """One bar of ``groove``: (position in beats, GM drum note, velocity), for ``beats_per_bar`` beats of
    ``divisions`` (2 or 3) each."""
    if groove not in GROOVES:
        raise MomuError(f"unknown drum groove {groove!r}; choose from {sorted(GROOVES)}")
    hits = []
    for b in range(beats_per_bar):
        down, mid = b == 0, beats_per_bar == 4 and b == 2
        for d in range(divisions):
            at = Fraction(b) + Fraction(d, divisions)
            if groove == "backbeat":
                if d == 0:
                    snare = (at, SNARE, 88 if beats_per_bar != 3 else 70)
                    hits.append((at, KICK, 112) if down else (at, KICK, 96) if mid else snare)
                hits.append((at, CLOSED_HAT, 58 if d == 0 else 40))
            elif groove == "pulse":
                if d == 0:
                    hits += [(at, KICK, 112 if down else 92), (at, PEDAL_HAT, 50)]
                elif d == divisions - 1:
                    hits.append((at, SNARE, 80))
            else:  # ride
                if d == 0:
                    hits.append((at, KICK, 110) if down else (at, SIDE_STICK, 78))
                hits.append((at, RIDE, 62 if d == 0 else 45))
    return hits


# ------------------------------------------------------------------------------------------------
# MIDI + exact beat times
def _tick(q: Fraction) -> int:
    return int(round(q * TICKS_PER_QUARTER))


def tune_midi(tune: ScoreTune, path: str | Path, bpm: float, unit_q: Fraction, beats_per_bar: int, program: int,
              groove: str | None = None, velocity: int = 80, seed: int = 0) -> int:
    """Write ``tune`` as a type-1 MIDI file at ``bpm`` beats of ``unit_q`` quarters; returns the file's tempo
    (microseconds per quarter, the exact value every time derives from).

    Melody on channel 1 with ``program``, metrical accents (+16 on downbeats, +8 on other beats); a drum groove
    (``groove_hits``) on channel 10 from the first downbeat to the end of the last bar."""
    import mido

    rng = np.random.default_rng(seed)
    us_per_q = int(round(60e6 / (bpm * float(unit_q))))
    events: list[tuple[int, int, mido.Message]] = []  # (tick, order: offs first, message)
    bar_q = unit_q * beats_per_bar
    for start, dur, pitches in tune.notes:
        rel = (start - tune.first_downbeat_q) / unit_q  # beats from the first downbeat
        accent = 16 if rel.denominator == 1 and rel % beats_per_bar == 0 else 8 if rel.denominator == 1 else 0
        vel = int(np.clip(velocity + accent + rng.integers(-4, 5), 1, 127))
        a, b = _tick(start), max(_tick(start + dur) - 1, _tick(start) + 1)
        for p in pitches:
            events.append((a, 1, mido.Message("note_on", channel=0, note=p, velocity=vel)))
            events.append((b, 0, mido.Message("note_off", channel=0, note=p, velocity=0)))
    if groove:
        hits = groove_hits(groove, beats_per_bar, 3 if tune.compound and unit_q == tune.beat_q else 2)
        bar0 = tune.first_downbeat_q
        while bar0 < tune.end_q:
            for k, (at, note, vel) in enumerate(hits):
                q = bar0 + at * unit_q
                if q >= tune.end_q:
                    continue
                v = int(np.clip(vel + rng.integers(-5, 6), 1, 127))
                if bar0 == tune.first_downbeat_q and k == 0:
                    events.append((_tick(q), 1, mido.Message("note_on", channel=9, note=CRASH, velocity=96)))
                    events.append((_tick(q) + TICKS_PER_QUARTER // 4, 0, mido.Message("note_off", channel=9, note=CRASH)))
                events.append((_tick(q), 1, mido.Message("note_on", channel=9, note=note, velocity=v)))
                events.append((_tick(q) + TICKS_PER_QUARTER // 8, 0, mido.Message("note_off", channel=9, note=note)))
            bar0 += bar_q
    num, den = (int(x) for x in tune.metre.split("/"))
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_QUARTER)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=us_per_q, time=0),
                           mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0)])
    track = mido.MidiTrack([mido.Message("program_change", channel=0, program=int(program), time=0)])
    last = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - last))
        last = tick
    mid.tracks += [meta, track]
    mid.save(str(path))
    return us_per_q


def score_beats(tune: ScoreTune, us_per_q: int, unit_q: Fraction, beats_per_bar: int,
                offset_s: float = FLUIDSYNTH_OFFSET_S) -> dict:
    """Exact beat and downbeat times (s) of a ``tune_midi`` render: the regular grid of ``unit_q`` from the first
    downbeat (earlier beats of the anacrusis included when they fall on or after the first note), to the end of
    the tune; at tick resolution, plus fluidsynth's ``offset_s``."""
    sec_per_tick = us_per_q / 1e6 / TICKS_PER_QUARTER
    k0 = -math.floor(tune.first_downbeat_q / unit_q)  # the earliest beat index at or after time 0
    k1 = math.ceil((tune.end_q - tune.first_downbeat_q) / unit_q)  # beats before the end
    beats_q = [tune.first_downbeat_q + k * unit_q for k in range(k0, k1)]
    beats = [_tick(q) * sec_per_tick + offset_s for q in beats_q]
    bar_q = unit_q * beats_per_bar
    downs = [_tick(q) * sec_per_tick + offset_s for q in beats_q if (q - tune.first_downbeat_q) % bar_q == 0]
    return {"beats": beats, "downbeats": downs, "beats_per_bar": int(beats_per_bar),
            "bpm": 60e6 / us_per_q / float(unit_q), "kind": "exact", "metre": tune.metre,
            "beat_unit_quarters": float(unit_q), "us_per_quarter": int(us_per_q), "offset_s": offset_s,
            "end_s": _tick(tune.end_q) * sec_per_tick + offset_s}


def render_music21(out_dir: str | Path, max_tunes: int | None = 20, variants: int = 2, seed: int = 0,
                   tempo_jitter: float | None = None, progress: bool = True, cfg: RenderConfig | None = None,
                   names: list[str] | None = None, first_variant: int = 0) -> list[CorpusEntry]:
    """Render ``max_tunes`` dance tunes x ``variants`` augmentations to ``out_dir/wav`` + ``out_dir/beats``.

    Files are ``m21_<tune>_<v>`` for v = ``first_variant`` ... ``first_variant + variants - 1`` (add variants to
    an existing corpus with another ``seed``).  ``names``: only these tune file stems (e.g.
    ``["BennetsFavoriteReel"]``), in that order.  Tunes music21 cannot read or shorter than ``cfg.min_bars`` are
    skipped with a message."""
    import soundfile as sf
    from tqdm import tqdm

    from momu_live.demo_media import find_soundfont, render_midi

    cfg = cfg or RenderConfig()
    if tempo_jitter is not None:
        cfg = replace(cfg, tempo_jitter=tempo_jitter)
    if shutil.which("fluidsynth") is None:
        raise MomuError("fluidsynth not found: install Debian `fluidsynth` and `fluid-soundfont-gm`")
    sf2 = find_soundfont()
    rng = np.random.default_rng(seed)
    tunes = dance_tunes()
    if not tunes:
        raise MomuError("music21's corpus has no Ryan's Mammoth dance tunes in this installation; "
                        "install the corpus extra: pip install 'momu-live[corpus]'")
    if names is not None:
        by_stem = {Path(p).stem: (p, d) for p, d in tunes}
        missing = [n for n in names if n not in by_stem]
        if missing:
            raise MomuError(f"no Ryan's Mammoth dance tune named {missing[0]!r} in music21's corpus")
        tunes = [by_stem[n] for n in names]
        order = np.arange(len(tunes))
    else:
        order = rng.permutation(len(tunes))
    if max_tunes is not None:
        order = order[:max_tunes]
    out = Path(out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "beats").mkdir(parents=True, exist_ok=True)
    entries = []
    with tempfile.TemporaryDirectory() as td:
        for k in tqdm(order, desc="render", disable=not progress):
            path, dance = tunes[int(k)]
            try:
                tune = score_tune(path, cfg.expand_repeats)
            except Exception as exc:  # a tune music21 cannot read: skip it, say so
                print(f"skipped {Path(path).name}: {exc}")
                continue
            if tune.bars < cfg.min_bars:
                print(f"skipped {Path(path).name}: {tune.bars} bars after repairs ({tune.repairs}) < {cfg.min_bars}")
                continue
            for v in range(first_variant, first_variant + variants):
                bpm, unit, bpb = choose_tempo(tune, dance, rng, cfg)
                program = int(rng.choice(cfg.programs))
                groove = str(rng.choice(cfg.grooves)) if rng.random() < cfg.drums else ""
                velocity = int(rng.integers(cfg.velocity[0], cfg.velocity[1] + 1))
                vseed = int(rng.integers(2**31))
                name = f"m21_{tune.title}_{v}"
                mid = Path(td) / "tune.mid"
                us = tune_midi(tune, mid, bpm, unit, bpb, program, groove or None, velocity, vseed)
                wav = render_midi(mid, cfg.sample_rate, sf2)  # (T,) float32
                sf.write(str(out / "wav" / f"{name}.wav"), wav, cfg.sample_rate, subtype="PCM_16")
                beats = score_beats(tune, us, unit, bpb)
                beats.update(source=MUSIC21_SOURCE, title=tune.title, dance=dance, program=program, groove=groove,
                             repairs=tune.repairs)
                (out / "beats" / f"{name}.json").write_text(json.dumps(beats))
                entries.append(CorpusEntry(f"wav/{name}.wav", MUSIC21_SOURCE, tune.title, dance, round(beats["bpm"], 3),
                                           program, bool(groove), round(len(wav) / cfg.sample_rate, 2), MUSIC21_LICENCE,
                                           f"beats/{name}.json", bpb, "exact", groove, tune.metre))
    return entries


def measure_render_offset(programs: tuple[int, ...] = PROGRAMS, drums: tuple[int, ...] = (KICK, SNARE, CLOSED_HAT),
                          hits: int = 8, seed: int = 0, sample_rate: int = DEFAULT_TIMEBASE.sample_rate) -> dict:
    """Measure how long after its MIDI time fluidsynth's sound of a note starts (s).

    Per program (and per drum note on channel 10): ``hits`` short notes 2 s apart at random sub-millisecond
    times, rendered with demo_media.render_midi; a note's start is the first sample above -60 dB re the
    file's peak and 4x the level of the 50 ms before the note.  Returns ``{"median_s", "min_s", "max_s",
    "per_instrument": {name: median_s}}``."""
    import mido

    from momu_live.demo_media import find_soundfont, render_midi

    sf2 = find_soundfont()
    rng = np.random.default_rng(seed)
    us = 500_000  # 120 BPM: 1 tick = 0.5 s / 960
    per, allv = {}, []
    with tempfile.TemporaryDirectory() as td:
        for name, chan, prog, note in [(f"program {p}", 0, p, 72) for p in programs] + [(f"drum {d}", 9, 0, d) for d in drums]:
            ticks = [int((0.3 + 2.0 * i + rng.uniform(0, 0.5)) / 0.5 * TICKS_PER_QUARTER) for i in range(hits)]
            tr = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=us, time=0),
                                 mido.Message("program_change", channel=chan, program=prog, time=0)])
            last = 0
            for t in ticks:
                tr.append(mido.Message("note_on", channel=chan, note=note, velocity=100, time=t - last))
                tr.append(mido.Message("note_off", channel=chan, note=note, velocity=0, time=TICKS_PER_QUARTER // 8))
                last = t + TICKS_PER_QUARTER // 8
            mid = mido.MidiFile(ticks_per_beat=TICKS_PER_QUARTER)
            mid.tracks.append(tr)
            p = Path(td) / "probe.mid"
            mid.save(str(p))
            wav = np.abs(render_midi(p, sample_rate, sf2))  # (T,)
            offs = []
            for t in ticks:
                ts = t / TICKS_PER_QUARTER * us / 1e6
                a, pre = int(ts * sample_rate), int(0.05 * sample_rate)
                floor = float(wav[max(0, a - pre):a].max(initial=0.0))
                seg = wav[a:a + int(0.05 * sample_rate)]
                above = np.nonzero(seg > max(1e-3 * 0.89, 4 * floor))[0]
                if len(above):
                    offs.append((a + above[0]) / sample_rate - ts)
            if offs:
                per[name] = float(np.median(offs))
                allv += offs
    if not allv:
        raise MomuError("fluidsynth rendered no measurable notes; check `fluidsynth` and the soundfont")
    return {"median_s": float(np.median(allv)), "min_s": float(np.min(allv)), "max_s": float(np.max(allv)),
            "per_instrument": per, "notes": len(allv)}


# ------------------------------------------------------------------------------------------------
# Debian game music
def debian_tracks(fetch: bool = False, cache_dir: str | Path | None = None,
                  packages: tuple[str, ...] = DEBIAN_PACKAGES) -> list[tuple[str, Path]]:
    """(package, audio path) of the Debian game-music packages: installed files, or fetched .debs unpacked."""
    found = []
    cache = Path(cache_dir) if cache_dir else None
    for pkg in packages:
        files = []
        proc = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True) if shutil.which("dpkg") else None
        if proc is not None and proc.returncode == 0:
            listed = [Path(x) for x in proc.stdout.splitlines() if Path(x).is_file()]
            files = [x for x in listed if x.suffix in AUDIO_SUFFIXES]
            pk3 = [x for x in listed if x.suffix == ".pk3"]
            if pk3:
                cache = cache or Path(tempfile.mkdtemp(prefix="momu_deb_"))
                files += _unpack_pk3(pk3, cache / pkg / "pk3")
        elif fetch:
            if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
                raise MomuError("apt-get/dpkg-deb not found: the Debian music packages need a Debian system")
            cache = cache or Path(tempfile.mkdtemp(prefix="momu_deb_"))
            cache.mkdir(parents=True, exist_ok=True)
            debs = sorted(cache.glob(f"{pkg}_*.deb"))
            if not debs:
                r = subprocess.run(["apt-get", "download", pkg], cwd=cache, capture_output=True, text=True)
                if r.returncode != 0:
                    raise MomuError(f"apt-get download {pkg} failed: {r.stderr.strip()[:200]}; run apt-get update or "
                                    "install the package")
                debs = sorted(cache.glob(f"{pkg}_*.deb"))
            root = cache / pkg
            if not root.exists():
                subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
            audio = {p for s in AUDIO_SUFFIXES for p in root.rglob(f"*{s}") if "pk3" not in p.relative_to(root).parts}
            files = sorted(audio | set(_unpack_pk3(sorted(root.rglob("*.pk3")), root / "pk3")))
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


def copyright_file(pkg: str, track: Path) -> Path | None:
    """The Debian copyright file of ``pkg`` for ``track``: in the unpacked package root above it, else the
    installed one."""
    for parent in [track.parent, *track.parents]:
        c = parent / "usr" / "share" / "doc" / pkg / "copyright"
        if c.is_file():
            return c
    c = Path("/usr/share/doc") / pkg / "copyright"
    return c if c.is_file() else None


def licence_of(text: str) -> str:
    """SPDX-style licence of a Debian copyright file (the ``Files: *`` paragraph of a machine-readable one, else
    the first licence grant of a free-form one) or of an album's licence text; "" when not recognised."""
    if text.lstrip().startswith("Format:"):
        m = re.search(r"^Files:\s*\*\s*\n(?:(?!^Files:).*\n)*?^License:\s*(\S+)", text, re.M)
        if m:
            return m.group(1)
    found = []
    cc = re.search(r"CC[- ]BY[- ]SA[- ](\d\.\d)(\s*\(or,? at your (?:option|discretion),? any later version\))?", text, re.I)
    if cc:
        found.append(f"CC-BY-SA-{cc.group(1)}" + ("+" if cc.group(2) else ""))
    elif re.search(r"CREATIVE COMMONS PUBLIC LICENSE", text):
        ver = re.search(r"Attribution-ShareAlike (\d\.\d)", text)
        found.append("CC-BY-SA" + (f"-{ver.group(1)}" if ver else ""))
    gpl = re.search(r"GNU (Lesser |Library )?General Public License[^.]{0,120}?version (\d)([^.]{0,80}?later)?", text,
                    re.I | re.S)
    if gpl:
        found.append(("LGPL" if gpl.group(1) else "GPL") + f"-{gpl.group(2)}" + ("+" if gpl.group(3) else ""))
    return " OR ".join(found)


def track_licence(pkg: str, track: Path) -> tuple[str, list[Path]]:
    """(licence, the files it was read from) of one Debian track: an album ``license.txt`` beside the track
    (Warzone 2100's remastered albums; a paragraph naming the track overrides the album's licence), else the
    package's copyright file."""
    lic = track.parent / "license.txt"
    if lic.is_file():
        text = lic.read_text(errors="replace").split("[EN]")[0]  # the notice, not the licence text after it
        for para in re.split(r"\n\s*\n", text):
            if re.search(rf"\b{re.escape(track.stem)}\b", para) and "except" not in para:
                if licence_of(para):
                    return licence_of(para), [lic]
        if licence_of(text):
            return licence_of(text), [lic]
    c = copyright_file(pkg, track)
    if c is None:
        return "", []
    return licence_of(c.read_text(errors="replace")) or f"see {pkg} copyright", [c]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def tracked_beats(wav: np.ndarray, sr: int) -> dict:
    """The beat tracker's grid of a recording (models/guidance.grid_from_music) as a beats json; ``beats`` is
    empty when the tracker finds fewer than two."""
    from momu_live.models.guidance import grid_from_music

    try:
        grid = grid_from_music(wav, sr)
    except MomuError as exc:
        return {"beats": [], "downbeats": [], "beats_per_bar": 4, "bpm": 0.0, "kind": "tracked", "error": str(exc)}
    beats = [float(b) for b in grid.beats]
    return {"beats": beats, "downbeats": beats[:: int(grid.beats_per_bar)], "beats_per_bar": int(grid.beats_per_bar),
            "bpm": float(grid.bpm), "kind": "tracked", "downbeats_known": False, "tracker": grid.source}


def convert_debian(out_dir: str | Path, fetch: bool = False, cache_dir: str | Path | None = None,
                   progress: bool = True, packages: tuple[str, ...] = DEBIAN_PACKAGES,
                   beats: bool = True) -> list[CorpusEntry]:
    """Convert the Debian game-music tracks to 22.05 kHz mono WAV in ``out_dir/wav`` with their licence, the
    copyright files in ``out_dir/licences`` and (``beats``) the beat tracker's beats in ``out_dir/beats``.
    Silent tracks (peak < -60 dBFS) are skipped."""
    import soundfile as sf
    from tqdm import tqdm

    from momu_live.models.audio import load_audio

    out = Path(out_dir)
    for sub in ("wav", "beats", "licences"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    entries = []
    for pkg, path in tqdm(debian_tracks(fetch, cache_dir, packages), desc="debian", disable=not progress):
        wav, sr = load_audio(path, DEFAULT_TIMEBASE.sample_rate)  # (T,)
        if float(np.abs(wav).max(initial=0.0)) < 1e-3:
            print(f"skipped {pkg} {path.name}: silent")
            continue
        licence, sources = track_licence(pkg, path)
        for s in sources:
            keep = out / "licences" / _safe(f"{pkg}_{s.parent.name}_{s.name}" if s.name != "copyright" else f"{pkg}.copyright")
            if not keep.exists():
                shutil.copyfile(s, keep)
        name = _safe(f"{pkg}_{path.stem}")
        sf.write(str(out / "wav" / f"{name}.wav"), wav, sr, subtype="PCM_16")
        bpm, bpb, kind, rel = 0.0, 0, "", ""
        if beats:
            b = tracked_beats(wav, sr)
            b.update(source=f"debian:{pkg}", title=path.stem, licence=licence)
            (out / "beats" / f"{name}.json").write_text(json.dumps(b))
            bpm, bpb, kind, rel = round(b["bpm"], 3), b["beats_per_bar"], "tracked", f"beats/{name}.json"
        entries.append(CorpusEntry(f"wav/{name}.wav", f"debian:{pkg}", path.stem, "", bpm, -1, False,
                                   round(len(wav) / sr, 2), licence, rel, bpb, kind))
    return entries


# ------------------------------------------------------------------------------------------------
# index
def write_index(out_dir: str | Path, entries: list[CorpusEntry]) -> Path:
    """Append ``entries`` to ``out_dir/index.csv`` (replacing rows of the same file)."""
    path = Path(out_dir) / "index.csv"
    rows = {}
    if path.exists():
        with open(path, newline="") as f:
            rows = {r["file"]: r for r in csv.DictReader(f)}
    for e in entries:
        rows[e.file] = {k: getattr(e, k) for k in INDEX_FIELDS}
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=INDEX_FIELDS, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows.values())
    return path


def read_index(out_dir: str | Path) -> list[dict]:
    """The rows of a corpus folder's index.csv; MomuError when the folder is not a corpus."""
    root = Path(out_dir)
    path = root / "index.csv"
    if not root.is_dir() or not path.is_file():
        raise MomuError(f"{root} is not a music corpus folder (no index.csv); build one with "
                        f"`momu data corpus --out {root}`")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not {"file", "source", "seconds"} <= set(reader.fieldnames or ()):
            raise MomuError(f"{path} is not a corpus index (needs file,source,seconds columns); build the corpus with "
                            f"`momu data corpus --out {root}`")
        return list(reader)


def corpus_hours(out_dir: str | Path) -> dict[str, float]:
    """Hours of audio per source in a corpus folder (from its index.csv)."""
    hours: dict[str, float] = {}
    for r in read_index(out_dir):
        hours[r["source"]] = hours.get(r["source"], 0.0) + float(r["seconds"]) / 3600
    return hours


def corpus_summary(out_dir: str | Path) -> dict:
    """{source: {"tracks", "hours", "licences": {licence: hours}, "beats": {kind: tracks}}} of a corpus folder."""
    out: dict[str, dict] = {}
    for r in read_index(out_dir):
        s = out.setdefault(r["source"], {"tracks": 0, "hours": 0.0, "licences": {}, "beats": {}})
        h = float(r["seconds"]) / 3600
        s["tracks"] += 1
        s["hours"] += h
        lic = r.get("licence") or "unrecorded"
        s["licences"][lic] = s["licences"].get(lic, 0.0) + h
        kind = r.get("beat_kind") or "none"
        s["beats"][kind] = s["beats"].get(kind, 0) + 1
    return out


def val_tunes(rows: list[dict], val_every: int) -> set[tuple[str, str]]:
    """The held-out tunes of a corpus index: every ``val_every``-th (source, title) in sorted order, so all variants
    and segments of a tune land on one side (``encode_corpus`` and the music VAE's corpus pre-training agree)."""
    tunes = sorted({(r["source"], r["title"]) for r in rows})
    return {t for i, t in enumerate(tunes) if val_every > 0 and i % val_every == val_every - 1}


def corpus_mels(out_dir: str | Path, progress: bool = True, val_every: int = 20, max_hours: float | None = None):
    """Log-mels (80, N) float16 of the corpus files, for music-VAE pre-training: yields (file, mel, split), split
    "val" for ``val_tunes(rows, val_every)``, else "train"; ``max_hours``: stop once that much audio was read
    (files in a seeded random order, so a cap draws from every source)."""
    import torch
    from tqdm import tqdm

    from momu_live.models.audio import load_audio, log_mel

    rows = read_index(out_dir)
    if not rows:
        raise MomuError(f"{out_dir}/index.csv lists no tracks; build the corpus with `momu data corpus --out {out_dir}`")
    val = val_tunes(rows, val_every)
    order = np.random.default_rng(0).permutation(len(rows)) if max_hours else np.arange(len(rows))
    sr, seconds = DEFAULT_TIMEBASE.sample_rate, 0.0
    for k in tqdm(order, desc="corpus mels", unit="track", disable=not progress):
        r = rows[int(k)]
        wav, _ = load_audio(Path(out_dir) / r["file"], sr)
        yield r["file"], log_mel(torch.from_numpy(wav)).numpy().astype(np.float16), \
            "val" if (r["source"], r["title"]) in val else "train"
        seconds += len(wav) / sr
        if max_hours and seconds >= 3600 * max_hours:
            break


# ------------------------------------------------------------------------------------------------
# beat grids and encoding
def load_beats(out_dir: str | Path, row: dict) -> dict:
    """The beats json of an index row; MomuError naming the file when it is missing."""
    rel = row.get("beats") or ""
    path = Path(out_dir) / rel if rel else None
    if path is None or not path.is_file():
        raise MomuError(f"{row['file']} of {out_dir} has no beats file{f' ({path})' if path else ''}; rebuild the "
                        f"corpus with `momu data corpus --out {out_dir}` (this version writes OUT/beats/*.json)")
    return json.loads(path.read_text())


def beat_grid(beats: dict):
    """A guidance.BeatGrid whose first beat is a downbeat, from a beats json; None with fewer than 2 beats.

    Exact (score) grids start at the first downbeat: the anacrusis before it gets a negative phase from
    ``BeatGrid.phase``'s extrapolation with the (constant) inter-beat interval, which is exact for a steady
    render.  Tracked grids start at the first tracked beat (the bar phase is a guess, as for the dances)."""
    from momu_live.models.guidance import BeatGrid

    b = np.asarray(beats.get("beats", []), float)  # (n,)
    downs = beats.get("downbeats") or []
    if beats.get("kind") == "exact" and downs:
        b = b[b >= downs[0] - 1e-9]
    if len(b) < 2:
        return None
    return BeatGrid(tuple(float(x) for x in b), int(beats.get("beats_per_bar") or 4), f"corpus {beats.get('kind', '')}")


def encode_corpus(corpus_dir: str | Path, vae, out_path: str | Path, device="cpu", progress: bool = True,
                  val_every: int = 20, cfg: EncodeConfig | None = None) -> dict:
    """Corpus folder -> latents file (models/train_diffusion format) of music latents and rhythm control.

    Every track is cut into equal segments of at most ``cfg.segment_s`` (whole latent frames: 2048 samples);
    each segment: log-mel (80, 8L) -> ``vae.encode_music`` -> ``vae.normalize_latent(mu, "music")`` (C, L)
    fp16 as ``music/<id>``, and ``rhythm_control.rhythm_features(grid, L, start_s)`` (6, L) fp16 of the track's
    beat grid (``beat_grid``) as ``rhythm/<id>``.  ids: the wav stem, ``<stem>@<k>`` for segment k of a cut track.
    ``splits``: every ``val_every``-th tune (by source and title, so all variants and segments of a tune land
    together) is "val".  Also ``sources``, ``licences``, ``beat_kinds``, ``starts_s`` per id, ``kind`` =
    "corpus", ``vae_sha256`` (the VAE's ``source_sha256`` attribute when set).  Tracks without a beat grid or
    shorter than ``cfg.min_frames`` latent frames are skipped and listed.  Returns a summary dict."""
    import torch
    from tqdm import tqdm

    from momu_live.models.audio import load_audio, log_mel
    from momu_live.models.rhythm_control import rhythm_features
    from momu_live.models.train_diffusion import save_latents

    cfg = cfg or EncodeConfig(val_every=val_every)
    root = Path(corpus_dir)
    rows = read_index(root)
    if not rows:
        raise MomuError(f"{root}/index.csv lists no tracks; build the corpus with `momu data corpus --out {root}`")
    missing = [r["file"] for r in rows if not (root / r["file"]).is_file()]
    if missing:
        raise MomuError(f"{root}/index.csv lists {len(missing)} missing audio files (first: {missing[0]}); rebuild "
                        f"the corpus with `momu data corpus --out {root}`")
    beats = {r["file"]: load_beats(root, r) for r in rows}  # fails early, naming the first track without beats
    tb = DEFAULT_TIMEBASE
    spl, sr = tb.samples_per_latent, tb.sample_rate
    seg_frames = max(1, int(math.floor(cfg.segment_s * float(tb.latent_rate))))
    val = val_tunes(rows, cfg.val_every)
    out: dict = {"ids": [], "splits": [], "sources": [], "licences": [], "beat_kinds": [], "starts_s": []}
    skipped, seconds = [], {}
    vae = vae.to(device).eval()
    with torch.no_grad():
        for r in tqdm(rows, desc="encode", disable=not progress):
            grid = beat_grid(beats[r["file"]])
            if grid is None:
                skipped.append(f"{r['file']}: fewer than 2 beats")
                continue
            wav, _ = load_audio(root / r["file"], sr)  # (T,)
            n = len(wav) // spl  # latent frames of the track
            if n < cfg.min_frames:
                skipped.append(f"{r['file']}: {n} latent frames < {cfg.min_frames}")
                continue
            bounds = np.round(np.linspace(0, n, math.ceil(n / seg_frames) + 1)).astype(int)  # (S + 1,) equal segments
            stem = Path(r["file"]).stem
            for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                x = torch.from_numpy(wav[a * spl:b * spl])  # (8 (b - a) * 256,)
                mel = log_mel(x)[None].to(device)  # (1, 80, 8 (b - a))
                z = vae.normalize_latent(vae.encode_music(mel)[0], "music")[0]  # (C, b - a)
                start_s = a * spl / sr
                i = stem if len(bounds) == 2 else f"{stem}@{k}"
                out[f"music/{i}"] = z.cpu().numpy().astype(np.float16)  # (C, L)
                out[f"rhythm/{i}"] = rhythm_features(grid, z.shape[-1], start_s, tb).astype(np.float16)  # (6, L)
                out["ids"].append(i)
                out["splits"].append("val" if (r["source"], r["title"]) in val else "train")
                out["sources"].append(r["source"])
                out["licences"].append(r.get("licence", ""))
                out["beat_kinds"].append(beats[r["file"]].get("kind", ""))
                out["starts_s"].append(start_s)
                seconds[r["source"]] = seconds.get(r["source"], 0.0) + z.shape[-1] / float(tb.latent_rate)
    if not out["ids"]:
        raise MomuError(f"nothing to encode in {root}: every track was skipped ({skipped[:3]})")
    for k in ("ids", "splits", "sources", "licences", "beat_kinds"):
        out[k] = np.array(out[k])
    out["starts_s"] = np.array(out["starts_s"], np.float64)
    out["kind"] = np.array("corpus")
    out["vae_sha256"] = np.array(getattr(vae, "source_sha256", ""))
    out["segment_s"] = np.array(cfg.segment_s)
    path = save_latents(out, out_path)
    return {"path": str(path), "segments": len(out["ids"]), "tracks": len(rows) - len(skipped),
            "val_segments": int((out["splits"] == "val").sum()), "hours": {k: v / 3600 for k, v in seconds.items()},
            "skipped": skipped}
