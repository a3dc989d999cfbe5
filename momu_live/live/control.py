"""The engine's control input: the grammar's control table bound to engine actions, on the bridge's OSC server.

Three parts, each with one owner:

- the grammar (addresses, argument types, ranges, docs) is ``momu_live.bridge.grammar.CONTROLS``;
- the transport is ``momu_live.bridge.transport.OscServer`` (UDP, bounded queue, malformed packets
  counted and dropped, 127.0.0.1 unless told otherwise);
- this module binds the two: ``ControlBinding`` maps every grammar *target* (``hop``, ``mode``,
  ``model``...) to one engine action and refuses to build when the grammar has a target without an
  action (or the other way round), so adding a control is one table row plus, for a new target, one
  action.  ``ControlInput`` owns the server and counts what it could not use.

Control messages (generated from the grammar)::

"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from momu_live.bridge.grammar import (CONTROL_SPECS, CONTROL_TARGETS, Control, GrammarError, controls_text,
                                      parse_control)
from momu_live.bridge.transport import OscServer, RateLimitedLog

__doc__ += controls_text() + "\n"

log = logging.getLogger(__name__)

Action = Callable[[Any, Control], None]
RawHandler = Callable[[str, list], None]


class ControlBinding:
    """Grammar targets -> actions: ``actions[target](value, control)`` for every validated control message.

    ``inputs`` maps addresses that are data rather than controls (``/momu/pose/frame`` for ``--source
    osc``) to raw handlers ``f(address, args)``.  Counters: ``applied``, ``invalid`` (a known address
    with a bad argument), ``unknown`` (no such address), ``errors`` (an action raised).
    """

    def __init__(self, actions: Mapping[str, Action], inputs: Mapping[str, RawHandler] | None = None):
        missing, extra = CONTROL_TARGETS - set(actions), set(actions) - CONTROL_TARGETS
        if missing or extra:
            raise ValueError(f"control binding does not match the grammar: missing {sorted(missing)}, "
                             f"not in the grammar {sorted(extra)}")
        self.actions = dict(actions)
        self.inputs = dict(inputs or {})
        self.applied = self.invalid = self.unknown = self.errors = 0
        self._log = RateLimitedLog(log)

    def handle(self, address: str, args: list, sender: Any = None) -> bool:
        """Apply one message; True when it was used.  Never raises (a live loop must not die on input)."""
        raw = self.inputs.get(address)
        if raw is not None:
            try:
                raw(address, list(args))
                return True
            except Exception as exc:
                self.errors += 1
                self._log.warn("input", "OSC input %s failed: %r", address, exc)
                return False
        try:
            c = parse_control(address, list(args))
        except GrammarError as exc:
            if address in CONTROL_SPECS:
                self.invalid += 1
            else:
                self.unknown += 1
            self._log.warn("grammar", "control ignored: %s", exc)
            return False
        try:
            self.actions[c.spec.target](c.value, c)
        except Exception as exc:
            self.errors += 1
            self._log.warn("action", "control %s %r failed: %r", address, args, exc)
            return False
        self.applied += 1
        return True

    def counters(self) -> dict:
        return {"applied": self.applied, "invalid": self.invalid, "unknown": self.unknown, "errors": self.errors}


class ControlInput:
    """The control port: a bridge ``OscServer`` whose messages go to a ``ControlBinding``.

    Opened before the engine exists (a taken port fails early, before devices open); the engine
    calls ``bind`` with its binding.  Messages that arrive before that are counted as ``unbound``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9001, queue_size: int = 4096):
        self.binding: ControlBinding | None = None
        self.unbound = 0
        self.server = OscServer(host, port, self._handle, queue_size=queue_size)
        self.host, self.port = self.server.host, self.server.port

    def bind(self, binding: ControlBinding) -> None:
        self.binding = binding

    def _handle(self, address: str, args: list, sender: Any) -> None:
        b = self.binding
        if b is None:
            self.unbound += 1
            return
        b.handle(address, args, sender)

    def counters(self) -> dict:
        s = self.server.stats()
        out = {"packets": s["packets"], "messages": s["messages"], "malformed": s["malformed"],
               "dropped": s["dropped"], "unbound": self.unbound}
        out.update(self.binding.counters() if self.binding is not None else
                   {"applied": 0, "invalid": 0, "unknown": 0, "errors": 0})
        return out

    def close(self) -> None:
        self.server.close()
