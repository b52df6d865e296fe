"""The demo's timeline as one self-contained SVG: a lane per node, a mark per step (notice,
cordon, load balancers, evictions, job waits, drained, hook), against the drain's deadline."""

from __future__ import annotations

from datetime import datetime
from xml.sax.saxutils import escape

LANE = 34
LEFT = 330  # room for the node's name
WIDTH = 1100
TOP = 40

COLOURS = (
    ("notice", "#1f77b4"),
    ("cordon", "#9467bd"),
    ("target group", "#17becf"),
    ("load balancers", "#17becf"),
    ("eviction", "#ff7f0e"),
    ("job", "#8c564b"),
    ("drain finished", "#2ca02c"),
    ("hook", "#bcbd22"),
    ("heartbeat", "#c7c7c7"),
)


def colour(what: str) -> str:
    return next((c for key, c in COLOURS if key in what), "#7f7f7f")


def render(
    lanes: list[tuple[str, datetime, datetime | None, list[tuple[datetime, str]]]],
) -> str:
    """`lanes`: (label, event time, deadline, steps). Time runs from each lane's event time."""
    spans = [
        max([(at - t0).total_seconds() for at, _ in steps] + [(d - t0).total_seconds() if d else 0])
        for _, t0, d, steps in lanes
    ]
    span = max([*spans, 1.0])
    scale = (WIDTH - LEFT - 20) / span
    height = TOP + LANE * len(lanes) + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<text x="10" y="20" font-size="14">lifecycled demo: seconds after each notice '
        f"(red line: the drain's deadline; 0 to {span:.0f}s)</text>",
    ]
    for row, (label, t0, deadline, steps) in enumerate(lanes):
        y = TOP + row * LANE + LANE // 2
        out.append(f'<g class="lane"><title>{escape(label)}</title>')
        out.append(f'<text x="10" y="{y + 4}">{escape(label)}</text>')
        out.append(f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - 20}" y2="{y}" stroke="#ddd"/>')
        if deadline is not None:
            x = LEFT + (deadline - t0).total_seconds() * scale
            out.append(
                f'<line class="deadline" x1="{x:.1f}" y1="{y - 12}" x2="{x:.1f}" y2="{y + 12}" '
                f'stroke="#d62728" stroke-width="2"/>'
            )
        for at, what in sorted(steps):
            x = LEFT + max(0.0, (at - t0).total_seconds()) * scale
            seconds = (at - t0).total_seconds()
            out.append(
                f'<circle class="step" cx="{x:.1f}" cy="{y}" r="5" fill="{colour(what)}">'
                f"<title>+{seconds:.2f}s {escape(what)}</title></circle>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
