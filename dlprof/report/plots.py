"""Figures for the reports, drawn with matplotlib from the tables of ``analysis.views``.

Each function takes a DataFrame and returns the figure as SVG text (embedded in the HTML
report, written beside the Markdown one). They draw; they compute nothing.
"""
from __future__ import annotations

import io

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # no display; never opens a window
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dlprof.analysis.views import LOOP_STAGES, PRODUCER_STAGES, series_label  # noqa: E402

COLOURS = {"fetch": "#4C72B0", "collate": "#55A868", "pin": "#8172B2", "transfer": "#CCB974",
           "wait": "#C44E52", "step": "#8C8C8C"}
# stable SVG ids between runs; text as SVG text, not glyph paths: a third of the drawing time
# (0.5 s of a scan's reports) and a quarter of the page, and the words can be searched
plt.rcParams.update({"svg.hashsalt": "dlprof", "font.size": 9, "svg.fonttype": "none"})


def _svg(fig) -> str:
    buffer = io.StringIO()
    # no date in the metadata: a report rendered again from the results file is the same file
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog: the SVG goes inline in HTML


def throughput_vs_workers(trials: pd.DataFrame) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, group in trials.groupby(trials.apply(series_label, axis=1)):
        g = group.groupby("num_workers")["samples_per_s"].median().sort_index()
        ax.plot(g.index, g.values, marker="o", label=label)
    for flag, marker, text in (("is_baseline", "s", "baseline"), ("is_recommendation", "*", "recommended")):
        row = trials[trials[flag]]
        if not row.empty:
            ax.scatter(row["num_workers"], row["samples_per_s"], marker=marker, s=140, zorder=5,
                       facecolors="none", edgecolors="black", label=text)
    ax.set_xlabel("num_workers")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("samples/s")
    ax.set_title("Throughput by num_workers (training step in the loop)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _svg(fig)


def _stacked_bars(trials: pd.DataFrame, stages: tuple[str, ...], xlabel: str, title: str) -> str:
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(trials) + 1.2))
    labels = [f"#{r.trial} {r.purpose}: w={r.num_workers}" for r in trials.itertuples()]
    left = pd.Series(0.0, index=trials.index)
    for stage in stages:
        ax.barh(labels, trials[f"{stage}_ms"], left=left, color=COLOURS[stage], label=stage)
        left += trials[f"{stage}_ms"]
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _svg(fig)


def stage_bars(trials: pd.DataFrame) -> str:
    return _stacked_bars(trials, LOOP_STAGES, "ms per batch in the training loop (wait + step)",
                         "Per-batch time of each trial")


def producer_bars(trials: pd.DataFrame) -> str:
    return _stacked_bars(trials, PRODUCER_STAGES, "ms to produce one batch (in the process that built it)",
                         "Producer stages per batch")


def timeline(spans: pd.DataFrame, title: str) -> str:
    tracks = sorted(spans["track"].unique(), key=lambda t: (t != "loop", t))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(tracks) + 1.2))
    for y, track in enumerate(tracks):
        rows = spans[spans["track"] == track]
        for stage, group in rows.groupby("stage"):
            ax.broken_barh(list(zip(group["start_ms"], group["duration_ms"])), (y - 0.35, 0.7),
                           facecolors=COLOURS.get(stage, "grey"), label=stage)
    ax.set_yticks(range(len(tracks)), tracks)
    ax.invert_yaxis()
    ax.set_xlabel("ms since the start of the run")
    ax.set_title(title)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, ncol=6, loc="upper right")
    return _svg(fig)


def tuning_windows(windows: pd.DataFrame, title: str) -> str:
    """dlprof.autotune's windows: each one's rate over its span, a colour per configuration."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    configs = list(dict.fromkeys(windows["configuration"]))
    for w in windows.itertuples(index=False):
        colour = palette[configs.index(w.configuration) % len(palette)]
        ax.plot([w.start_s, w.end_s], [w.samples_per_s] * 2, color=colour, linewidth=4, solid_capstyle="butt",
                label=w.configuration)
    ax.set_xlabel("s since the first window")
    ax.set_ylabel("samples/s")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=6, loc="lower right")
    return _svg(fig)


def processes(samples: pd.DataFrame, title: str) -> str:
    fig, (cpu, mem) = plt.subplots(1, 2, figsize=(9, 3))
    for name, group in samples.groupby("process"):
        cpu.plot(group["t_s"], group["cpu_pct"], label=name)
        mem.plot(group["t_s"], group["rss_mb"], label=name)
    cpu.set_ylabel("CPU % of one core")
    mem.set_ylabel("RSS MiB")
    for ax in (cpu, mem):
        ax.set_xlabel("s")
        ax.grid(alpha=0.3)
    cpu.legend(fontsize=7)
    fig.suptitle(title)
    return _svg(fig)


def gpus(samples: pd.DataFrame, title: str) -> str:
    fig, (util, mem) = plt.subplots(1, 2, figsize=(9, 3))
    for gpu, group in samples.groupby("gpu"):
        util.plot(group["t_s"], group["util_pct"], label=f"GPU {gpu}")
        mem.plot(group["t_s"], group["mem_used_mb"], label=f"GPU {gpu}")
    util.set_ylabel("utilisation %")
    mem.set_ylabel("memory used MiB")
    for ax in (util, mem):
        ax.set_xlabel("s")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _svg(fig)
