"""The drawing basics every notebook uses: the theme, each policy's colour, marker and row order, a pyplot-free
figure, the headline table, the learning curves and :func:`save` (print-quality PNG + reproducible SVG).

The profile, train and evaluate stages draw with these only, so they depend on this module and not on
:mod:`bench.pipeline.report` (the report stage's figures and tables, which re-exports everything here): editing a
report figure re-runs the report, not the training or the evaluation (``python -m bench dvc-deps``).

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot: no backend is chosen at import, nothing
accumulates in pyplot's global state, and :func:`save` writes through the figure object. Every policy has one
colour and one marker in every figure (:func:`policy_style`).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

#: seaborn's theme for every figure (rc only: no pyplot state, no backend)
THEME = sns.axes_style("whitegrid") | sns.plotting_context("notebook")


#: Each policy's row order, colour, marker and role (learner, hindsight reference) are registered with it
#: (``bench.policies.register(name, order=..., colour=..., marker=..., reference=...)``, read through
#: :func:`bench.policies.policy_info`); learners are what ``bench.policies.LEARNERS`` registers. Learners are
#: saturated and round, the references black-to-grey stars, published comparators triangles, static baselines
#: squares/diamonds, trivial baselines muted.


def _info(name: str):
    from bench.policies import policy_info  # lazy: the registry imports every policy (torch included)

    return policy_info(str(name))


def learner_names() -> tuple[str, ...]:
    """Every registered learner (``bench.policies.LEARNERS``, plugins included)."""
    from bench.policies import LEARNERS

    return tuple(LEARNERS.names())


def is_learner(name: str) -> bool:
    return str(name) in learner_names()


def is_reference(name: str) -> bool:
    """A hindsight yardstick (the bound's schedule, the greedy oracle): drawn as an open star, named in bold."""
    return _info(name).reference


def _emphasised(name: str) -> bool:
    """Learners and hindsight references are named in bold."""
    return is_learner(name) or is_reference(name)


class _RegisteredStyles(Mapping):
    """``name -> (colour, marker)`` of every registered policy that registered both (read on each access)."""

    def _styles(self) -> dict[str, tuple[str, str]]:
        from bench.policies import REGISTRY

        infos = {n: _info(n) for n in REGISTRY}
        return {n: (i.colour, i.marker) for n, i in infos.items() if i.colour and i.marker}

    def __getitem__(self, name: str) -> tuple[str, str]:
        return self._styles()[name]

    def __iter__(self):
        return iter(self._styles())

    def __len__(self) -> int:
        return len(self._styles())


#: one colour + marker per policy, in every figure, as registered with the policy
POLICY_STYLES: Mapping[str, tuple[str, str]] = _RegisteredStyles()
_FALLBACK_COLOURS = [to_hex(c) for c in colormaps["tab20b"].colors]
_FALLBACK_MARKERS = ("H", "8", "d", "p", "^", "v", "<", ">")  # filled only: edges and faces both draw


#: what the reward of each learner's env means (y label of the learning curves)
REWARD_UNITS = {"autoscale": "reward per request\n(inferences/J if QoS met, else −penalty)",
                "dvfo": "reward per request\n(−energy/reference energy − QoS penalty)"}


def policy_style(name: str) -> dict[str, str]:
    """``{color, marker}`` of a policy; an unknown name gets a stable style from its name (never a known one's)."""
    info = _info(name)
    if info.colour and info.marker:
        colour, marker = info.colour, info.marker
    else:
        h = zlib.crc32(name.encode())
        colour, marker = _FALLBACK_COLOURS[h % len(_FALLBACK_COLOURS)], _FALLBACK_MARKERS[h % len(_FALLBACK_MARKERS)]
    return {"color": colour, "marker": marker}


def ordered(policies: Iterable[str]) -> list[str]:
    """Policies in their registered ``order``, the others (no order, or not registered) after them alphabetically."""
    names = list(dict.fromkeys(str(p) for p in _distinct(policies)))
    orders = {p: _info(p).order for p in names}
    return (sorted((p for p in names if orders[p] is not None), key=lambda p: (orders[p], p))
            + sorted(p for p in names if orders[p] is None))


def _distinct(values: Iterable) -> Iterable:
    """``values`` without repeats, first occurrences in order; a pandas column is deduplicated in C (speed, issue
    25: iterating a results column of ~2 million rows element by element took seconds per figure)."""
    if isinstance(values, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray, np.ndarray)):
        return pd.unique(values) if not isinstance(values, pd.Series) else values.unique()
    return values


def new_figure(width: float, height: float, **subplots) -> tuple[Figure, np.ndarray]:
    """A pyplot-free figure in the suite's theme and its axes (always a 2-D array)."""
    with sns.axes_style(THEME):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(squeeze=False, **subplots)
    return fig, axes


# --------------------------------------------------------------------------- tables

def format_ci(entry: Mapping | None, fmt: str = "{:.2f}") -> str:
    """``mean [ci_low, ci_high]`` of a metrics entry; ``n/a`` when missing (NaN is stored as None)."""
    if not isinstance(entry, Mapping) or entry.get("mean") is None or not np.isfinite(entry["mean"]):
        return "n/a"
    lo, hi = entry.get("ci_low"), entry.get("ci_high")
    if lo is None or hi is None:
        return fmt.format(entry["mean"])
    return f"{fmt.format(entry['mean'])} [{fmt.format(lo)}, {fmt.format(hi)}]"


def headline_rows(metrics: Mapping[str, Mapping]) -> list[dict[str, str]]:
    """Energy per inference, QoS violations, efficiency ratios and the gaps to the hindsight bound (on the declared
    objective E + λ·misses; docs/bound.md) and to the greedy oracle (95% CI), one row per policy.

    The one formatting of the headline: the report notebook and HTML page show it, README's refresh renders it.
    """
    ratios = [(k, label) for k, label in HEADLINE_RATIO_COLUMNS.items()
              if any(f"efficiency_vs_{k}" in m for m in metrics.values())]
    return [{"policy": p,
             "energy / inference (mJ)": format_ci(metrics[p].get("energy_mj"), "{:.1f}"),
             "QoS violations": format_ci(metrics[p].get("qos_violation_rate"), "{:.3f}"),
             **{label: format_ci(metrics[p].get(f"efficiency_vs_{k}")) for k, label in ratios},
             "gap to bound": format_ci(metrics[p].get("gap_to_bound"), "{:+.1%}"),
             "gap to greedy oracle": format_ci(metrics[p].get("gap_to_greedy_oracle"), "{:+.1%}")}
            for p in ordered(metrics)]


#: efficiency columns of the headline, each shown when the suite evaluates that baseline
HEADLINE_RATIO_COLUMNS = {"cpu_only": "× vs CPU-only", "edge_gpu_max": "× vs edge-only (GPU)",
                          "cloud_only": "× vs cloud-only"}


def headline_table(metrics: Mapping[str, Mapping]) -> pd.DataFrame:
    """:func:`headline_rows` as a DataFrame indexed by policy (for notebooks)."""
    return pd.DataFrame(headline_rows(metrics)).set_index("policy")


def smoothed_curves(curves: pd.DataFrame, points: int = 60) -> pd.DataFrame:
    """Per learner: each seed's reward smoothed and put on a common step grid; mean, min and max over seeds.

    The window spans whole cycles of the training scenarios (episodes cycle through them in turn), so the
    smoothing never weighs one scenario's level more than another's. Columns
    ``learner, step, mean, low, high, n_seeds, window``.
    """
    out = []
    for learner, d in curves.groupby("learner", sort=False):
        n_scen = max(d.scenario.nunique() if "scenario" in d else 1, 1)
        per_seed = [g.sort_values("step") for _, g in d.groupby("curve_seed" if "curve_seed" in d else "learner")]
        length = min(len(g) for g in per_seed)
        window = n_scen * max(1, (length // 15) // n_scen)
        lo_step = max(g.step.iloc[min(window - 1, len(g) - 1)] for g in per_seed)
        hi_step = min(g.step.iloc[-1] for g in per_seed)
        grid = np.linspace(lo_step, hi_step, points) if hi_step > lo_step else np.array([hi_step])
        ys = np.stack([np.interp(grid, g.step, g.reward.rolling(window, min_periods=window).mean().bfill())
                       for g in per_seed])
        out.append(pd.DataFrame({"learner": learner, "step": grid, "mean": ys.mean(0), "low": ys.min(0),
                                 "high": ys.max(0), "n_seeds": len(per_seed), "window": window}))
    return pd.concat(out, ignore_index=True)


def reference_lines(levels: pd.DataFrame) -> pd.DataFrame:
    """Per run: the oracle's level and the best static baseline's (equal weight per training scenario)."""
    if levels.empty:
        return pd.DataFrame(columns=["run", "kind", "policy", "reward"])
    mean = levels.groupby(["run", "policy"]).reward.mean().reset_index()
    rows = []
    for run, d in mean.groupby("run"):
        orc = d[d.policy.isin(("greedy_oracle", "oracle"))]
        if len(orc):
            rows.append({"run": run, "kind": "oracle", "policy": str(orc.policy.iloc[0]),
                         "reward": float(orc.reward.iloc[0])})
        static = d[~d.policy.isin(("greedy_oracle", "oracle"))].sort_values("reward", ascending=False)
        if len(static):
            rows.append({"run": run, "kind": "best static", "policy": static.policy.iloc[0],
                         "reward": float(static.reward.iloc[0])})
    return pd.DataFrame(rows)


def learning_curves(curves: pd.DataFrame, levels: pd.DataFrame | None = None) -> Figure:
    """Reward per request over training: mean over seeds (line) and their range (band), smoothed; the oracle's
    and the best static baseline's reward on the same training scenarios as horizontal lines."""
    smooth = smoothed_curves(curves)
    refs = reference_lines(levels if levels is not None else pd.DataFrame())
    run_of = curves.groupby("learner").run.first().to_dict() if "run" in curves else {}
    learners = list(dict.fromkeys(smooth.learner))
    fig, axes = new_figure(6.0 * len(learners), 4.3, ncols=len(learners))
    for ax, name in zip(axes[0], learners):
        d = smooth[smooth.learner == name]
        st = policy_style(name)
        ax.fill_between(d.step, d.low, d.high, color=st["color"], alpha=0.2, lw=0,
                        label=f"range over {int(d.n_seeds.iloc[0])} seeds")
        ax.plot(d.step, d["mean"], color=st["color"], lw=2.2,
                label=f"{name}, mean (rolling {int(d.window.iloc[0])} episode{'s' if d.window.iloc[0] > 1 else ''})")
        ys = [d.low.min(), d.high.max()]
        for r in refs[refs.run == run_of.get(name)].itertuples():
            s2 = policy_style(r.policy)
            ax.axhline(r.reward, color=s2["color"], lw=1.5, ls="--" if r.kind == "oracle" else ":",
                       label=f"{r.kind} ({r.policy})" if r.kind != "oracle" else "greedy oracle")
            ys.append(r.reward)
        pad = 0.08 * (max(ys) - min(ys) or 1.0)
        ax.set(ylim=(min(ys) - pad, max(ys) + pad), title=name, xlabel="environment steps (requests)",
               ylabel=REWARD_UNITS.get(name, "reward per request"))
        ax.legend(fontsize="x-small", loc="lower right")
    fig.suptitle("Learning curves on the training scenarios")
    return fig


#: print quality (journals ask for >= 300 dpi for line art with text)
PRINT_DPI = 300
#: fixed seed of the ids matplotlib writes into an SVG (clip paths, glyphs), so same figure -> same bytes
SVG_HASHSALT = "edge-cloud-bench"


def save(fig: Figure, path: str | Path, dpi: int = PRINT_DPI) -> Path:
    """Write ``fig`` as PNG at print resolution and as SVG beside it (same stem), through the figure object (no
    pyplot). No dates or software versions in either file and fixed SVG ids, so same data -> same bytes.
    Returns the PNG's path (the HTML page embeds PNGs; the SVG is for papers and the README)."""
    import matplotlib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASHSALT}):
        fig.savefig(path.with_suffix(".svg"), format="svg", bbox_inches="tight", metadata={"Date": None})
    return path
