"""A small OSC monitor: a real UDP receiver that keeps every message (tests, benchmarks, debugging).

Uses python-osc for parsing (imported here, not by the engine core).
"""
from __future__ import annotations

import socket
import threading
import time

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class OscMonitor:
    """Collects every message arriving on a real UDP socket: ``messages`` = [(arrival monotonic, address, args)]."""

    def __init__(self, port: int | None = None, keep: bool = True, on_pose=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.sock.bind(("127.0.0.1", port or 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str, list]] = []
        self.keep = keep  # False: only count per address (long benchmarks stay flat in memory)
        self.counts: dict[str, int] = {}
        self.on_pose = on_pose  # f(frame index, arrival monotonic) for each /momu/pose/frame
        self.bad = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _walk(self, d: bytes, now: float):
        if OscBundle.dgram_is_bundle(d):
            for c in OscBundle(d):
                self._walk(c.dgram, now)
        else:
            m = OscMessage(d)
            self.counts[m.address] = self.counts.get(m.address, 0) + 1
            if self.on_pose is not None and m.address == "/momu/pose/frame" and len(m.params) > 1:
                self.on_pose(m.params[1], now)
            if self.keep:
                self.messages.append((now, m.address, list(m.params)))

    def _run(self):
        while not self._stop.is_set():
            try:
                d, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                self._walk(d, time.monotonic())
            except Exception:
                self.bad += 1

    def of(self, address: str, since: float = 0.0):
        return [(t, a) for (t, ad, a) in list(self.messages) if ad == address and t >= since]

    def close(self):
        self._stop.set()
        self._t.join(1.0)
        self.sock.close()


def osc_message(address: str, args) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        if isinstance(a, int):
            b.add_arg(a, "i")
        elif isinstance(a, float):
            b.add_arg(a, "f")
        else:
            b.add_arg(str(a), "s")
    return b.build().dgram
