"""Count the fault catalogue (tests/test_faults.py and tests/test_run_lock.py) from what pytest collects, and
with ``--run`` from what passes, and write the counts into docs/reliability.md.

    PYTHONPATH=. python tools/reliability_report.py           collect only: the cases per category and kind
    PYTHONPATH=. python tools/reliability_report.py --run     run them too: passes, and data lost (cases that failed)
    PYTHONPATH=. python tools/reliability_report.py --run --write    and replace the table in docs/reliability.md

A case's kind and category come from its test's name in test_faults.py (``test_refused_<category>_...``: a bad
input refused cleanly; ``test_survived_<category>_...``: a fault survived; ``test_exposure_...``: what the
dashboard opens to a network) and from :data:`RUN_LOCK` for test_run_lock.py. Every case asserts that nothing was
lost or changed on disk that should not be, so "data lost" counts the cases that did not pass.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("tests/test_faults.py", "tests/test_run_lock.py")
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- catalogue counts: begin -->", "<!-- catalogue counts: end -->"
KINDS = {"refused": "bad input refused cleanly", "survived": "fault survived", "exposure": "exposure checked"}
RUN_LOCK = {  # test_run_lock.py: test name -> (kind, category)
    "test_lock_is_exclusive_and_names_its_holder": ("survived", "runs"),
    "test_resume_of_a_live_run_is_refused_and_changes_nothing": ("refused", "runs"),
    "test_two_trainings_started_at_once_into_one_folder_one_runs": ("survived", "runs"),
    "test_a_failed_write_ends_the_run_as_failed_with_the_last_checkpoint_intact": ("survived", "runs"),
    "test_leftover_temporary_files_are_removed_at_the_next_start": ("survived", "runs"),
    "test_resume_continues_as_configured_and_extends_only_when_asked": ("refused", "settings"),
    "test_bad_settings_are_refused_before_anything_is_written": ("refused", "settings"),
    "test_out_naming_a_file_or_a_read_only_place_is_refused": ("refused", "names"),
}
NAME = re.compile(r"^test_(refused|survived|exposure)_([a-z]+)")


@dataclass(frozen=True)
class Case:
    """One collected test case: its id, kind, category, and (after a run) whether it passed."""

    id: str
    kind: str
    category: str
    passed: bool | None = None


def classify(file: str, test: str) -> tuple[str, str] | None:
    """(kind, category) of a test function, or None for a test that is not part of the catalogue."""
    if file.endswith("test_run_lock.py"):
        return RUN_LOCK.get(test)
    match = NAME.match(test)
    if not match:
        return None
    kind, category = match.groups()
    return kind, "exposure" if kind == "exposure" else category


def _param_ids(fn: object) -> list[str | None]:
    """The parameter ids pytest gives a test function's cases ([None] for a test without parameters)."""
    ids: list[str | None] = [None]
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], list(mark.args[1])
        given = mark.kwargs.get("ids")
        labels = list(given) if given is not None else [_auto_id(names, v, i) for i, v in enumerate(values)]
        ids = [label if old is None else f"{label}-{old}" for old in ids for label in labels]  # pytest: last mark first
    return ids


def _auto_id(names: str | Sequence[str], value: object, index: int) -> str:
    """pytest's id for an argument value: strings and numbers as they are, anything else by name and position
    (``names`` as pytest takes them: "a, b" or a sequence of names)."""
    arg_names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    values = value if len(arg_names) > 1 and isinstance(value, (tuple, list)) else (value,)
    parts = [str(v) if isinstance(v, (str, int, float)) and str(v).isprintable() else f"{arg_names[k]}{index}"
             for k, v in enumerate(values)]
    return "-".join(parts)


def collect() -> list[Case]:
    """Every case of the catalogue: the test functions of :data:`FILES` and their parameter lists."""
    import importlib

    cases = []
    for file in FILES:
        module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
        for name, fn in vars(module).items():
            if not (name.startswith("test_") and callable(fn)) or (where := classify(file, name)) is None:
                continue
            cases += [Case(f"{file}::{name}" + ("" if i is None else f"[{i}]"), *where) for i in _param_ids(fn)]
    return cases


def run(cases: list[Case]) -> list[Case]:
    """The cases with their outcomes, from one pytest run of the catalogue's files."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=-q --timeout=900", "-p", "no:cacheprovider",
                        f"--junitxml={report}", *FILES], cwd=ROOT)
        passed = set()
        for case in ET.parse(report).getroot().iter("testcase"):
            if not any(child.tag in ("failure", "error", "skipped") for child in case):
                module = case.get("classname", "").replace(".", "/") + ".py"
                passed.add(f"{module}::{case.get('name')}")
    return [Case(c.id, c.kind, c.category, c.id in passed) for c in cases]


def table(cases: list[Case]) -> str:
    """The counts as a markdown block: cases (and passes) per category and kind, then the three totals."""
    ran = all(c.passed is not None for c in cases)
    counts = Counter((c.category, c.kind) for c in cases)
    passes = Counter((c.category, c.kind) for c in cases if c.passed)
    lines = ["| category | kind | cases | passed |", "| --- | --- | ---: | ---: |"]
    for (category, kind), n in sorted(counts.items()):
        lines.append(f"| {category} | {KINDS[kind]} | {n} | {passes[(category, kind)] if ran else '—'} |")
    survived = sum(1 for c in cases if c.kind == "survived" and c.passed)
    refused = sum(1 for c in cases if c.kind == "refused" and c.passed)
    lost = sum(1 for c in cases if c.passed is False)
    total = f"{len(cases)} cases"
    if ran:
        lines += ["", f"**{total}: {survived} faults survived, {refused} bad inputs refused cleanly, {lost} cases "
                      f"with data lost (failed).**"]
    else:
        lines += ["", f"**{total} (collected, not run).**"]
    return "\n".join(lines)


def counts_in_doc(text: str) -> dict[tuple[str, str], int]:
    """The (category, kind) -> cases column of the table in docs/reliability.md."""
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    names = {v: k for k, v in KINDS.items()}
    out = {}
    for row in re.findall(r"^\| (\w+) \| ([a-z ]+) \| (\d+) \|", block, flags=re.M):
        out[(row[0], names[row[1]])] = int(row[2])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="store_true", help="run the catalogue, counting passes")
    p.add_argument("--write", action="store_true", help="replace the counts in docs/reliability.md")
    args = p.parse_args(argv)
    cases = collect()
    if args.run:
        cases = run(cases)
    block = table(cases)
    print(block)
    if args.write:
        text = DOC.read_text()
        head, rest = text.split(BEGIN, 1)
        DOC.write_text(head + BEGIN + "\n" + block + "\n" + END + rest.split(END, 1)[1])
    return 1 if any(c.passed is False for c in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
