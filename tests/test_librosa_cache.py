"""librosa's numba caches go to a per-user, per-version folder, never into site-packages."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from momu_live.models import _librosa

_BEATS = """
import os, sys
import numpy as np
from momu_live.models.beats import click_track, music_beats
assert "librosa" not in sys.modules  # importing the model code does not import librosa
tempo, beats = music_beats(click_track(np.arange(0, 6, 0.5), 6.0), 22050)
import librosa.beat
dp = getattr(librosa.beat, "__beat_track_dp")  # numba-compiled, cache=True
cache = getattr(getattr(getattr(dp, "gufunc_builder", None), "nb_func", None), "cache", None)
print(os.environ["NUMBA_CACHE_DIR"])
print(getattr(cache, "_cache_path", "?"))
print(round(tempo))
"""


def _cache_files(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.suffix in (".nbi", ".nbc")}


def test_beat_tracker_caches_in_the_user_cache_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "MOMU_CACHE")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), OMP_NUM_THREADS="1")
    want = tmp_path / "xdg" / "momu-live" / "numba" / _librosa.numba_cache_dir().name
    # A cold cache costs ~30 s of compiling: seed it from this user's warm one (when there is one) minus
    # the beat tracker's dynamic programme, which this run then has to compile and write.
    warm = Path(os.environ.get("NUMBA_CACHE_DIR") or _librosa.numba_cache_dir())
    if warm.is_dir():
        shutil.copytree(warm, want)
        for p in want.rglob("*__beat_track_dp-*"):
            p.unlink()
    pkg = Path(importlib.util.find_spec("librosa").origin).parent  # located, not imported
    before = _cache_files(pkg)
    r = subprocess.run([sys.executable, "-c", _BEATS], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    cache_dir, dp_cache, tempo = r.stdout.split()
    assert Path(cache_dir) == want and 110 <= int(tempo) <= 130
    assert dp_cache == "?" or Path(dp_cache).parent == want  # numba's own idea of where it caches
    written = [Path(f).name for f in _cache_files(want)]
    assert any(n.startswith("beat.__beat_track_dp-") and n.endswith(".nbi") for n in written), written
    assert any(n.endswith(".nbc") for n in written)
    assert _cache_files(pkg) == before  # nothing written (or rewritten) inside site-packages


def test_cache_dir_honours_momu_cache_and_a_user_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("MOMU_CACHE", str(tmp_path / "m"))
    d = _librosa.numba_cache_dir()
    assert d.parent == tmp_path / "m" / "numba" and d.name.endswith(f"-py{sys.version_info.major}.{sys.version_info.minor}")
    assert d.name.startswith("librosa0.") and "-numba0." in d.name
    monkeypatch.delenv("MOMU_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert _librosa.numba_cache_dir().parent == tmp_path / "x" / "momu-live" / "numba"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert _librosa.configure_numba_cache() == str(tmp_path / "mine")  # the user's choice wins
