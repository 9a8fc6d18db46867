"""What a dashboard visitor may name: data-source paths under the allowed roots, and file or folder names that
stay inside their folder.

The dashboard starts processes and reads files for whoever reaches it, so a path typed into it must lie under
one of the *allowed roots*: the project folder, the cache folder (``COLORIZE_CACHE_DIR``), the folder of
``COLORIZE_CIFAR10_ROOT`` and of ``COLORIZE_DATA`` when set, and every folder of ``COLORIZE_DATA_ROOTS``
(separated by ``os.pathsep``). Links are resolved first, so a link inside a root that points outside it is
refused too. Command lines are not restricted: whoever runs them already has the shell.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DATA_ROOTS_ENV = "COLORIZE_DATA_ROOTS"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 (no spaces or '/')"


class AccessError(ValueError):
    """A path or name that is not allowed; the message says which and what is."""


def allowed_roots() -> list[Path]:
    """The folders data sources typed into the dashboard may lie under (resolved, without duplicates)."""
    from core.sources import PROJECT_ROOT, default_cache_dir

    roots = [PROJECT_ROOT, default_cache_dir()]
    for env in ("COLORIZE_CIFAR10_ROOT", "COLORIZE_DATA"):
        value = os.environ.get(env, "").strip()
        if value and value.lower() not in ("sample", "cifar10", "cifar-10", "default"):
            roots.append(Path(value))
    roots += [Path(p) for p in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    out: list[Path] = []
    for root in roots:
        resolved = root.expanduser().resolve()
        if resolved not in out:
            out.append(resolved)
    return out


def check_source(source: str) -> str:
    """``source`` unchanged when it names a bundled source or a path under an allowed root; else AccessError."""
    from core.sources import resolve_source

    text = str(source).strip()
    resolved = resolve_source(text)
    if resolved in ("sample", "cifar10"):
        return text
    path = Path(resolved)
    roots = allowed_roots()
    if any(path == root or path.is_relative_to(root) for root in roots):
        return text
    raise AccessError(f"{text} is outside the folders the dashboard may read ({', '.join(map(str, roots))}); "
                      f"put the data under one of them, or start the dashboard with {DATA_ROOTS_ENV} naming its "
                      "folder")


def check_name(name: str, what: str = "name") -> str:
    """``name`` (stripped) when it is a plain file or folder name (:data:`NAME_RULE`); else AccessError."""
    text = str(name).strip()
    if not text:
        raise AccessError(f"{what} is empty: use {NAME_RULE}")
    if not NAME_PATTERN.match(text):
        raise AccessError(f"{what} {text!r} is not allowed: use {NAME_RULE}")
    return text


def inside(folder: str | Path, name: str, what: str = "name") -> Path:
    """``folder / name`` for a checked ``name`` (see :func:`check_name`): a path that cannot leave ``folder``."""
    return Path(folder) / check_name(name, what)
