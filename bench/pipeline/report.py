"""Tables and figures from the evaluation results (thin notebooks call these).

Every function takes data produced by the pipeline (the tidy results table, the
per-request conditions, metrics dicts, learning curves, the measured accuracy
curve) and returns a figure or a table; nothing here computes a number that is
not derived from them.

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot: no
backend is chosen at import (JupyterLab and papermill show them inline through
the kernel's own backend; ``display(fig)``), nothing accumulates in pyplot's
global state, and :func:`save` writes through the figure object. Every policy
has one colour and one marker in every figure (:func:`policy_style`).

The basics the other stages' notebooks draw with (theme, policy styles, :func:`new_figure`, :func:`save`, the
headline table, the learning curves) live in :mod:`bench.pipeline.figures` and are re-exported here, so that only
the report stage depends on this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.transforms import Bbox

# the drawing basics the profile, train and evaluate notebooks use too, in their own module so that those stages
# do not depend on this one (re-exported: ``report.save``, ``report.policy_style``, ... as before)
from bench.pipeline.figures import (HEADLINE_RATIO_COLUMNS, POLICY_STYLES, PRINT_DPI, REWARD_UNITS,  # noqa: F401
                                    SVG_HASHSALT, THEME, _distinct, _emphasised, _FALLBACK_COLOURS,
                                    _FALLBACK_MARKERS, _info, format_ci, headline_rows, headline_table, is_learner,
                                    is_reference, learner_names, learning_curves, new_figure, ordered, policy_style,
                                    reference_lines, save, smoothed_curves)


#: execution targets (AutoScale's space), one colour each in every figure
TARGET_COLOURS = {"cpu": "#7f7f7f", "gpu": "#2ca02c", "dsp": "#ff7f0e", "peer": "#9467bd", "cloud": "#1f77b4"}
#: the condition each suite's scheduler reacts to most (x of the signal figures)
SIGNAL_AXES = {"autoscale": ("wifi_dbm", "Wi-Fi signal strength (dBm)"),
               "dvfo": ("uplink_mbps", "uplink bandwidth (Mbit/s, log bins)")}
#: fewest requests a (bin, policy) point of the signal figures needs (fewer would be noise)
MIN_BIN_REQUESTS = 10


def suite_learner(frame: pd.DataFrame) -> str:
    """The learner a suite's results were produced for (the one learner policy in it)."""
    present = {str(p) for p in _distinct(frame.policy)}  # once, not once per learner (a million-row column)
    found = [p for p in learner_names() if p in present]
    return found[0] if found else "autoscale"


def target_of(action_name: str) -> str:
    """Where an action runs: ``cpu/gpu/dsp/peer/cloud`` (AutoScale) or ``ξ=…`` offloaded share (DVFO)."""
    name = str(action_name)
    if "@" in name:
        return name.split("@", 1)[0]
    if name.startswith("cloud"):
        return "cloud"
    if "_xi" in name:
        xi = float(name.rsplit("_xi", 1)[1])
        return "ξ=0 (edge only)" if xi == 0 else f"ξ={xi:.1f}"
    return name


def targets_of(action_names: pd.Series) -> pd.Series:
    """:func:`target_of` of every row, parsed once per distinct action name (a results table has ~10^6 rows
    and a few dozen names; per row it was a fifth of the target-mix figure's time)."""
    codes, names = pd.factorize(action_names.astype(str))
    targets = np.array([target_of(n) for n in names] + [""], dtype=object)  # [-1]: a missing name
    return pd.Series(targets[codes], index=action_names.index, name=action_names.name)


def target_colours(targets: Iterable[str]) -> dict[str, str]:
    """Fixed colours for AutoScale's targets; a sequential scale for DVFO's offloaded shares."""
    targets = list(dict.fromkeys(targets))
    # an offloaded share gets the same colour in every figure: viridis at its value
    out = {t: to_hex(colormaps["viridis"](0.1 + 0.8 * _xi_value(t))) for t in targets if t.startswith("ξ=")}
    other = [t for t in targets if t not in out]
    for i, t in enumerate(other):
        out[t] = TARGET_COLOURS.get(t, _FALLBACK_COLOURS[i % len(_FALLBACK_COLOURS)])
    return out


def _xi_value(target: str) -> float:
    return float(target[2:].split(" ")[0])


def _text_colour(hex_colour: str) -> str:
    """Black or white, whichever reads on ``hex_colour`` (relative luminance)."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(hex_colour)
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


def target_order(targets: Iterable[str]) -> list[str]:
    targets = set(targets)
    xi = sorted((t for t in targets if t.startswith("ξ=")), key=_xi_value)
    return [t for t in TARGET_COLOURS if t in targets] + xi + sorted(targets - set(TARGET_COLOURS) - set(xi))


def with_conditions(results: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    """The results joined with each request's conditions (same suite, scenario, seed, step)."""
    keys = ["suite", "scenario", "seed", "step"]
    cond = conditions.astype({"suite": str, "scenario": str})
    res = results.astype({"suite": str, "scenario": str, "policy": str})
    return res.merge(cond, on=keys, how="left", validate="many_to_one")


def signal_bins(values: pd.Series, column: str) -> pd.Series:
    """Bin centres: 5 dB steps for a signal in dBm, log-spaced steps for a bandwidth."""
    v = values.astype(float)
    if column.endswith("_dbm"):
        return (np.floor(v / 5.0) * 5.0 + 2.5).where(np.isfinite(v))
    pos = v[(v > 0) & np.isfinite(v)]
    if pos.empty:
        return pd.Series(np.nan, index=v.index)
    lo, hi = np.log10(pos.min()), np.log10(pos.max())
    edges = np.linspace(lo, hi + 1e-9, max(2, min(9, int(np.ceil((hi - lo) / 0.15)) + 1)))
    idx = np.clip(np.searchsorted(edges, np.log10(v.where(v > 0)), side="right") - 1, 0, len(edges) - 2)
    centres = 10 ** ((edges[:-1] + edges[1:]) / 2)
    return pd.Series(np.where(np.isfinite(np.log10(v.where(v > 0))), centres[idx], np.nan), index=v.index)


def by_signal(results: pd.DataFrame, conditions: pd.DataFrame, column: str | None = None) -> pd.DataFrame:
    """Energy per inference and QoS-violation rate per (signal bin, policy) of one suite.

    Columns ``signal, policy, energy_mj, qos_violation_rate, n``; bins with fewer than
    :data:`MIN_BIN_REQUESTS` requests of a policy are dropped.
    """
    column = column or SIGNAL_AXES[suite_learner(results)][0]
    df = with_conditions(results, conditions)
    df["signal"] = signal_bins(df[column], column)
    g = (df.dropna(subset=["signal"]).groupby(["signal", "policy"])
         .agg(energy_mj=("energy_mj", "mean"), qos_violation_rate=("qos_ok", lambda s: 1 - s.mean()),
              n=("energy_mj", "size")).reset_index())
    return g[g.n >= MIN_BIN_REQUESTS].reset_index(drop=True)


# --------------------------------------------------------------------------- helpers for clipped axes

def _upper_limit(values: np.ndarray, log: bool, factor: float = 3.0) -> float:
    """An axis maximum that keeps the bulk readable: the 80th percentile × factor, never above the data."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0
    q = np.quantile(v, 0.8)
    hi = q * factor if log else q + (q - v.min()) * (factor - 1)
    return float(min(v.max(), max(hi, np.median(v)))) * (1.08 if log else 1.04)


def _annotate_clipped(ax, x, y, text, colour, direction="right"):
    """A point beyond the axis limit: an arrow on the edge pointing where it lies, and its true value."""
    arrow = {"right": ">", "up": "^", "left": "<"}[direction]
    ax.plot([x], [y], marker=arrow, color=colour, ms=9, mec="black", mew=0.6, clip_on=False, zorder=6)
    offset, ha = {"right": ((-8, 6), "right"), "up": ((8, -6), "left"), "left": ((8, 0), "left")}[direction]
    ax.annotate(text, (x, y), xytext=offset, textcoords="offset points", fontsize="x-small", ha=ha, va="center",
                color="0.15", zorder=7)


def _plain_log_ticks(axis) -> None:
    """Log-axis ticks as plain numbers (50, 100, 200) instead of 5×10¹, and no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


# --------------------------------------------------------------------------- figures

def energy_vs_signal(results: pd.DataFrame, conditions: pd.DataFrame, title: str = "") -> Figure:
    """Energy per inference (top, log) and QoS violations (bottom) against the binned link condition, per policy:
    Wi-Fi signal strength for AutoScale, uplink bandwidth for DVFO (:data:`SIGNAL_AXES`); the default title
    names it (:func:`signal_name`).

    The crossover the suite's question is about: where offloading stops paying as the link weakens.
    """
    column, label = SIGNAL_AXES[suite_learner(results)]
    table = by_signal(results, conditions, column)
    fig, axes = new_figure(8.5, 6.5, nrows=2, sharex=True, height_ratios=[1.6, 1])
    top, bottom = axes[:, 0]
    for pol in ordered(table.policy):
        d = table[table.policy == pol].sort_values("signal")
        st = policy_style(pol)
        lw = 2.4 if is_learner(pol) else 1.3
        top.plot(d.signal, d.energy_mj, label=pol, lw=lw, ms=7 if is_learner(pol) else 5, **st)
        bottom.plot(d.signal, 100 * d.qos_violation_rate, lw=lw, ms=6 if is_learner(pol) else 4, **st)
    top.set(yscale="log", ylabel="energy per inference (mJ, log)",
            title=title or f"Energy and QoS against {signal_name(results)}")
    worse = "weaker" if column.endswith("_dbm") else "narrower"
    bottom.set(xlabel=f"{label} — {worse} →\n(mean per bin; bins with ≥ {MIN_BIN_REQUESTS} requests of a policy)",
               ylabel="QoS violations (%)", ylim=(-2, 102))
    if not column.endswith("_dbm"):
        bottom.set_xscale("log")
        _plain_log_ticks(bottom.xaxis)
    bottom.invert_xaxis()  # strong signal / wide link on the left, weakening to the right
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", title="policy")
    _plain_log_ticks(top.yaxis)
    return fig


def signal_name(frame: pd.DataFrame) -> str:
    """What the x-axis of a suite's signal figure shows, in words: "Wi-Fi signal strength" (AutoScale) or
    "uplink bandwidth" (DVFO): the label of its :data:`SIGNAL_AXES` column without the unit."""
    return SIGNAL_AXES[suite_learner(frame)][1].split(" (")[0]


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not dominated in (x, y), both minimised, sorted by x."""
    pts = points.sort_values([x, y]).reset_index(drop=True)
    keep, best_y = [], np.inf
    for i, r in pts.iterrows():
        if r[y] < best_y:
            keep.append(i)
            best_y = r[y]
    return pts.loc[keep]


def latency_energy_points(results: pd.DataFrame, conditions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per policy and scenario, per policy): mean energy and p95 of latency ÷ the request's QoS deadline."""
    df = with_conditions(results, conditions)
    df["latency_rel"] = df.latency_ms / df.qos_ms
    agg = dict(energy_mj=("energy_mj", "mean"), latency_rel_p95=("latency_rel", lambda s: s.quantile(0.95)))
    return (df.groupby(["policy", "scenario"]).agg(**agg).reset_index(),
            df.groupby("policy").agg(**agg).reset_index())


def energy_latency(results: pd.DataFrame, conditions: pd.DataFrame, title: str = "") -> Figure:
    """Energy per inference vs p95 latency relative to the QoS deadline, with the deadline and Pareto front.

    Small marks: one (policy, scenario); large marks: a policy over all scenarios. Points beyond
    the axis limits are drawn on the edge as arrows with their value written next to them. The Pareto
    front joins the non-dominated policy means (a staircase between front points only) and the region they
    dominate is shaded. Policies with the same means are drawn once, named "a = b".
    """
    per, overall = latency_energy_points(results, conditions)
    fig, axes = new_figure(8.5, 6.0)
    ax = axes[0, 0]
    xs, ys = np.r_[per.latency_rel_p95, overall.latency_rel_p95], np.r_[per.energy_mj, overall.energy_mj]
    x_hi = max(_upper_limit(xs, log=True, factor=2.5), 1.3)
    y_hi = _upper_limit(ys, log=True, factor=4.0)
    x_lo, y_lo = max(np.nanmin(xs) * 0.7, 1e-3), np.nanmin(ys) * 0.7
    means = overall.set_index("policy")
    ties = {g[0]: g for g in tie_groups({p: (means.latency_rel_p95[p], means.energy_mj[p]) for p in means.index})}
    for pol in ties:
        st = policy_style(pol)
        d = per[per.policy == pol]
        inside = (d.latency_rel_p95 <= x_hi) & (d.energy_mj <= y_hi)
        ax.scatter(d.latency_rel_p95[inside], d.energy_mj[inside], s=30, alpha=0.45, color=st["color"],
                   marker=st["marker"], linewidths=0)
    _draw_front(ax, pareto_front(overall, "latency_rel_p95", "energy_mj"), x_hi, y_hi)
    ax.axvline(1.0, color="#c62828", lw=1.6, zorder=3, label="QoS deadline")
    ax.axvspan(1.0, x_hi * 2, color="#c62828", alpha=0.05, zorder=0)
    labels = []
    for r in means.loc[list(ties)].reset_index().itertuples():
        st = policy_style(r.policy)
        name = tie_label(ties[r.policy])
        big = 260 if is_reference(r.policy) else (150 if is_learner(r.policy) else 110)
        x, y = r.latency_rel_p95, r.energy_mj
        if x > x_hi or y > y_hi:
            val = (f"p95 {x:.3g}× deadline" if x > x_hi else "") + (", " if x > x_hi and y > y_hi else "") + \
                  (f"{y:.4g} mJ" if y > y_hi else "")
            _annotate_clipped(ax, min(x, x_hi), min(y, y_hi), f"{name}: {val}", st["color"],
                              "right" if x > x_hi else "up")
            continue
        # the oracle hollow and larger, so a learner on top of it stays visible
        face = "none" if is_reference(r.policy) else st["color"]
        ax.scatter([x], [y], s=big, marker=st["marker"], facecolors=face, edgecolors="black" if face != "none"
                   else st["color"], linewidths=1.6 if face == "none" else 0.8, zorder=5 + is_learner(r.policy),
                   label=name)
        labels.append((name, x, y))
    ax.set(xscale="log", yscale="log")
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis)
    ax.set(xlim=(x_lo, x_hi), ylim=(y_lo, y_hi),
           xlabel="p95 latency ÷ the request's QoS deadline (×, log); right of the red line = deadline missed",
           ylabel="device energy per inference (mJ, log)", title=title or "Energy vs latency")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", markerscale=0.7)
    _place_labels(ax, labels)
    return fig


def _draw_front(ax, front: pd.DataFrame, x_hi: float, y_hi: float) -> None:
    """The Pareto front as a front: its points joined by a staircase (the attainment line, only between front
    points), and the region they dominate (up and right of it) lightly shaded."""
    fx, fy = front.latency_rel_p95.clip(upper=x_hi).to_numpy(), front.energy_mj.clip(upper=y_hi).to_numpy()
    ax.step(fx, fy, where="post", color="0.15", lw=2.0, ls=(0, (5, 2)), zorder=4,
            label="Pareto front (policy means)")
    # the dominated region's outline: the staircase, then round the top-right corner of the axes back to its start
    sx = np.r_[np.repeat(fx, 2)[1:], x_hi * 2, x_hi * 2, fx[0]]
    sy = np.r_[np.repeat(fy, 2)[:-1], fy[-1], y_hi * 2, y_hi * 2]
    ax.fill(sx, sy, color="0.5", alpha=0.10, lw=0, zorder=1, label="dominated by the front (shaded)")


#: label positions tried around a point, in points (dx, dy): nearest first, 8 directions per ring
_LABEL_OFFSETS = [(round(r * np.cos(a)), round(r * np.sin(a))) for r in (8, 16, 26, 38, 52)
                  for a in np.deg2rad([30, -30, 150, -150, 90, -90, 0, 180])]


def _place_labels(ax, labels: Sequence[tuple[str, float, float]]) -> None:
    """Name each point beside it, at the nearest offset where the label's rendered box overlaps no label already
    placed, no plotted point and no other text, and stays inside the axes (the least-bad offset when none is
    free). Policies with nearly equal means, e.g. a learner on the oracle, stay readable; a label moved away
    from its point gets a thin leader line."""
    fig = ax.figure
    fig.draw_without_rendering()  # final layout first: constrained layout moves the axes when it draws
    frame = ax.get_window_extent()
    scale = fig.dpi / 72.0
    obstacles = [t.get_window_extent() for t in ax.texts if t.get_visible() and t.get_text()]
    for coll in ax.collections:  # every plotted mark, as a square of its marker size
        offsets = coll.get_offsets()
        if not len(offsets) or not len(coll.get_sizes()):
            continue
        half = np.sqrt(coll.get_sizes().max()) / 2 * scale
        for px, py in coll.get_offset_transform().transform(offsets):
            obstacles.append(Bbox([[px - half, py - half], [px + half, py + half]]))

    def cost(box: Bbox) -> float:
        hit = sum(_overlap_area(box, o) for o in obstacles)
        outside = box.width * box.height - _overlap_area(box, frame)
        return hit + 4 * outside

    for name, x, y in labels:
        weight = "bold" if _emphasised(name.split(" = ")[0]) else "normal"
        probe = ax.annotate(name, (x, y), xytext=(0, 0), textcoords="offset points", fontsize="small", weight=weight)
        best = None
        for dx, dy in _LABEL_OFFSETS:
            probe.xyann = (dx, dy)
            probe.set(ha="left" if dx > 0 else "right" if dx < 0 else "center",
                      va="bottom" if dy > 0 else "top" if dy < 0 else "center")
            c = cost(probe.get_window_extent())
            if best is None or c < best[0]:
                best = (c, dx, dy, probe.get_ha(), probe.get_va())
            if c == 0:
                break
        probe.remove()
        _, dx, dy, ha, va = best
        leader = {"arrowstyle": "-", "color": "0.4", "lw": 0.6, "shrinkA": 1, "shrinkB": 5} \
            if np.hypot(dx, dy) > 20 else None  # a label moved away still points at its mark
        ann = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                          fontsize="small", weight=weight, zorder=7, arrowprops=leader)
        ann.set_in_layout(False)  # placed after the layout: must not move the axes
        ann.get_window_extent()  # positions the text (an Annotation's own extent also holds its leader) ...
        obstacles.append(Text.get_window_extent(ann))  # ... so the obstacle is the text's box alone


def _overlap_area(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return float(w * h) if w > 0 and h > 0 else 0.0


def target_mix(results: pd.DataFrame, title: str = "", ncols: int = 3) -> Figure:
    """Share of requests run on each target (AutoScale) or offloaded share ξ (DVFO), per policy and scenario."""
    df = results.assign(target=targets_of(results.action_name), policy=results.policy.astype(str))
    share = (df.groupby(["scenario", "policy"]).target.value_counts(normalize=True).rename("share").reset_index())
    scen = sorted(share.scenario.unique())
    pols = ordered(share.policy)
    targets = target_order(share.target)
    colours = target_colours(targets)
    ncols = min(ncols, len(scen))
    nrows = int(np.ceil(len(scen) / ncols))
    fig, axes = new_figure(4.2 * ncols + 1.5, 0.32 * len(pols) * nrows + 1.2 * nrows + 0.8, nrows=nrows, ncols=ncols,
                           sharey=True, sharex=True)
    for ax, sc in zip(axes.flat, scen):
        wide = (share[share.scenario == sc].pivot(index="policy", columns="target", values="share")
                .reindex(index=pols, columns=targets).fillna(0.0))
        left = np.zeros(len(pols))
        for t in targets:
            ax.barh(np.arange(len(pols)), 100 * wide[t], left=left, color=colours[t], edgecolor="white", lw=0.4)
            left += 100 * wide[t].to_numpy()
        ax.set_yticks(np.arange(len(pols)), pols)
        ax.set(title=sc, xlim=(0, 100))
        ax.grid(axis="y", visible=False)
    for ax in axes.flat[len(scen):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("share of requests (%)")
    axes[0, 0].invert_yaxis()
    fig.legend(handles=[Patch(color=colours[t], label=t) for t in targets], loc="outside lower center",
               ncol=min(len(targets), 7), fontsize="small", title="where the inference ran")
    fig.suptitle(title or "Target mix per scenario")
    return fig


def best_target_heatmap(results: pd.DataFrame, conditions: pd.DataFrame, title: str = "",
                        policy: str = "greedy_oracle") -> Figure:
    """Per DNN and signal bin: the target the oracle picks most often (colour) and how often (text)."""
    column, label = SIGNAL_AXES[suite_learner(results)]
    df = with_conditions(results[results.policy.astype(str) == policy], conditions)
    df["target"] = targets_of(df.action_name)
    df["signal"] = signal_bins(df[column], column)
    df = df.dropna(subset=["signal"])
    counts = df.groupby(["workload", "signal"]).target.value_counts().rename("n").reset_index()
    total = counts.groupby(["workload", "signal"]).n.transform("sum")
    counts["share"] = counts.n / total
    top = counts.sort_values(["workload", "signal", "n", "target"], ascending=[True, True, False, True]) \
        .drop_duplicates(["workload", "signal"])
    targets = target_order(top.target)
    colours = target_colours(targets)
    code = {t: i for i, t in enumerate(targets)}
    bins = sorted(top.signal.unique(), reverse=True)  # strong signal / wide link on the left
    work = sorted(top.workload.astype(str).unique())
    grid = top.assign(c=top.target.map(code)).pivot(index="workload", columns="signal", values="c") \
        .reindex(index=work, columns=bins)
    text = top.pivot(index="workload", columns="signal", values="share").reindex(index=work, columns=bins)
    fig, axes = new_figure(max(6.0, 0.75 * len(bins) + 3.2), 0.45 * len(work) + 2.0)
    ax = axes[0, 0]
    ax.imshow(grid.to_numpy(float), cmap=ListedColormap([colours[t] for t in targets]), vmin=-0.5,
              vmax=len(targets) - 0.5, aspect="auto")
    for i in range(len(work)):
        for j in range(len(bins)):
            v, c = text.iat[i, j], grid.iat[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize="x-small",
                        color=_text_colour(colours[targets[int(c)]]))
    fmt = (lambda b: f"{b:.1f}") if column.endswith("_dbm") else (lambda b: f"{b:.3g}")
    ax.set_xticks(range(len(bins)), [fmt(b) for b in bins], rotation=45)
    ax.set_yticks(range(len(work)), work)
    ax.grid(False)
    ax.set(xlabel=f"{label}, bin centre", ylabel="DNN",
           title=title or f"Best target per DNN and condition ({policy}'s most frequent choice)")
    ax.legend(handles=[Patch(color=colours[t], label=t) for t in targets], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize="small", title="target (share of requests)")
    return fig


def energy_split(results: pd.DataFrame, title: str = "") -> Figure:
    """Energy per inference split into the edge device's and the remote side's (peer/cloud), per policy."""
    df = results.assign(policy=results.policy.astype(str))
    per = df.groupby("policy")[["energy_mj", "remote_energy_mj"]].mean().reindex(ordered(df.policy))
    total = per.sum(axis=1)
    hi = _upper_limit(total.to_numpy(), log=False, factor=2.5)
    fig, axes = new_figure(8.5, 0.42 * len(per) + 1.6)
    ax = axes[0, 0]
    y = np.arange(len(per))
    ax.barh(y, per.energy_mj.clip(upper=hi), color="#4c72b0", label="edge device")
    ax.barh(y, (per.remote_energy_mj).clip(upper=np.maximum(hi - per.energy_mj.clip(upper=hi), 0)),
            left=per.energy_mj.clip(upper=hi), color="#dd8452", label="remote (peer / cloud)")
    for i, (pol, tot) in enumerate(total.items()):
        txt = f"{tot:,.0f} mJ" + (" (clipped)" if tot > hi else "")
        ax.text(min(tot, hi), i, " " + txt, va="center", fontsize="x-small", color="0.2")
    ax.set_yticks(y, [f"{p}" for p in per.index])
    for lab in ax.get_yticklabels():
        lab.set_color(policy_style(lab.get_text())["color"] if lab.get_text() not in ("random",) else "0.4")
    ax.invert_yaxis()
    ax.set(xlim=(0, hi * 1.25), xlabel="energy per inference (mJ)", title=title or "Device vs remote energy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return fig


#: the on-device baseline a suite's efficiency is measured against, first one the suite evaluates
ONBOARD_BASELINES = ("cpu_only", "edge_gpu_max")


def onboard_baseline(overall: Mapping[str, Mapping]) -> str:
    """``cpu_only`` (AutoScale's phone) or ``edge_gpu_max`` (DVFO's edge-only on the Jetson GPU)."""
    return next((b for b in ONBOARD_BASELINES if b in overall), ONBOARD_BASELINES[0])


def efficiency_by_scenario(by_scenario: Mapping[str, Mapping[str, Mapping]], baseline: str = "cpu_only",
                           title: str | None = None) -> Figure:
    """Energy efficiency vs ``baseline`` per scenario and policy: dots with 95% CI whiskers (log scale)."""
    key = f"efficiency_vs_{baseline}"
    rows = [{"scenario": sc, "policy": pol, "ratio": m[key]["mean"], "lo": m[key]["ci_low"], "hi": m[key]["ci_high"]}
            for sc, pols in by_scenario.items() for pol, m in pols.items() if key in m and pol != baseline]
    if not rows:
        raise ValueError(f"no policy has {key!r} in these metrics; baselines evaluated: "
                         f"{sorted({k[len('efficiency_vs_'):] for p in by_scenario.values() for m in p.values() for k in m if k.startswith('efficiency_vs_')})}")
    df = pd.DataFrame(rows)
    policies = ordered(df.policy)
    scen = sorted(dict.fromkeys(df.scenario))
    fig, axes = new_figure(9.5, 0.55 * max(len(scen), 3) + 1.6)
    ax = axes[0, 0]
    step = 0.75 / max(len(policies), 1)
    for i, pol in enumerate(policies):
        d = df[df.policy == pol].set_index("scenario").reindex(scen)
        y = np.arange(len(scen)) - 0.375 + (i + 0.5) * step
        st = policy_style(pol)
        ax.errorbar(d.ratio, y, xerr=[(d.ratio - d.lo).clip(lower=0), (d.hi - d.ratio).clip(lower=0)], fmt=st["marker"],
                    ms=7 if is_learner(pol) else 5, color=st["color"], lw=1, label=pol)
    ax.set_yticks(np.arange(len(scen)), scen)
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel(f"inferences per joule relative to {baseline} (×, log; 95% CI); right of the dashed line = better")
    ax.set_title(title or f"Energy efficiency vs {baseline}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", title="policy")
    return fig


def tie_groups(values: Mapping[str, float | Sequence[float]], rel: float = 1e-6) -> list[list[str]]:
    """Names whose values are equal within a relative tolerance ``rel``, grouped (every name in exactly one group).

    Groups and their members follow :func:`ordered`. A value may be a vector (e.g. one per scenario, or the
    (latency, energy) of a point): names tie when every element does, a missing (NaN) element matching only a
    missing one. A value with no finite element never ties, so a policy without data is never hidden under
    another (edge-only = DRLDO on the Jetson is the case this is for).
    """
    groups: list[tuple[np.ndarray, list[str]]] = []
    for name in ordered(values):
        v = np.atleast_1d(np.asarray(values[name], dtype=float))
        for rep, members in groups:
            if rep.shape == v.shape and np.isfinite(v).any() and \
                    np.allclose(v, rep, rtol=rel, atol=0.0, equal_nan=True):
                members.append(name)
                break
        else:
            groups.append((v, [name]))
    return [members for _, members in groups]


def tie_label(group: Sequence[str], labels: Mapping[str, str] | None = None) -> str:
    """``"a = b"``: how a group of tied policies is named where it is drawn once."""
    return " = ".join((labels or {}).get(n, n) for n in group)


def _mean_or_nan(entry: Mapping | None) -> float:
    return float(entry["mean"]) if isinstance(entry, Mapping) and entry.get("mean") is not None else np.nan


def _fmt_saved(saved: float) -> str:
    return f"{100 * saved:+.0f} %".replace("-", "−")


def savings_vs(overall: Mapping[str, Mapping], by_scenario: Mapping[str, Mapping[str, Mapping]],
               comparators: Sequence[str] = ("edge_gpu_max", "cpu_only", "drldo", "appealnet"),
               labels: Mapping[str, str] | None = None, title: str = "", floor: float = -0.3) -> Figure:
    """Energy saved per inference relative to each comparator (%), per scenario and overall, 95% CI.

    One panel per comparator present (edge-only: ``edge_gpu_max``, the Jetson's GPU at top clocks, or
    ``cpu_only``; DRLDO and AppealNet when a suite evaluates them). A linear % scale so gains of a few percent are visible; policies
    far below ``floor`` (e.g. cloud-only under a trickle link) are drawn at the edge, and each row's off-scale
    values are written once, together. Comparators whose panels would be identical (same energies, e.g.
    edge-only = DRLDO) share one panel, and policies tied in a panel are drawn once as "a = b".
    The legend sits below the panels, never over the data.
    """
    labels = {"edge_gpu_max": "edge-only (GPU, top clocks)", "cpu_only": "CPU-only", "drldo": "DRLDO",
              "appealnet": "AppealNet", **(labels or {})}
    comps = [c for c in comparators if any(f"efficiency_vs_{c}" in m for m in overall.values())]
    # the learners and the oracle always lie on the scale; only far-off baselines are clipped
    focus = [1 - 1 / m[f"efficiency_vs_{c}"]["mean"] for c in comps for p, m in overall.items()
             if _emphasised(p) and (m.get(f"efficiency_vs_{c}") or {}).get("mean")]
    floor = min([floor] + [v - 0.05 for v in focus])
    scen = ["all scenarios"] + sorted(by_scenario)
    tables = [overall] + [by_scenario[sc] for sc in scen[1:]]

    def profile(pol: str, key: str) -> list[float]:  # what a policy's row of marks in one panel shows
        return [_mean_or_nan(t.get(pol, {}).get(key)) for t in tables]

    # comparators with identical panels: the same savings for every policy other than the comparators
    others = [p for p in ordered(overall) if p not in comps]
    panels = tie_groups({c: sum((profile(p, f"efficiency_vs_{c}") for p in others), []) for c in comps}) \
        if others else [[c] for c in comps]
    panels = sorted((sorted(g, key=comps.index) for g in panels), key=lambda g: comps.index(g[0]))  # caller's order
    fig, axes = new_figure(5.2 * len(panels) + 1.0, 0.5 * len(scen) + 2.4, ncols=max(len(panels), 1), sharey=True)
    handles: dict[str, object] = {}
    for ax, group in zip(axes[0], panels):
        comp = group[0]
        key = f"efficiency_vs_{comp}"
        pols = [p for p in ordered(overall) if p not in group and key in overall[p]]
        ties = tie_groups({p: profile(p, key) for p in pols})
        step = 0.75 / max(len(ties), 1)
        clipped: dict[int, list[str]] = {}
        for i, tied in enumerate(ties):
            pol, name = tied[0], tie_label(tied)
            st = policy_style(pol)
            for j, table in enumerate(tables):
                m = table.get(pol, {}).get(key)
                if not m or m.get("mean") is None:
                    continue
                saved = 1 - 1 / m["mean"]
                lo = 1 - 1 / m["ci_low"] if m.get("ci_low") else saved
                hi = 1 - 1 / m["ci_high"] if m.get("ci_high") else saved
                y = j - 0.375 + (i + 0.5) * step
                if saved < floor:  # an arrow on the edge; the value goes into the row's one note
                    ax.plot([floor * 100], [y], marker="<", color=st["color"], ms=8, mec="black", mew=0.6,
                            clip_on=False, zorder=6)
                    clipped.setdefault(j, []).append(f"{name} {_fmt_saved(saved)}")
                    continue
                h = ax.errorbar([100 * saved], [y], xerr=[[100 * max(saved - lo, 0)], [100 * max(hi - saved, 0)]],
                                fmt=st["marker"], color=st["color"], ms=8 if is_learner(pol) else 5, lw=1)
                handles.setdefault(name, h)
        for j, notes in clipped.items():  # in the gap below the row, clear of the marks
            ax.annotate(", ".join(notes) + " (off scale)", (floor * 100, j + 0.5), xytext=(10, 0),
                        textcoords="offset points", fontsize="x-small", ha="left", va="center", color="0.15",
                        zorder=7)
        ax.axvline(0, color="grey", lw=1, ls="--")
        name = tie_label(group, labels)
        ax.set(xlabel=f"energy saved vs {name} (%, 95% CI)", title=f"vs {name}")
        ax.set_xlim(left=floor * 100 - 3)
    axes[0, 0].set_yticks(np.arange(len(scen)), scen)
    axes[0, 0].set_ylim(len(scen) - 0.5 + 0.25, -0.6)  # top to bottom, with room for the last row's note
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize="small",
                   ncols=min(len(handles), 4), title="policy (a = b: equal energy, drawn once)",
                   title_fontsize="small", frameon=False)
    fig.suptitle(title or "Energy saved relative to the comparators")
    return fig


def signal_and_actions(trace: pd.DataFrame, actions: pd.DataFrame, title: str) -> Figure:
    """Top: signal strength over time; bottom: the target each policy chose per request.

    ``trace``: columns ``step, variable, value`` (one scenario); ``actions``: columns
    ``policy, step, target`` (one seed).
    """
    fig, axes = new_figure(11, 6, nrows=2, sharex=True, height_ratios=[1, 1.3])
    ax1, ax2 = axes[:, 0]
    sig = trace[trace.variable.isin(["wifi_dbm", "lte_dbm"])]
    for var, d in sig.groupby("variable"):
        ax1.plot(d.step, d.value, label=var.replace("_dbm", ""), lw=1.5)
    ax1.set(ylabel="signal strength (dBm)", title=title)
    ax1.legend(fontsize="small", title="radio")
    targets = target_order(actions.target)
    colours = target_colours(targets)
    policies = ordered(actions.policy)
    ypos = {p: i for i, p in enumerate(policies)}
    for tgt in targets:
        d = actions[actions.target == tgt]
        ax2.scatter(d.step, d.policy.astype(str).map(ypos), s=14, color=colours[tgt], label=tgt, marker="s")
    ax2.set_yticks(range(len(policies)), policies)
    ax2.invert_yaxis()  # learners on top, as in every other figure
    ax2.set(xlabel="request (step)", ylabel="")
    ax2.legend(title="target chosen", ncol=len(targets), fontsize="small", loc="upper center",
               bbox_to_anchor=(0.5, -0.25))
    return fig


def accuracy_vs_xi(curve: pd.DataFrame) -> Figure:
    """Measured accuracy against the offloaded share ξ (attention vs random ranking)."""
    fig, axes = new_figure(7, 4.5)
    ax = axes[0, 0]
    sns.lineplot(data=curve, x="xi", y="accuracy", hue="ranking", style="ranking", markers=True, ax=ax)
    # an honest scale: differences of a fraction of a point should look like one
    lo = max(0.0, float(curve.accuracy.min()) - 0.05)
    ax.set(xlabel="offloaded share of feature maps ξ (fraction)", ylabel="top-1 accuracy (fraction, test split)",
           ylim=(lo, 1.0), title="DVFO on digits: measured accuracy vs offload ratio")
    return fig


class Gallery:
    """Saves, shows and remembers the report's figures, so the HTML page embeds exactly what the notebook shows.

    ``add`` writes ``out_dir/NAME.png`` through the figure object, displays the figure when running in a
    notebook, and files it under a section title for :mod:`bench.pipeline.report_html`.

    Writing a figure (PNG at print resolution and SVG) runs in a forked child process while this one draws the
    next figure (speed, issue 25: the stage used one core of two). The child writes from the figure as it was
    handed over, so the files are the same bytes as written here; ``save_workers=0`` (or no ``fork``) writes
    here, one after the other. Up to one child per core is in flight (``BENCH_REPORT_WORKERS`` sets another
    number): drawing a figure and showing it inline costs about what writing it does over the whole report, but
    not figure by figure (the target mix draws longer than it writes, the efficiency figures the other way
    round), so with a single child this process waited on each write in turn while a core idled.
    :attr:`sections` waits for every write, so whatever reads the files through it finds them complete.
    """

    def __init__(self, out_dir: str | Path, save_workers: int | None = None):
        import multiprocessing
        import os

        from bench.config import local_cores

        self.out_dir = Path(out_dir)
        self._sections: dict[str, list[tuple[Path, str]]] = {}
        if save_workers is None:  # one writer per core beside this process's own drawing; BENCH_REPORT_WORKERS=0: none
            env = os.environ.get("BENCH_REPORT_WORKERS", "").strip()
            cores = local_cores()
            save_workers = int(env) if env.isdigit() else (cores if cores > 1 else 0)
        forkable = "fork" in multiprocessing.get_all_start_methods()
        self._workers = max(0, save_workers) if forkable else 0
        self._pending: list = []

    @property
    def sections(self) -> dict[str, list[tuple[Path, str]]]:
        """Section title -> [(PNG path, caption)], once every figure is written."""
        self.wait()
        return self._sections

    def add(self, fig: Figure, name: str, caption: str, section: str) -> None:
        path = self.out_dir / f"{name}.png"
        if self._workers:
            self._save_in_child(fig, path)
        else:
            save(fig, path)
        self._sections.setdefault(section, []).append((path, caption))
        _display(fig)  # returns nothing: a returned path would print this machine's directories

    def _save_in_child(self, fig: Figure, path: Path) -> None:
        import multiprocessing

        while len(self._pending) >= self._workers:
            self._join(self._pending.pop(0))
        path.parent.mkdir(parents=True, exist_ok=True)
        # forked: the child gets the figure as it is now (nothing is pickled) and writes it
        child = multiprocessing.get_context("fork").Process(target=_save_quietly, args=(fig, path), daemon=True)
        child.start()
        self._pending.append((child, path))

    @staticmethod
    def _join(pending) -> None:
        child, path = pending
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"writing the figure {path.name} failed in its child process (exit {child.exitcode})")

    def wait(self) -> None:
        """Wait for every figure being written (raises if one failed)."""
        while self._pending:
            self._join(self._pending.pop(0))

    def add_file(self, png: str | Path, caption: str, section: str) -> None:
        """A PNG another stage drew (e.g. the testbed's): copied next to the report's own figures and shown."""
        import shutil

        path = self.out_dir / Path(png).name
        if Path(png).resolve() != path.resolve():
            shutil.copyfile(png, path)
        self._sections.setdefault(section, []).append((path, caption))
        try:
            from IPython import get_ipython
            from IPython.display import Image, display
        except ImportError:  # pragma: no cover
            return
        if get_ipython() is not None:
            display(Image(filename=str(path)))


def _save_quietly(fig: Figure, path: Path) -> None:
    """A child process's task: write ``fig``; its own output goes nowhere (a forked kernel's streams are the
    parent's), a failure shows as the exit code."""
    import os
    import sys

    sys.stdout = sys.stderr = open(os.devnull, "w")
    save(fig, path)


def _display(fig: Figure) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover
        return
    if get_ipython() is not None:
        display(fig)


#: Hook for the baselines' own tables: functions of :mod:`bench.pipeline.claims` taking ``(metrics)`` or
#: ``(metrics, results)`` and returning a DataFrame, by title. A name the module does not define is skipped,
#: so the report runs before and after that work lands.
BASELINE_TABLE_FUNCTIONS = {"What the learners add over the baselines (energy saving, 95% CI)": "what_learners_add",
                            "Headroom per scenario from both ends of the bracket (certified bound, best schedule "
                            "found) and room for learning": "headroom_bracket"}
#: the evaluate stage's permutation importance of each learner's inputs, when it writes one
IMPORTANCE_FILE = "feature_importance.csv"


def baseline_tables(metrics: Mapping, results: pd.DataFrame,
                    evaluate_dir: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Title -> table for every :data:`BASELINE_TABLE_FUNCTIONS` entry the claims module provides, and the
    permutation importance table when the evaluate stage wrote one."""
    import inspect

    from bench.pipeline import claims

    out = {}
    for title, name in BASELINE_TABLE_FUNCTIONS.items():
        fn = getattr(claims, name, None)
        if callable(fn):
            n_args = len(inspect.signature(fn).parameters)
            out[title] = fn(metrics, results) if n_args >= 2 else fn(metrics)
    if evaluate_dir is not None and (Path(evaluate_dir) / IMPORTANCE_FILE).exists():
        out["Permutation importance of each learner's inputs"] = pd.read_csv(Path(evaluate_dir) / IMPORTANCE_FILE)
    return out


# --------------------------------------------------------------------------- sensitivity to the assumptions

SENSITIVITY_SECTION = "Sensitivity of the verdicts to the assumptions"


def sensitivity_results(results_dir: str | Path) -> tuple[Path | None, dict, str]:
    """(folder, summary, a sentence on the run) of the sensitivity results the report shows: the stage's own when
    it ran, else the committed run (docs/sensitivity.md); (None, {}, why not) when neither exists. The sentence
    states the run's budget and date and whether today's data, claims or trained learners differ from the run's."""
    import json

    from bench.pipeline import robustness

    found = robustness.find_results(results_dir)
    if found is None:
        return None, {}, ("no sensitivity results: the stage is off (sensitivity.enabled: false) and no committed "
                          f"run in {robustness.COMMITTED_RUN}/ (docs/sensitivity.md)")
    summary = json.loads((found / "summary.json").read_text())
    text = f"`{found.parent.name}/{found.name}/`: " + robustness.budget_text(summary, robustness.run_record(found))
    stale = robustness.stale_inputs(summary, robustness.current_inputs(summary))
    if stale:
        text += (f" Since that run these inputs changed: {', '.join(stale)}; its verdicts describe the world as it "
                 f"was then (rerun: `{robustness.RERUN_COMMAND}`).")
    return found, summary, text


#: the live campaign the report shows when the `testbed` stage is off (it needs root, network namespaces and an idle
#: host, so it is run by hand and committed; docs/testbed.md): the folder `testbed-stage --tabulate` wrote, under
#: results/. A new committed campaign replaces this name and the report stage's two deps on it in dvc.yaml.
COMMITTED_CAMPAIGN = "testbed/campaign_dispatch_nice-10"


def testbed_results(results_dir: str | Path) -> tuple[Path | None, pd.DataFrame, str]:
    """(folder, per-run table, a sentence on the campaign) of the sim-vs-testbed comparison the report shows: the
    `testbed` stage's own when it ran live runs, else the committed campaign (:data:`COMMITTED_CAMPAIGN`, with its
    size and the host's load from its summary.json); (None, empty, why not) when neither has a table."""
    import json

    res = Path(results_dir)
    for folder, what in ((res / "testbed", "this run's `testbed` stage"),
                         (res / COMMITTED_CAMPAIGN, f"the committed campaign `results/{COMMITTED_CAMPAIGN}/`")):
        table = folder / "sim_vs_testbed.csv"
        if not table.is_file():
            continue
        try:
            df = pd.read_csv(table)
        except pd.errors.EmptyDataError:  # a zero-byte table: no runs, like the header-only one the stage writes off
            continue
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            return None, pd.DataFrame(), f"{table}: unreadable ({exc})"
        if df.empty:
            continue
        try:
            summary = json.loads((folder / "summary.json").read_text())
        except (OSError, ValueError):
            summary = {}
        load = summary.get("loadavg_1min_min_max") or []
        load_text = f", host 1-min load {load[0]:.1f}-{load[1]:.1f}" if len(load) == 2 else ""
        requests = int(df["requests"].sum()) if "requests" in df else 0
        return folder, df, f"{what}: {len(df)} runs, {requests} live requests{load_text}"
    return None, pd.DataFrame(), ("no testbed results: the stage is off (testbed.enabled: false) and no committed "
                                  f"campaign in results/{COMMITTED_CAMPAIGN}/ (docs/testbed.md)")


def add_tornados(gallery: Gallery, folder: Path, summary: Mapping, claims: Sequence[Mapping] = ()) -> int:
    """Every tornado the sensitivity run drew (its figures/index.md), captioned with what the quantity is and its
    robustness; returns how many."""
    from bench.pipeline import robustness

    rob = summary.get("robustness") or {}
    n = 0
    for quantity, png in robustness.figure_index(folder / "figures"):
        gallery.add_file(png, f"{robustness.describe_quantity(quantity, claims)}: {rob.get(quantity, 'not assessed')}"
                         " (bars: the quantity with one assumed constant halved / doubled; hatched: the verdict "
                         "flips)", SENSITIVITY_SECTION)
        n += 1
    return n
