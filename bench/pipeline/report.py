"""Tables and seaborn figures from the evaluation results (thin notebooks call these).

Every function takes data produced by the pipeline (the tidy results table,
metrics dicts, learning curves, the measured accuracy curve) and returns a
figure or a table; nothing here computes a number that is not derived from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import matplotlib

matplotlib.use("Agg")  # headless by default; notebooks still display inline
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


#: row order of headline tables: the learners first, then the references
POLICY_ORDER = ("autoscale", "dvfo", "oracle", "edge_best_static", "neurosurgeon", "gpu_only", "cpu_only", "cloud_only",
                "random")
LEARNERS = ("autoscale", "dvfo")


def format_ci(entry: Mapping | None, fmt: str = "{:.2f}") -> str:
    """``mean [ci_low, ci_high]`` of a metrics entry; ``n/a`` when missing (NaN is stored as None)."""
    if not isinstance(entry, Mapping) or entry.get("mean") is None or not np.isfinite(entry["mean"]):
        return "n/a"
    lo, hi = entry.get("ci_low"), entry.get("ci_high")
    if lo is None or hi is None:
        return fmt.format(entry["mean"])
    return f"{fmt.format(entry['mean'])} [{fmt.format(lo)}, {fmt.format(hi)}]"


def headline_rows(metrics: Mapping[str, Mapping]) -> list[dict[str, str]]:
    """Energy per inference, QoS violations, efficiency ratios and oracle gap (95% CI), one row per policy.

    The one formatting of the headline: the report notebook shows it, README's refresh renders it.
    """
    order = [p for p in POLICY_ORDER if p in metrics] + sorted(set(metrics) - set(POLICY_ORDER))
    return [{"policy": p,
             "energy / inference (mJ)": format_ci(metrics[p].get("energy_mj"), "{:.1f}"),
             "QoS violations": format_ci(metrics[p].get("qos_violation_rate"), "{:.3f}"),
             "× vs CPU-only": format_ci(metrics[p].get("efficiency_vs_cpu_only")),
             "× vs cloud-only": format_ci(metrics[p].get("efficiency_vs_cloud_only")),
             "gap to oracle": format_ci(metrics[p].get("gap_to_oracle"), "{:+.1%}")} for p in order]


def headline_table(metrics: Mapping[str, Mapping]) -> pd.DataFrame:
    """:func:`headline_rows` as a DataFrame indexed by policy (for notebooks)."""
    return pd.DataFrame(headline_rows(metrics)).set_index("policy")


def efficiency_by_scenario(by_scenario: Mapping[str, Mapping[str, Mapping]], baseline: str = "cpu_only",
                           title: str | None = None):
    """Energy efficiency vs ``baseline`` per scenario and policy: dots with 95% CI whiskers (log scale)."""
    key = f"efficiency_vs_{baseline}"
    rows = [{"scenario": sc, "policy": pol, "ratio": m[key]["mean"], "lo": m[key]["ci_low"], "hi": m[key]["ci_high"]}
            for sc, pols in by_scenario.items() for pol, m in pols.items() if key in m and pol != baseline]
    df = pd.DataFrame(rows)
    policies = list(dict.fromkeys(df.policy))
    scen = sorted(dict.fromkeys(df.scenario))
    fig, ax = plt.subplots(figsize=(10, 0.55 * max(len(scen), 3) + 1.2))
    palette = dict(zip(policies, sns.color_palette("tab10", len(policies))))
    step = 0.7 / max(len(policies), 1)
    for i, pol in enumerate(policies):
        d = df[df.policy == pol].set_index("scenario").reindex(scen)
        y = np.arange(len(scen)) - 0.35 + (i + 0.5) * step
        ax.errorbar(d.ratio, y, xerr=[d.ratio - d.lo, d.hi - d.ratio], fmt="o", ms=5, color=palette[pol], lw=1,
                    label=pol)
    ax.set_yticks(np.arange(len(scen)), scen)
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel(f"inferences per joule relative to {baseline} (×, log; 95% CI); right of the dashed line = better")
    ax.set_title(title or f"Energy efficiency vs {baseline}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", title="policy")
    fig.tight_layout()
    return fig


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not dominated in (x, y), both minimised, sorted by x."""
    pts = points.sort_values([x, y]).reset_index(drop=True)
    keep, best_y = [], np.inf
    for i, r in pts.iterrows():
        if r[y] < best_y:
            keep.append(i)
            best_y = r[y]
    return pts.loc[keep]


def energy_latency_scatter(results: pd.DataFrame, title: str = "Energy vs latency (mean per policy and scenario)"):
    """Mean device energy vs p95 latency per (policy, scenario), with the Pareto front over policy means."""
    per = (results.groupby(["policy", "scenario"])
           .agg(energy_mj=("energy_mj", "mean"), latency_p95_ms=("latency_ms", lambda s: s.quantile(0.95)))
           .reset_index())
    overall = (results.groupby("policy")
               .agg(energy_mj=("energy_mj", "mean"), latency_p95_ms=("latency_ms", lambda s: s.quantile(0.95)))
               .reset_index())
    fig, ax = plt.subplots(figsize=(8, 6))
    sns.scatterplot(data=per, x="latency_p95_ms", y="energy_mj", hue="policy", alpha=0.35, s=30, ax=ax, legend=False)
    sns.scatterplot(data=overall, x="latency_p95_ms", y="energy_mj", hue="policy", s=160, marker="D", ax=ax,
                    edgecolor="black")
    front = pareto_front(overall, "latency_p95_ms", "energy_mj")
    ax.plot(front.latency_p95_ms, front.energy_mj, color="black", lw=1.2, ls="--", label="Pareto front")
    ax.set(xscale="log", yscale="log", xlabel="p95 latency (ms, log)", ylabel="device energy per inference (mJ, log)",
           title=title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def signal_and_actions(trace: pd.DataFrame, actions: pd.DataFrame, title: str):
    """Top: signal strength over time; bottom: the target each policy chose per request.

    ``trace``: columns ``step, variable, value`` (one scenario); ``actions``: columns
    ``policy, step, target`` (one seed).
    """
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=[1, 1.3])
    sig = trace[trace.variable.isin(["wifi_dbm", "lte_dbm"])]
    sns.lineplot(data=sig, x="step", y="value", hue="variable", ax=ax1)
    ax1.set(ylabel="signal (dBm)", title=title)
    targets = sorted(actions.target.unique())
    policies = list(dict.fromkeys(actions.policy))
    ypos = {p: i for i, p in enumerate(policies)}
    palette = dict(zip(targets, sns.color_palette("Set2", len(targets))))
    for tgt in targets:
        d = actions[actions.target == tgt]
        ax2.scatter(d.step, d.policy.map(ypos), s=12, color=palette[tgt], label=tgt, marker="s")
    ax2.set_yticks(range(len(policies)), policies)
    ax2.set(xlabel="request", ylabel="")
    ax2.legend(title="target chosen", ncol=len(targets), fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.25))
    fig.tight_layout()
    return fig


def learning_curves(curves: pd.DataFrame):
    """Reward per request over training for each learner: episodes (faint) and a rolling mean (bold).

    ``curves`` has ``learner, step, reward``; episodes cycle through scenarios of very
    different difficulty, so the rolling mean over ~5% of the episodes shows the trend.
    """
    learners = list(dict.fromkeys(curves.learner))
    fig, axes = plt.subplots(1, len(learners), figsize=(5.5 * len(learners), 3.8), squeeze=False)
    for ax, name in zip(axes[0], learners):
        d = curves[curves.learner == name].sort_values("step")
        window = max(1, len(d) // 20)
        ax.plot(d.step, d.reward, color="tab:blue", alpha=0.25, lw=0.8, label="episode")
        ax.plot(d.step, d.reward.rolling(window, min_periods=1).mean(), color="tab:blue", lw=2,
                label=f"rolling mean ({window} episodes)")
        ax.set(title=name, xlabel="environment steps", ylabel="mean reward per request")
        ax.legend(fontsize="small", loc="lower right")
    fig.suptitle("Learning curves", y=1.02)
    fig.tight_layout()
    return fig


def accuracy_vs_xi(curve: pd.DataFrame):
    """Measured accuracy against the offloaded share ξ (attention vs random ranking)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=curve, x="xi", y="accuracy", hue="ranking", style="ranking", markers=True, ax=ax)
    # an honest scale: differences of a fraction of a point should look like one
    lo = max(0.0, float(curve.accuracy.min()) - 0.05)
    ax.set(xlabel="offloaded share of feature maps ξ", ylabel="top-1 accuracy (test split)", ylim=(lo, 1.0),
           title="DVFO on digits: measured accuracy vs offload ratio")
    fig.tight_layout()
    return fig


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # fixed metadata so the same data gives the same bytes
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path
