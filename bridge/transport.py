"""UDP transport for OSC: a non-blocking sender and a threaded, garbage-proof server.

``UdpSender.send`` never blocks and never raises: a full socket buffer, an unreachable peer
(ICMP port unreachable surfaces as ``ConnectionRefusedError`` on the next send) or a bad host are
counted in ``errors`` and logged at most once per ``log_every`` seconds.

``OscServer`` reads datagrams on one thread and hands decoded messages to ``handler(address, args,
sender)`` on a second thread through a bounded queue.  Malformed packets, handler exceptions and
queue overflows are counted (``stats()``) and logged rate-limited; none of them stops either loop.
Memory is bounded by ``queue_size`` decoded packets.  Listens on 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import Callable, Iterable

from momu_live import MomuError
from momu_live.bridge.osc import Message, OscDecodeError, decode_packet, encode_message, flatten, pack_bundles

log = logging.getLogger(__name__)
MAX_DATAGRAM = 65536
MAX_UDP_PAYLOAD = 65507  # 65535 - 8 (UDP) - 20 (IPv4)
NETWORK_MAX_BYTES = 1472  # one 1500-byte Ethernet MTU: no IP fragmentation on a LAN
# Loopback carries 64 KiB datagrams; 8 KiB holds a whole frame of every style (a TouchDesigner
# ``joints`` frame, 55 one-float messages, is ~2.3 KB; a 33-joint one ~4 KB) and is what the common
# receivers read in one go (python-osc's socketserver reads 8192 bytes per datagram; Pd, Max,
# TouchDesigner and presets/blender_receiver.py read more).
LOOPBACK_MAX_BYTES = 8192


def auto_max_bytes(ip: str) -> int:
    """Bundle size limit for destination ``ip``: ``LOOPBACK_MAX_BYTES`` on 127.0.0.0/8, else one MTU."""
    import ipaddress

    try:
        return LOOPBACK_MAX_BYTES if ipaddress.ip_address(ip).is_loopback else NETWORK_MAX_BYTES
    except ValueError:
        return NETWORK_MAX_BYTES


def resolve_max_bytes(max_bytes, ip: str) -> int:
    """``"auto"``/``None``/``0`` -> ``auto_max_bytes(ip)``; an explicit size is kept (64-65507)."""
    if max_bytes is None or max_bytes == "auto" or max_bytes == 0:
        return auto_max_bytes(ip)
    try:
        n = int(max_bytes)
    except (TypeError, ValueError):
        raise MomuError(f"max_bytes {max_bytes!r}: give 'auto' or a datagram size 64-{MAX_UDP_PAYLOAD}") from None
    if not (64 <= n <= MAX_UDP_PAYLOAD):
        raise MomuError(f"max_bytes {n} out of range; give 'auto' or 64-{MAX_UDP_PAYLOAD}")
    return n

Handler = Callable[[str, list, tuple], None]


class RateLimitedLog:
    """Log a warning at most once per ``every`` seconds per key, with the count suppressed meanwhile."""

    def __init__(self, logger: logging.Logger, every: float = 5.0):
        self.logger, self.every = logger, every
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, key: str, msg: str, *args) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.every:
            n = self._suppressed.pop(key, 0)
            self.logger.warning(msg + (f" (+{n} similar suppressed)" if n else ""), *args)
            self._last[key] = now
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1


class UdpSender:
    """Non-blocking UDP sender of OSC packets to ``host:port`` (never raises on send failure).

    ``max_bytes`` bounds each datagram (``send_messages`` packs bundles up to it): ``"auto"`` (default)
    is ``LOOPBACK_MAX_BYTES`` for a loopback destination, so one frame's messages travel in one
    datagram, and ``NETWORK_MAX_BYTES`` (one Ethernet MTU) for any other; a number is used as given.
    """

    def __init__(self, host: str, port: int, max_bytes: int | str | None = "auto", log_every: float = 5.0):
        if not (0 < int(port) < 65536):
            raise MomuError(f"OSC port {port} out of range; use 1-65535")
        try:
            info = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise MomuError(f"cannot resolve OSC host {host!r} ({exc}); use an IP address or a known host name") from None
        self.addr = info[0][4]
        self.host, self.port = host, int(port)
        self.max_bytes = resolve_max_bytes(max_bytes, self.addr[0])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.setblocking(False)
        try:  # a connected UDP socket hears ICMP "port unreachable" (ECONNREFUSED on a later send)
            self.sock.connect(self.addr)
            self._connected = True
        except OSError:
            self._connected = False
        self.sent = self.errors = self.bytes = self.refused = 0
        self.last_refused = -1e9  # monotonic time of the last "connection refused" (nobody listens)
        self._log = RateLimitedLog(log, log_every)
        self._closed = False

    def send(self, packet: bytes) -> bool:
        """Send one datagram; False (and ``errors += 1``) when it could not go out."""
        if self._closed:
            self.errors += 1
            return False
        try:
            if self._connected:
                self.sock.send(packet)
            else:
                self.sock.sendto(packet, self.addr)
        except OSError as exc:  # EAGAIN (buffer full), ECONNREFUSED (peer gone), EMSGSIZE, ...
            self.errors += 1
            if isinstance(exc, ConnectionRefusedError):
                self.refused += 1
                self.last_refused = time.monotonic()
            self._log.warn(type(exc).__name__, "OSC send to %s:%d failed: %s", self.host, self.port, exc)
            return False
        self.sent += 1
        self.bytes += len(packet)
        return True

    def send_message(self, address: str, args: Iterable = ()) -> bool:
        return self.send(encode_message(address, list(args)))

    def send_messages(self, messages: Iterable, bundle: bool = True) -> int:
        """Send ``(address, args)`` messages, packed into bundles of <= ``max_bytes`` (or one per datagram).

        Messages of one call that fit ``max_bytes`` together go out as one bundle, one datagram (the
        router sends one event's messages per call: a pose frame arrives whole or not at all).
        Returns the number of datagrams that went out.
        """
        if bundle:
            packets = pack_bundles(messages, self.max_bytes)
        else:
            packets = [encode_message(a, list(x)) for a, x in messages]
        return sum(self.send(p) for p in packets)

    def unreachable(self, within_s: float = 3.0) -> bool:
        """True when the peer refused a datagram in the last ``within_s`` seconds (no receiver on the port)."""
        return time.monotonic() - self.last_refused <= within_s

    def stats(self) -> dict:
        return {"sent": self.sent, "errors": self.errors, "bytes": self.bytes, "refused": self.refused}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OscServer:
    """OSC over UDP on its own threads: ``handler(address, args, sender_addr)`` per decoded message.

    ``port=0`` picks a free port (read ``server.port``).  With ``handler=None`` messages are kept in
    the queue for ``get()``.  ``drop_oldest`` (default) keeps the newest ``queue_size`` packets under a
    flood, else the newest are dropped; both are counted in ``dropped``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, handler: Handler | None = None,
                 queue_size: int = 1024, drop_oldest: bool = True, log_every: float = 5.0, rcvbuf: int = 1 << 20):
        self.handler = handler
        self.drop_oldest = drop_oldest
        self.packets = self.messages = self.malformed = self.dropped = self.handler_errors = 0
        self._q: queue.Queue = queue.Queue(maxsize=max(1, int(queue_size)))
        self._log = RateLimitedLog(log, log_every)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            self.sock.bind((host, int(port)))
        except OSError as exc:
            self.sock.close()
            raise MomuError(f"cannot listen for OSC on {host}:{port} ({exc}); pick another port") from None
        self.host, self.port = self.sock.getsockname()[:2]
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._rx = threading.Thread(target=self._recv_loop, name=f"osc-rx-{self.port}", daemon=True)
        self._rx.start()
        self._tx = None
        if handler is not None:
            self._tx = threading.Thread(target=self._dispatch_loop, name=f"osc-dispatch-{self.port}", daemon=True)
            self._tx.start()

    # receive thread: decode, count, enqueue
    def _recv_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(MAX_DATAGRAM)
            except socket.timeout:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    break
                self._log.warn("recv", "OSC receive error on port %d: %s", self.port, exc)
                time.sleep(0.01)
                continue
            self.packets += 1
            try:
                msgs = flatten(decode_packet(data))
            except OscDecodeError as exc:
                self.malformed += 1
                self._log.warn("malformed", "malformed OSC packet from %s (%d bytes): %s", sender, len(data), exc)
                continue
            self.messages += len(msgs)
            self._put((msgs, sender))

    def _put(self, item) -> None:
        while True:
            try:
                self._q.put_nowait(item)
                return
            except queue.Full:
                self.dropped += 1
                self._log.warn("full", "OSC queue on port %d full; dropping packets", self.port)
                if not self.drop_oldest:
                    return
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    pass

    # dispatch thread: call the handler, never die
    def _dispatch_loop(self) -> None:
        while not self._stop.is_set() or not self._q.empty():
            try:
                msgs, sender = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            for m in msgs:
                try:
                    self.handler(m.address, m.args, sender)
                except Exception as exc:  # a handler bug must not stop the server
                    self.handler_errors += 1
                    self._log.warn("handler", "OSC handler failed on %s: %r", m.address, exc)

    def get(self, timeout: float | None = None) -> tuple[list[Message], tuple] | None:
        """Next ``(messages, sender)`` when there is no handler; None after ``timeout`` seconds."""
        if self.handler is not None:
            raise RuntimeError("OscServer.get() is for servers without a handler")
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def qsize(self) -> int:
        return self._q.qsize()

    def stats(self) -> dict:
        return {"packets": self.packets, "messages": self.messages, "malformed": self.malformed,
                "dropped": self.dropped, "handler_errors": self.handler_errors, "queued": self._q.qsize()}

    def close(self, timeout: float = 2.0) -> None:
        """Stop both threads (queued messages are still dispatched, up to ``timeout``) and close the socket."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._rx.join(timeout)
        if self._tx is not None:
            self._tx.join(timeout)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
