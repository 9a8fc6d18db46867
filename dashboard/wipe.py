"""A before/after wipe as one self-contained HTML page (both pictures inline, no request leaves it): the visitor
drags across the picture, or the slider under it, to move the line between the two."""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image


def data_uri(image: np.ndarray, quality: int = 92) -> str:
    """A uint8 (H, W, 3) picture as an inline ``data:image/jpeg`` address."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def wipe_html(left: np.ndarray, right: np.ndarray, left_label: str, right_label: str, start: float = 50.0) -> str:
    """The page: ``left`` shown left of the line, ``right`` right of it, the line at ``start`` percent of the
    width; the pictures must be of one size."""
    if left.shape != right.shape:
        raise ValueError(f"pictures differ in size: {left.shape} and {right.shape}")
    h, w = left.shape[:2]
    start = min(100.0, max(0.0, float(start)))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><style>
html, body {{ margin: 0; padding: 0; background: transparent; font-family: sans-serif; }}
.wipe {{ position: relative; width: 100%; aspect-ratio: {w} / {h}; overflow: hidden; user-select: none;
        touch-action: none; cursor: ew-resize; --pos: {start}%; }}
.wipe img {{ position: absolute; inset: 0; width: 100%; height: 100%; display: block; pointer-events: none; }}
.wipe .left {{ clip-path: inset(0 calc(100% - var(--pos)) 0 0); }}
.wipe .line {{ position: absolute; top: 0; bottom: 0; left: var(--pos); width: 2px; margin-left: -1px;
              background: #fff; box-shadow: 0 0 4px rgba(0, 0, 0, 0.7); }}
.label {{ position: absolute; top: 8px; padding: 2px 8px; border-radius: 4px; font-size: 13px;
         background: rgba(0, 0, 0, 0.55); color: #fff; }}
input[type=range] {{ width: 100%; margin: 8px 0 2px; accent-color: #d9480f; }}
</style></head><body>
<div class="wipe" id="wipe" role="img" aria-label="{html.escape(left_label)} left, {html.escape(right_label)} right">
  <img class="right" src="{data_uri(right)}" alt="">
  <img class="left" src="{data_uri(left)}" alt="">
  <div class="line"></div>
  <span class="label" style="left: 8px">{html.escape(left_label)}</span>
  <span class="label" style="right: 8px">{html.escape(right_label)}</span>
</div>
<input type="range" id="position" min="0" max="100" step="0.1" value="{start}" aria-label="wipe position">
<script>
const wipe = document.getElementById("wipe"), slider = document.getElementById("position");
function place(p) {{ p = Math.max(0, Math.min(100, p)); wipe.style.setProperty("--pos", p + "%"); slider.value = p; }}
function follow(e) {{ const box = wipe.getBoundingClientRect(); place((e.clientX - box.left) / box.width * 100); }}
let dragging = false;
slider.addEventListener("input", () => place(Number(slider.value)));
wipe.addEventListener("pointerdown", e => {{ dragging = true; wipe.setPointerCapture(e.pointerId); follow(e); }});
wipe.addEventListener("pointermove", e => {{ if (dragging) follow(e); }});
wipe.addEventListener("pointerup", () => {{ dragging = false; }});
</script>
</body></html>"""
