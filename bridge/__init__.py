"""OSC, MIDI and audio bridges (installed as ``momu_live.bridge``).

Message building (pure functions, byte-tested) is kept apart from transport and routing.
"""
