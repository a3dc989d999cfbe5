"""The one way the project imports librosa: ``from momu_live.models._librosa import librosa; librosa()``.

librosa compiles its beat tracker and a few helpers with numba ``cache=True``.  By default numba
writes those caches next to librosa's own sources (``site-packages/librosa/**/__pycache__/*.nbi``,
``*.nbc``).  That shared, in-package cache is fragile: several ``momu`` processes compiling at once
and being killed half-way left files after which every later run segfaulted inside the beat
tracker until they were deleted by hand.

So before librosa (and with it numba) is first imported, ``NUMBA_CACHE_DIR`` is pointed at a per-user,
per-version folder (unless the user set it): ``$MOMU_CACHE/numba/<tag>`` when ``MOMU_CACHE`` is set,
else ``${XDG_CACHE_HOME:-~/.cache}/momu-live/numba/<tag>`` with ``<tag>`` =
``librosa<version>-numba<version>-py<major.minor>``.  A new librosa, numba or Python gets a fresh
folder; deleting the folder is always safe (numba recompiles).

librosa stays optional at import time of every model module (the GPU training box has none): it is
imported only when ``librosa()`` is called.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType


def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "none"


def numba_cache_dir() -> Path:
    """The folder numba's on-disk caches of librosa go to (see the module docstring)."""
    if os.environ.get("MOMU_CACHE"):
        base = Path(os.environ["MOMU_CACHE"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "momu-live"
    tag = (f"librosa{_dist_version('librosa')}-numba{_dist_version('numba')}-"
           f"py{sys.version_info.major}.{sys.version_info.minor}")
    return base / "numba" / tag


def configure_numba_cache() -> str:
    """Set ``NUMBA_CACHE_DIR`` (when unset) before numba loads; return the folder in use."""
    d = os.environ.get("NUMBA_CACHE_DIR")
    if not d:
        d = str(numba_cache_dir())
        os.environ["NUMBA_CACHE_DIR"] = d
    numba = sys.modules.get("numba")
    if numba is not None:  # numba came in before us (another library): its config was read already
        cfg = numba.core.config
        if not getattr(cfg, "CACHE_DIR", ""):
            cfg.CACHE_DIR = d
    return d


def librosa() -> ModuleType:
    """The librosa module, imported with numba's cache outside site-packages."""
    configure_numba_cache()
    import librosa as mod  # the one import of librosa in the project

    return mod
