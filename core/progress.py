"""Progress reports of long work: a callback ``(stage, done, total)`` that core functions call as they go.

``stage`` names what is being done (``decoding``, ``statistics``, ``evaluating unet``), ``done`` and ``total`` count
its items (images, models); ``total`` is 0 while unknown (an archive still being read). Callers show the reports
(the dashboard as a progress bar with the stage text, the command line through tqdm); core only calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

ProgressFn: TypeAlias = Callable[[str, int, int], None]


def report(progress: object, stage: str, done: int, total: int) -> None:
    """Call ``progress(stage, done, total)`` when ``progress`` is a callback (a bool or None is ignored)."""
    if callable(progress):
        progress(stage, int(done), int(total))


def silent(stage: str, done: int, total: int) -> None:
    """A callback that ignores every report (for work inside a cached function, which must draw nothing)."""


class Recorder:
    """A callback that keeps every report, for tests and for summaries of what a call did."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.calls.append((stage, done, total))

    def stages(self) -> list[str]:
        """The stages reported, each once, in the order they first appeared."""
        return list(dict.fromkeys(stage for stage, _, _ in self.calls))


__all__ = ["ProgressFn", "Recorder", "report", "silent"]
