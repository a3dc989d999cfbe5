"""Licence-clean demo media: a public-domain dance tune rendered with the General MIDI soundfont,
and the procedural dancer.

The tune comes from music21's corpus (Ryan's Mammoth Collection, 1883, public domain); it is
rendered at a fixed tempo with a melody instrument plus a simple drum groove (kick on beats 1 and 3,
snare on 2 and 4, eighth-note hats) through fluidsynth and FluidR3_GM.sf2 (MIT, Debian
``fluid-soundfont-gm``).  ``scripts/make_demo_media.py`` writes the bundled files in
``momu_live/assets/``; nothing of the shared research data is used.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from momu_live import MomuError
from momu_live.models.timebase import DEFAULT_TIMEBASE

ASSETS = Path(__file__).parent / "assets"
DEMO_MUSIC = ASSETS / "demo_music.flac"
DEMO_DANCE = ASSETS / "demo_dance.npz"
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")


def find_soundfont() -> Path:
    for p in SOUNDFONTS:
        if Path(p).exists():
            return Path(p)
    raise MomuError("no General MIDI soundfont found: install Debian `fluid-soundfont-gm` (scripts/setup.sh does)")


def tune_to_midi(corpus_name: str, out_mid: Path, bpm: float, program: int = 21, drums: bool = True,
                 repeats: int = 1) -> float:
    """Write a MIDI file of a music21 corpus tune at ``bpm`` (quarter-note beats) with a drum groove.

    Returns the duration in seconds.
    """
    import mido
    from music21 import corpus, instrument, tempo

    score = corpus.parse(corpus_name)
    part = score.parts[0] if hasattr(score, "parts") and len(score.parts) else score
    part = part.flatten().notesAndRests.stream()
    part.insert(0, tempo.MetronomeMark(number=bpm))
    inst = instrument.instrumentFromMidiProgram(program)
    part.insert(0, inst)
    tmp = out_mid.with_suffix(".melody.mid")
    part.write("midi", fp=str(tmp))
    mid = mido.MidiFile(str(tmp))
    tmp.unlink()
    tpb = mid.ticks_per_beat
    quarters = float(part.highestTime)
    # repeat the melody track `repeats` times
    if repeats > 1:
        for tr in mid.tracks:
            events = [m for m in tr if not m.is_meta or m.type not in ("end_of_track",)]
            body = [m for m in events if not (m.is_meta and m.type == "set_tempo")]
            tr.clear()
            tr.extend(events)
            for _ in range(repeats - 1):
                tr.extend(m.copy() for m in body if not m.is_meta)
    total_q = quarters * repeats
    if drums:
        dr = mido.MidiTrack()
        events = []  # (tick, note, velocity)
        for q in range(int(total_q)):
            beat_in_bar = q % 4
            events.append((q * tpb, 36 if beat_in_bar in (0, 2) else 38, 100 if beat_in_bar == 0 else 85))
            events.append((q * tpb, 42, 60))
            events.append((q * tpb + tpb // 2, 42, 45))
        msgs = []
        for tick, note, vel in events:
            msgs.append((tick, mido.Message("note_on", channel=9, note=note, velocity=vel)))
            msgs.append((tick + tpb // 8, mido.Message("note_off", channel=9, note=note, velocity=0)))
        msgs.sort(key=lambda x: x[0])
        last = 0
        for tick, m in msgs:
            dr.append(m.copy(time=tick - last))
            last = tick
        mid.tracks.append(dr)
    mid.save(str(out_mid))
    return total_q * 60.0 / bpm


def render_midi(mid_path: Path, sample_rate: int = DEFAULT_TIMEBASE.sample_rate, soundfont: Path | None = None, tail_s: float = 1.5) -> np.ndarray:
    """Render a MIDI file to mono float32 with fluidsynth (no audio device needed).

    fluidsynth streams raw 16-bit stereo to a pipe and we read exactly the file's length plus a
    release tail: some valid files make fluidsynth's fast render never reach end-of-song.
    """
    import mido

    if shutil.which("fluidsynth") is None:
        raise MomuError("fluidsynth not found: install Debian `fluidsynth` (scripts/setup.sh does)")
    sf2 = soundfont or find_soundfont()
    try:
        seconds = mido.MidiFile(str(mid_path)).length + tail_s
    except (OSError, ValueError, EOFError) as exc:
        raise MomuError(f"cannot read MIDI file {mid_path}: {exc}") from None
    n_bytes = int(seconds * sample_rate) * 2 * 2  # stereo int16
    proc = subprocess.Popen(
        ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(sample_rate), "-T", "raw", "-O", "s16", "-F", "-",
         str(sf2), str(mid_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    chunks, got = [], 0
    while got < n_bytes:
        block = proc.stdout.read(min(1 << 20, n_bytes - got))
        if not block:
            break
        chunks.append(block)
        got += len(block)
    proc.kill()
    _, err = proc.communicate()
    if got == 0:
        raise MomuError(f"fluidsynth rendered nothing for {mid_path}: {err.decode(errors='replace').strip()[:300]}")
    raw = b"".join(chunks)
    wav = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i2").reshape(-1, 2).astype(np.float32).mean(axis=1) / 32768.0
    peak = float(np.abs(wav).max()) or 1.0
    return (wav / peak * 0.89).astype(np.float32)
