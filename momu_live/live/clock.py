"""Ableton Link tempo sync (optional): the DAW follows the dancer, or a Link peer holds the tempo.

MIDI clock (24 ppq) and beat notes go through the bridge router (``bridge/midi.py``: ``--midi-out``);
this module only adds Link via ``aalink`` when it is installed (``pip install 'momu-live[link]'``).

``LinkSync.beat(time, bpm, downbeat)`` is called for every published beat.  The Link session tempo
follows the same policy as AbletonOSC (``bridge.router.ableton_tempo_step``): at most once a bar, on a
downbeat, and only when the tempo has differed by more than ``tolerance`` for a whole bar.  When the
session tempo changes and it was not this process (another Link peer: a DAW, a phone app), the new
tempo goes to ``on_peer_tempo(bpm)`` (the engine holds it until ``/momu/tempo/set/follow 1``), and the
engine's own tempo is not pushed to Link while a peer holds it.  Untested against a real Link session
here: aalink is not installed on the CI image (the policy is tested with a stand-in ``link`` object).
"""
from __future__ import annotations

import logging
import threading

from momu_live import MomuError
from momu_live.bridge.events import Beat
from momu_live.bridge.router import TempoPolicyState, ableton_tempo_step

log = logging.getLogger(__name__)


class LinkSync:
    def __init__(self, bpm: float = 120.0, tolerance: float = 0.5, link=None, on_peer_tempo=None):
        """``link``: an object with a ``tempo`` attribute (default: a new enabled ``aalink.Link``)."""
        self.tolerance = tolerance
        self.on_peer_tempo = on_peer_tempo
        self._loop = self._thread = None
        if link is None:
            try:
                import asyncio

                from aalink import Link  # type: ignore[import-not-found]
            except ImportError:
                raise MomuError("--link needs aalink (pip install 'momu-live[link]', aalink==0.2.3)") from None
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="link-loop", daemon=True)
            self._thread.start()
            link = Link(bpm, self._loop)
            link.enabled = True
        self.link = link
        self.policy = TempoPolicyState()
        self._ours = float(link.tempo)  # the tempo this process last set (or found)
        self.peer_holds = False
        self.updates = 0

    def poll_peer(self) -> None:
        """Hand a tempo change made by another Link peer to ``on_peer_tempo``."""
        try:
            tempo = float(self.link.tempo)
        except Exception as exc:
            log.debug("link: %r", exc)
            return
        if abs(tempo - self._ours) > 0.01:
            self._ours = tempo
            self.peer_holds = True
            if self.on_peer_tempo is not None:
                self.on_peer_tempo(tempo)

    def beat(self, t_stream: float, bpm: float, downbeat: bool = True) -> None:
        self.poll_peer()
        if self.peer_holds or not (20.0 <= bpm <= 300.0):
            return
        send, self.policy = ableton_tempo_step(self.policy, Beat(0, t_stream, bpm, 0.0, downbeat), self.tolerance)
        if send is None or abs(send - self._ours) <= 0.01:
            return
        try:
            self.link.tempo = float(send)
            self._ours = float(send)
            self.updates += 1
        except Exception as exc:  # a Link hiccup must never stop the engine
            log.debug("link: %r", exc)

    def release(self) -> None:
        """The engine follows its input again: push its tempo to Link from the next bar."""
        self.peer_holds = False
        self.policy = TempoPolicyState()

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            self.link.enabled = False
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(1.0)
