"""A flame graph (icicle: root on top) of one stage's call tree as a standalone SVG string.

Widths are shares of the stage's samples; frames narrower than a pixel are left out. Each
rectangle has a <title> (function, location, samples, %) shown on hover.
"""
from __future__ import annotations

import zlib
from html import escape

WIDTH = 1000
ROW = 17
_PALETTE = ("#f2a65a", "#eec170", "#f58549", "#e9c46a", "#f4a261", "#e76f51")


def flame_svg(tree: dict, title: str) -> str:
    total = tree["value"] or 1
    rects: list[str] = []
    depth_max = [0]

    def draw(node: dict, x: float, depth: int) -> None:
        width = WIDTH * node["value"] / total
        if width < 1:
            return
        depth_max[0] = max(depth_max[0], depth)
        y = depth * ROW
        name, pct = node["name"], 100.0 * node["value"] / total
        # a stable hash (not hash(), salted per process): the same report from the same results
        color = _PALETTE[zlib.crc32(name.split(" (")[0].encode()) % len(_PALETTE)] if depth else "#cccccc"
        label = name.split(" (")[0]
        chars = int(width / 7)
        text = label if len(label) <= chars else (label[:chars - 1] + "…" if chars > 3 else "")
        rects.append(f"<g><title>{escape(name)}: {node['value']} samples, {pct:.1f}%</title>"
                     f"<rect x='{x:.1f}' y='{y}' width='{width:.1f}' height='{ROW - 1}' fill='{color}' rx='2'/>"
                     + (f"<text x='{x + 3:.1f}' y='{y + ROW - 5}' font-size='11'>{escape(text)}</text>" if text else "")
                     + "</g>")
        child_x = x
        for child in node["children"]:
            draw(child, child_x, depth + 1)
            child_x += WIDTH * child["value"] / total

    draw(tree, 0.0, 0)
    height = (depth_max[0] + 1) * ROW + 24
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
            f"viewBox='0 -22 {WIDTH} {height}' font-family='monospace'>"
            f"<text x='0' y='-8' font-size='13' font-family='sans-serif'>{escape(title)}</text>"
            + "".join(rects) + "</svg>")
