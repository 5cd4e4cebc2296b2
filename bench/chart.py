#!/usr/bin/python3
"""Bar chart of postwerk/anchor ratios for bench/run (called by bench-report).

usage: chart.py RATIOS.tsv OUT.png TITLE

The TSV has: label, median, min, max, lower_is_better (1/0). Bars are the
median ratio (log scale, 1 = as fast/as big as the anchor) with min–max
whiskers; green where postwerk is better than its anchor, red where worse,
grey against a bound (trivial server, hash: file, fsync, raw hash).
Debian's python3-matplotlib (scripts/install-deps), no network, no fonts to
fetch: that is why the chart is drawn here and not with a Rust crate.
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    src, out, title = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = list(csv.DictReader(open(src, encoding="utf-8"), delimiter="\t"))
    if not rows:
        print("chart.py: no rows", file=sys.stderr)
        return
    labels = [r["label"] for r in rows]
    med = [max(float(r["median"]), 1e-3) for r in rows]
    lo = [max(float(r["min"]), 1e-3) for r in rows]
    hi = [max(float(r["max"]), 1e-3) for r in rows]
    lower = [r["lower_is_better"] == "1" for r in rows]
    better = [(m < 1) if lw else (m > 1) for m, lw in zip(med, lower)]
    # A bound (trivial server, hash: file, fsync rate, raw hash, no milter)
    # is not a competitor: its bars are grey.
    bound = ["bound" in lab or "hash:" in lab or "openssl" in lab for lab in labels]
    colors = [
        "#999999" if bd else ("#2e8b57" if b else "#c0392b") for b, bd in zip(better, bound)
    ]
    height = max(4, 0.28 * len(rows) + 1.5)
    fig, ax = plt.subplots(figsize=(11, height))
    y = list(range(len(rows)))[::-1]
    err = [[m - l for m, l in zip(med, lo)], [h - m for m, h in zip(med, hi)]]
    ax.barh(y, med, color=colors, xerr=err, ecolor="#555", capsize=2, height=0.7)
    ax.set_yticks(y)
    ax.set_yticklabels(
        [lab + (" ↓" if lw else "") for lab, lw in zip(labels, lower)], fontsize=7
    )
    ax.set_xscale("log")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.axvline(1.0, color="black", linewidth=0.8)
    for yy, m in zip(y, med):
        ax.text(m * 1.05, yy, f"{m:.2f}×", va="center", fontsize=6)
    ax.set_xlabel(
        "postwerk / anchor, log scale (↓: lower is better)\n"
        "green: postwerk better · red: worse · grey: against a bound"
    )
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
