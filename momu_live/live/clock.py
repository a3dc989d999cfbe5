"""Ableton Link tempo sync (optional): the DAW follows the dancer.

MIDI clock (24 ppq) and beat notes go through the bridge router (``bridge/midi.py``: ``--midi-out``);
this module only adds Link via ``aalink`` when it is installed (``pip install 'momu-live[link]'``).
``LinkSync.beat(time, bpm)`` is called for every tracked beat and moves the Link session tempo when
it differs by more than ``tolerance`` BPM.  Untested here: aalink is not installed on the CI image.
"""
from __future__ import annotations

import logging
import threading

from momu_live import MomuError

log = logging.getLogger(__name__)


class LinkSync:
    def __init__(self, bpm: float = 120.0, tolerance: float = 0.05):
        try:
            import asyncio

            from aalink import Link  # type: ignore[import-not-found]
        except ImportError:
            raise MomuError("--link needs aalink (pip install 'momu-live[link]', aalink==0.2.3)") from None
        self.tolerance = tolerance
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="link-loop", daemon=True)
        self._thread.start()
        self.link = Link(bpm, self._loop)
        self.link.enabled = True
        self.updates = 0

    def beat(self, t_stream: float, bpm: float) -> None:
        if not (20.0 <= bpm <= 300.0):
            return
        try:
            if abs(float(self.link.tempo) - bpm) > self.tolerance:
                self.link.tempo = float(bpm)
                self.updates += 1
        except Exception as exc:  # a Link hiccup must never stop the engine
            log.debug("link: %r", exc)

    def close(self) -> None:
        try:
            self.link.enabled = False
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(1.0)
