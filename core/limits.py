"""Caps on what reading a data source or a picture may cost, each a setting read from the environment:

    COLORIZE_MAX_MEMBER_MB    decompressed size of one archive member, in MB (10^6 bytes); default 100
    COLORIZE_MAX_ARCHIVE_MB   decompressed size of a whole archive, in MB; default 8192
    COLORIZE_MAX_PIXELS       decoded pixels of one image or uploaded picture; default 40,000,000

Archives past a size cap are refused with one line naming the member and the setting; images past the pixel cap
are skipped in a data set (counted with the unreadable files) and refused on upload, checked from the header
before any pixel is decoded. A value that is not a positive number is refused with a ConfigError naming it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from core.config import ConfigError

MB = 1_000_000


@dataclass(frozen=True)
class Limit:
    """One cap: its environment variable, default, and how many bytes (or pixels) one unit of it is."""

    env: str
    default: float
    unit: str
    scale: int

    def value(self) -> int:
        """The cap in bytes (or pixels): the environment's value, else the default; ConfigError if malformed."""
        text = os.environ.get(self.env, "").strip().replace("_", "")
        if not text:
            return int(self.default * self.scale)
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            raise ConfigError(f"{self.env} must be a positive number of {self.unit}, not {text!r}; fix or unset it "
                              f"(default {self.default:g})")
        return max(1, int(number * self.scale))


MAX_MEMBER = Limit("COLORIZE_MAX_MEMBER_MB", 100, "MB", MB)
MAX_ARCHIVE = Limit("COLORIZE_MAX_ARCHIVE_MB", 8192, "MB", MB)
MAX_PIXELS = Limit("COLORIZE_MAX_PIXELS", 40_000_000, "pixels", 1)


def max_member_bytes() -> int:
    """Decompressed bytes one archive member may hold (``COLORIZE_MAX_MEMBER_MB``)."""
    return MAX_MEMBER.value()


def max_archive_bytes() -> int:
    """Decompressed bytes a whole archive may hold (``COLORIZE_MAX_ARCHIVE_MB``)."""
    return MAX_ARCHIVE.value()


def max_pixels() -> int:
    """Pixels one image may decode to (``COLORIZE_MAX_PIXELS``)."""
    return MAX_PIXELS.value()


def check_all() -> None:
    """Read every cap once, so a malformed setting is reported before any work starts."""
    for limit in (MAX_MEMBER, MAX_ARCHIVE, MAX_PIXELS):
        limit.value()


def too_many_pixels(width: int, height: int, cap: int | None = None) -> str | None:
    """Why a ``width`` x ``height`` image is refused (one phrase), or None when it is within the pixel cap."""
    cap = max_pixels() if cap is None else cap
    if width * height <= cap:
        return None
    return (f"{width}x{height} is {width * height / 1e6:.1f} megapixels, more than the {cap / 1e6:g} allowed "
            f"({MAX_PIXELS.env})")


def too_large(what: str, size: int, limit: Limit) -> str:
    """The message for ``what`` decompressing past ``limit`` (``size`` bytes, or more)."""
    cap = limit.value()
    return (f"{what} decompresses to {size / MB:.1f} MB or more, past the {cap / MB:g} MB allowed ({limit.env}); "
            f"raise {limit.env} if the archive is trusted, or use a folder of its images")
