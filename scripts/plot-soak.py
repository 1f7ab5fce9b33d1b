#!/usr/bin/env python3
"""Plot a node-bench soak CSV (seconds,rss_bytes,disk_bytes,confirmed) as an SVG.

Standard library only. Three stacked panels sharing the time axis: RSS (MiB), disk (MiB)
and confirmed payments per second (from the cumulative `confirmed` column). A dashed line
marks the reference point of the acceptance check (minute 5, or 1/6 of shorter runs).

    scripts/plot-soak.py soak.csv            # writes soak.svg
    scripts/plot-soak.py soak.csv -o out.svg
"""

import argparse
import csv
import html
import sys

W, PANEL_H, TOP, LEFT, RIGHT, GAP = 900, 180, 40, 80, 20, 50


def nice_max(v):
    """A round axis maximum at or above v."""
    if v <= 0:
        return 1.0
    mag = 10 ** (len(str(int(v))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if step * mag >= v:
            return step * mag
    return 10 * mag


def panel(out, y0, title, xs, ys, xmax, color, ref_x):
    ymax = nice_max(max(ys) * 1.05 if ys else 1.0)
    pw = W - LEFT - RIGHT

    def px(x):
        return LEFT + pw * x / xmax

    def py(y):
        return y0 + PANEL_H - PANEL_H * y / ymax

    out.append(f'<text x="{LEFT}" y="{y0 - 8}" font-weight="bold">{html.escape(title)}</text>')
    out.append(
        f'<rect x="{LEFT}" y="{y0}" width="{pw}" height="{PANEL_H}" fill="none" stroke="#999"/>'
    )
    for i in range(5):
        v = ymax * i / 4
        y = py(v)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
    if ref_x is not None:
        x = px(ref_x)
        out.append(
            f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + PANEL_H}" '
            f'stroke="#888" stroke-dasharray="4 3"/>'
        )
    if xs:
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"/>')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("-o", "--output", help="SVG file (default: the CSV's name with .svg)")
    a = ap.parse_args()
    rows = []
    with open(a.csv, newline="") as f:
        for r in csv.DictReader(f):
            rows.append(
                (float(r["seconds"]), int(r["rss_bytes"]), int(r["disk_bytes"]), int(r["confirmed"]))
            )
    if not rows:
        sys.exit(f"{a.csv}: no rows")
    t = [r[0] for r in rows]
    rss = [r[1] / 1048576 for r in rows]
    disk = [r[2] / 1048576 for r in rows]
    rate = []
    prev_t, prev_c = 0.0, 0
    for s, _, _, c in rows:
        rate.append((c - prev_c) / max(s - prev_t, 1e-9))
        prev_t, prev_c = s, c
    xmax = nice_max(t[-1])
    ref = min(300.0, t[-1] / 6)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" '
        f'height="{TOP + 3 * (PANEL_H + GAP) + 10}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="14">node-bench soak: {html.escape(a.csv)}, '
        f"{len(rows)} samples, dashed line at {ref:.0f} s</text>",
    ]
    for i, (title, ys, color) in enumerate(
        [
            ("RSS, MiB", rss, "#1f77b4"),
            ("disk (data dir), MiB", disk, "#d62728"),
            ("confirmed payments/s", rate, "#2ca02c"),
        ]
    ):
        panel(out, TOP + i * (PANEL_H + GAP) + 10, title, t, ys, xmax, color, ref)
    y = TOP + 3 * (PANEL_H + GAP) - GAP + 30
    pw = W - LEFT - RIGHT
    for i in range(6):
        v = xmax * i / 5
        out.append(f'<text x="{LEFT + pw * i / 5:.1f}" y="{y}" text-anchor="middle">{v:g} s</text>')
    out.append("</svg>")
    path = a.output or (a.csv.rsplit(".", 1)[0] + ".svg")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
