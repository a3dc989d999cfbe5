"""momu-live: live, beat-synchronous motion<->music generation (MoMu-Diffusion)."""

__version__ = "0.1.0"


class MomuError(Exception):
    """A user-facing error: the message names the problem and what to do about it.

    The CLI prints it without a traceback and exits with status 2.
    """
