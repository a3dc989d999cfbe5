"""Write the bundled demo media (momu_live/assets/): a rendered public-domain tune and the
procedural dance.  Deterministic; run after changing momu_live/demo_media.py or procedural.py.

    .venv/bin/python scripts/make_demo_media.py
"""
import tempfile
from pathlib import Path

import soundfile as sf

from momu_live.demo_media import DEMO_DANCE, DEMO_MUSIC, render_midi, tune_to_midi
from momu_live.procedural import procedural_dance

TUNE, BPM, SECONDS = "ryansMammoth/AdmiralsHornpipe.abc", 112.0, 30.0

with tempfile.TemporaryDirectory() as td:
    mid = Path(td) / "tune.mid"
    tune_to_midi(TUNE, mid, bpm=BPM, program=21)  # accordion
    wav = render_midi(mid, 22050)
wav = wav[: int(SECONDS * 22050)]
DEMO_MUSIC.parent.mkdir(parents=True, exist_ok=True)
sf.write(str(DEMO_MUSIC), wav, 22050, subtype="PCM_16")
procedural_dance(bpm=120.0, seconds=SECONDS, fps=30.0, meter=4).save(DEMO_DANCE)
print(f"wrote {DEMO_MUSIC} ({len(wav) / 22050:.1f} s, {DEMO_MUSIC.stat().st_size // 1024} KB) and {DEMO_DANCE}")
