"""Import rules, checked on the source with ``ast``: ``core`` is free of the user interface (no streamlit, plotly
or altair), and the dashboard's pages neither build networks nor convert colour themselves (that lives in core)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

UI_PACKAGES = ("streamlit", "plotly", "altair")
PAGE_FORBIDDEN_MODULES = ("core.networks", "core.colour", "torch.nn")
NETWORK_CONSTRUCTORS = ("UNet", "PatchDiscriminator", "Classifier", "VGGFeatures", "build_network")



def _imported_modules(tree: ast.AST) -> list[tuple[str, int]]:
    """Every module an ``import`` or ``from ... import`` names, anywhere in the file (functions included), with
    its line; ``from a import b`` yields both ``a`` and ``a.b``, since ``b`` may be a submodule."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno))
            out.extend((f"{node.module}.{alias.name}", node.lineno) for alias in node.names if alias.name != "*")
    return out


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def ui_imports(source: str) -> list[str]:
    """``module (line N)`` for each import of streamlit or plotly in a file's source."""
    return [f"{m} (line {n})" for m, n in _imported_modules(ast.parse(source)) if _within(m, UI_PACKAGES)]


def page_violations(source: str) -> list[str]:
    """What a dashboard page must not do: import core.networks, core.colour or torch.nn (also as ``torch.nn.X``),
    or call a network constructor."""
    tree = ast.parse(source)
    found = [f"imports {m} (line {n})" for m, n in _imported_modules(tree) if _within(m, PAGE_FORBIDDEN_MODULES)]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr == "nn" and isinstance(node.value, ast.Name)
                and node.value.id == "torch"):
            found.append(f"uses torch.nn (line {node.lineno})")
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name in NETWORK_CONSTRUCTORS:
                found.append(f"calls {name} (line {node.lineno})")
    return found


def _core_files() -> list[Path]:
    return sorted((ROOT / "core").rglob("*.py"))


def _page_files() -> list[Path]:
    return sorted([*(ROOT / "dashboard").glob("*.py"), *(ROOT / "dashboard" / "pages").glob("*.py")])


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _core_offenders() -> dict[str, list[str]]:
    found = {_rel(p): ui_imports(p.read_text(encoding="utf-8")) for p in _core_files()}
    return {k: v for k, v in found.items() if v}


def test_the_rules_see_the_files() -> None:
    core = {_rel(p) for p in _core_files()}
    assert {"core/train.py", "core/figures.py", "core/jobs.py"} <= core and any(c.startswith("core/methods/")
                                                                                 for c in core)
    pages = {_rel(p) for p in _page_files()}
    assert {"dashboard/Home.py", "dashboard/common.py"} <= pages and any(p.startswith("dashboard/pages/")
                                                                         for p in pages)


def test_core_imports_no_ui_package() -> None:
    found = _core_offenders()
    assert not found, f"core must not import {' or '.join(UI_PACKAGES)}; move the figure into the dashboard: {found}"


@pytest.mark.parametrize("page", _page_files(), ids=_rel)
def test_pages_build_no_networks_and_convert_no_colour(page: Path) -> None:
    found = page_violations(page.read_text(encoding="utf-8"))
    assert not found, f"{_rel(page)}: {found}; put the work in a core function and call that"


# --- the checkers themselves ----------------------------------------------------------------------------------
@pytest.mark.parametrize("source", [
    "import streamlit as st",
    "import plotly.express as px",
    "from plotly import graph_objects as go",
    "from streamlit.errors import StreamlitAPIException",
    "def chart():\n    import plotly.graph_objects as go\n    return go.Figure()",
])
def test_ui_imports_are_found(source: str) -> None:
    assert ui_imports(source)


@pytest.mark.parametrize("source", ["import torch", "import pandas as pd", "from core.figures import image_grid",
                                    "import plotlyish", "from . import streamlit"])
def test_other_imports_pass(source: str) -> None:
    assert not ui_imports(source)


@pytest.mark.parametrize("source", [
    "from core.networks import UNet",
    "import core.networks",
    "from core import networks",
    "from core import colour",
    "from core.colour import uint8_to_model",
    "import torch.nn as nn",
    "from torch import nn",
    "from torch.nn import functional",
    "import torch\nlayer = torch.nn.Conv2d(1, 2, 3)",
    "net = UNet(width=8)",
    "from core import whatever\nnet = whatever.PatchDiscriminator()",
    "model = Classifier(10)",
    "def load():\n    from core.networks import build_network\n    return build_network('unet')",
])
def test_page_violations_are_found(source: str) -> None:
    assert page_violations(source)


@pytest.mark.parametrize("source", [
    "import torch\nx = torch.zeros(3)",
    "from core.inference import load_colorizer\nmodel = load_colorizer('m.pt')",
    "from core.explore import comparison_strip",
    "from core.compare import render_rows",
    "import streamlit as st\nst.image([])",
])
def test_page_code_that_passes(source: str) -> None:
    assert not page_violations(source)
