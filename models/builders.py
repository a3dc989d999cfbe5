"""Config -> objects.  The only place models are constructed from configs.

Each family adds ``build_<family>(cfg)`` and ``debug_<family>()`` (a tiny model for tests) here.
Keep sections per family; edit only your own section.
"""
from __future__ import annotations
