"""Every exercise ``gluon-bn exercise`` runs: the chapter's exercises and precise BN."""

from __future__ import annotations

from .exercises import CHAPTER_EXERCISES, Exercise

__all__ = ["EXERCISES"]

#: By name, in the order ``gluon-bn exercise --list`` shows them.
EXERCISES: dict[str, Exercise] = dict(CHAPTER_EXERCISES)
