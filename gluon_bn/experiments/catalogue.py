"""Every exercise ``gluon-bn exercise`` runs: the chapter's exercises, precise BN, and the chapter's claims."""

from __future__ import annotations

from .claims import CLAIMS
from .exercises import CHAPTER_EXERCISES, Exercise

__all__ = ["EXERCISES"]

#: By name, in the order ``gluon-bn exercise --list`` shows them.
EXERCISES: dict[str, Exercise] = {**CHAPTER_EXERCISES, **CLAIMS}
