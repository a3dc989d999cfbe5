"""The engine's OSC input: control messages and external pose frames on one UDP socket.

Listens on 127.0.0.1 unless told otherwise.  Every datagram is decoded in a ``try``: malformed or
unknown packets are counted and dropped, so a flood of garbage never stops the stream; a bounded
per-second budget (``max_rate``) sheds excess load instead of starving the engine's other threads.

Control grammar (``/momu/<object>/set/<property> value``), handled by the engine:

| address | args | effect |
| --- | --- | --- |
| ``/momu/engine/set/hop`` | float s | scheduler hop |
| ``/momu/engine/set/window`` | float s | analysis window |
| ``/momu/tempo/set/bpm`` | float | force the tracked tempo (tracking continues from it) |
| ``/momu/output/set/gain`` | float | gain of generated audio |
| ``/momu/engine/stop`` | - | stop the engine (as SIGTERM) |
| ``/momu/pose/frame`` | int person, int frame, float time, J*3 floats | pose input (``--source osc``) |
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


def decode(data: bytes) -> list[tuple[str, list]]:
    """OSC packet (message or bundle, nested) -> [(address, args)]; raises ``ValueError`` when malformed.

    Uses the bridge's strict decoder (``momu_live.bridge.osc``: bounded nesting, padding checks).
    """
    from momu_live.bridge.osc import decode_packet, flatten

    return [(m.address, list(m.args)) for m in flatten(decode_packet(data))]


class ControlServer:
    """UDP OSC server on its own thread: ``handlers`` maps an address to ``f(address, args)``.

    ``fallback(address, args) -> bool`` sees addresses without a handler (True = handled).
    Counters: ``packets``, ``messages``, ``malformed``, ``unknown``, ``shed``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9001, handlers: dict | None = None,
                 fallback: Callable[[str, list], bool] | None = None, max_rate: float = 20000.0):
        self.handlers: dict[str, Callable[[str, list], None]] = dict(handlers or {})
        self.fallback = fallback
        self.max_rate = max_rate
        self.packets = self.messages = self.malformed = self.unknown = self.shed = self.errors = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            from momu_live import MomuError

            raise MomuError(f"cannot listen for OSC control on {host}:{port} ({exc}); pick another --control-port") from None
        self.host, self.port = self._sock.getsockname()[:2]
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="osc-control", daemon=True)

    def start(self) -> "ControlServer":
        self._thread.start()
        return self

    def _run(self) -> None:
        window_start, count = time.monotonic(), 0
        while not self._stop.is_set():
            try:
                data, _ = self._sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                continue
            self.packets += 1
            now = time.monotonic()
            if now - window_start >= 1.0:
                window_start, count = now, 0
            count += 1
            if count > self.max_rate:  # shed load beyond the budget (counted)
                self.shed += 1
                continue
            try:
                msgs = decode(data)
            except Exception:
                self.malformed += 1
                continue
            for address, args in msgs:
                self.messages += 1
                try:
                    h = self.handlers.get(address)
                    if h is not None:
                        h(address, args)
                    elif not (self.fallback and self.fallback(address, args)):
                        self.unknown += 1
                except Exception as exc:  # a bad argument must not kill the server
                    self.errors += 1
                    log.debug("control %s %r failed: %r", address, args, exc)

    def counters(self) -> dict:
        return {"packets": self.packets, "messages": self.messages, "malformed": self.malformed,
                "unknown": self.unknown, "shed": self.shed, "errors": self.errors}

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self._sock.close()
