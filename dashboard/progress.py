"""Long waits shown as a progress bar with their stage and counts (``core.progress`` reports), and a shared,
bounded in-memory cache that computes each value once for all sessions."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import streamlit as st

from core.progress import ProgressFn

T = TypeVar("T")
STAGES = {"reading": ("reading", "files"), "decoding": ("decoding", "images"),
          "statistics": ("colour statistics", "images"), "split": ("splitting", "")}


def stage_text(stage: str, done: int, total: int) -> str:
    """A report as one line: ``decoding 3,072 / 60,000 images``, ``evaluating unet 512 / 1,000 images``,
    ``reading 2,048 files…`` (total not known yet)."""
    words, unit = STAGES.get(stage, (stage, "images"))
    unit = f" {unit}" if unit else ""
    if not unit:
        return words
    if total > 0:
        return f"{words} {done:,} / {total:,}{unit}"
    return f"{words} {done:,}{unit}…" if done else f"{words}…"


class ProgressBar:
    """A progress bar that appears at the first report, shows ``title · stage done / total``, and goes at
    :meth:`close`. ``part(k, n)`` gives the callback of step k of n (the bar then covers all n steps)."""

    def __init__(self, title: str, container: Any = None, min_interval_s: float = 0.1) -> None:
        self.title = title
        self._container = container
        self._slot: Any = None
        self._last = 0.0
        self._min_interval_s = min_interval_s
        self.reports = 0

    def _show(self, fraction: float, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._min_interval_s:
            return
        self._last = now
        if self._slot is None:
            self._slot = (self._container or st).empty()
        self._slot.progress(min(1.0, max(0.0, fraction)), text=text)
        self.reports += 1

    def __call__(self, stage: str, done: int, total: int) -> None:
        self._show(done / total if total > 0 else 0.0, f"{self.title} · {stage_text(stage, done, total)}",
                   force=total > 0 and done >= total)

    def part(self, k: int, n: int, what: str) -> ProgressFn:
        """The callback for step ``k`` (from 1) of ``n``, named ``what``: ``title · model k/n (what) · stage``."""

        def inner(stage: str, done: int, total: int) -> None:
            share = done / total if total > 0 else 0.0
            self._show((k - 1 + share) / max(1, n),
                       f"{self.title} · {k}/{n} ({what}) · {stage_text(stage, done, total)}",
                       force=total > 0 and done >= total)

        return inner

    def close(self) -> None:
        """Remove the bar (nothing is left on the page once the wait is over)."""
        if self._slot is not None:
            self._slot.empty()
            self._slot = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SharedCache:
    """A least-recently-used map shared by every session; each key is computed once (one lock per key)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value of ``key``, computed by ``compute`` when missing (another session computing it is waited for)."""
        found = self.get(key)
        if found is not None:
            return found
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            found = self.get(key)
            if found is not None:
                return found
            value = compute()
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.max_entries:
                    old, _ = self._items.popitem(last=False)
                    self._key_locks.pop(old, None)
            return value

    def __len__(self) -> int:
        return len(self._items)
