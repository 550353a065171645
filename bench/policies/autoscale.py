"""AutoScale (Kim & Wu, MICRO 2020): tabular Q-learning over execution targets.

Suite formulation (docs/papers.md, "suite choice" - the paper's exact algorithm is not
public): one decision per inference request on ``bench/AutoScale-v0``.

* **State** - a discrete id from mixed-radix index arithmetic (no hashing) over
  bucketed observation features: the NN's layer counts (conv / fc / recurrent /
  attention, each bucketed by ``*_edges``) and MACs bucket (``macs_log10_edges``)
  x the runtime variance: co-runner CPU load, memory load, Wi-Fi RSSI, LTE RSRP,
  the request's latency target and the device's own backlog (per processor: which
  one is busy; docs/autoscale.md). A value ``x`` falls in bucket
  ``bisect_right(edges, x)``, so ``k`` edges give ``k + 1`` buckets.
* **Table** - ``q[state, action]`` (float64 numpy array), plus visit counts.
* **Act** - greedy ``argmax`` over the state's row (ties: lowest index);
  epsilon-greedy exploration only inside :func:`train`.
* **Update** - ``q += alpha * (r + discount * max q[s'] - q)`` with
  ``alpha = max(1 / n(s, a), learning_rate)``: a sample average until it reaches
  the constant floor, so a rarely tried action is not biased toward 0.
  ``discount = 0`` is a contextual bandit; in this env the next request does not
  depend on the action, so a positive discount only adds the same (noisy) term to
  every action's target - the default is 0, the field is kept for other envs.
* **Reward** - the env's: inferences per joule of the phone when latency and
  accuracy targets are met, a penalty otherwise.

Randomness: one ``seed`` -> ``numpy.random.SeedSequence`` -> children for the
episode seeds and for the exploration draws. Same config -> identical table.

Usage::

    result = train(AutoScaleConfig(total_steps=100_000))
    result.learner.save("artefacts/autoscale")
    policy = make_policy("autoscale", env, path="artefacts/autoscale")
"""

from __future__ import annotations

import json
import time
from bisect import bisect_right
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pandas as pd

from bench.policies.base import Learner, Transition, register
from bench.validate import bounded
from bench.world.profiles import list_profiles
from bench.world.scenarios import list_scenarios

FORMAT_VERSION = 3  # 2: named observation fields incl. the co-runner GPU load; 3: back-off sums (optional)
Q_FILE, META_FILE = "q_table.npz", "autoscale.json"
_LOG10_2 = float(np.log10(2.0))  # observation carries log10 FLOPs; MACs = FLOPs / 2

def _default_scenarios() -> tuple[str, ...]:
    from bench.world.scenarios import list_scenarios

    return tuple(list_scenarios())


# --------------------------------------------------------------------------- configuration

@dataclass
class AutoScaleConfig:
    """Everything that defines an AutoScale training run (JSON-serialisable)."""

    seed: int = bounded(0, ge=0, le=0)
    """Root seed; fans out via SeedSequence to episode seeds and exploration draws."""
    total_steps: int = bounded(300_000, ge=1, le=1_000_000_000)
    """Environment steps (inference requests) to train for."""
    learning_rate: float = bounded(0.002, gt=0, le=1)
    """Floor of the step size: alpha = max(1 / visits(s, a), learning_rate). Small, so estimates stay close to
    sample averages: with a larger floor (0.05) a good but noisy action's estimate dipped below a safe one's and
    was never revisited (measured on training seeds)."""
    discount: float = bounded(0.0, ge=0, lt=1)
    """Discount of the bootstrapped next-state value; 0 = contextual bandit (see module docstring)."""
    epsilon_start: float = bounded(1.0, ge=0, le=1)
    """Exploration probability at step 0."""
    epsilon_end: float = bounded(0.2, ge=0, le=1)
    """Exploration probability after ``epsilon_decay_steps`` (linear decay in between). High, because rare
    (DNN, signal) states need samples of every action; evaluation is greedy, so it costs training energy only."""
    epsilon_decay_steps: int = bounded(100_000, ge=1, le=1_000_000_000)
    """Steps over which epsilon decays linearly from start to end."""
    macs_log10_edges: tuple[float, ...] = bounded(tuple(np.round(np.arange(7.75, 10.51, 0.25), 2).tolist()),
                                                  ge=0, le=20, max_len=1000)
    """Bucket edges on log10(MACs) of the DNN (quarter-decade grid)."""
    conv_edges: tuple[float, ...] = bounded((1.0,), ge=0, le=1e6, max_len=1000)
    """Bucket edges on the count of convolution layers (default: has conv layers or not)."""
    fc_edges: tuple[float, ...] = bounded((), ge=0, le=1e6, max_len=1000)
    """Bucket edges on the count of fully connected layers (default: ignored)."""
    recurrent_edges: tuple[float, ...] = bounded((1.0,), ge=0, le=1e6, max_len=1000)
    """Bucket edges on the count of recurrent layers (default: has any or not)."""
    attention_edges: tuple[float, ...] = bounded((1.0,), ge=0, le=1e6, max_len=1000)
    """Bucket edges on the count of attention layers (default: has any or not)."""
    cpu_load_edges: tuple[float, ...] = bounded((0.2, 0.45, 0.65), ge=0, le=1, max_len=1000)
    """Bucket edges on the co-runner CPU load in [0, 1]."""
    mem_load_edges: tuple[float, ...] = bounded((0.5,), ge=0, le=1, max_len=1000)
    """Bucket edges on the co-runner memory load in [0, 1]."""
    gpu_load_edges: tuple[float, ...] = bounded((0.5,), ge=0, le=1, max_len=1000)
    """Bucket edges on the co-runner GPU load in [0, 1] (a game or camera pipeline; the paper names processor
    utilisation). A scenario without a GPU co-runner observes 0, so its requests all fall in the first bucket."""
    wifi_dbm_edges: tuple[float, ...] = bounded((-85.0, -81.0, -78.0, -74.0, -70.0, -60.0), ge=-200, le=50,
                                                max_len=1000)
    """Bucket edges on the Wi-Fi RSSI (dBm); finer around -80 dBm, where offloading a heavy DNN turns from
    paying to failing (the MCS0 edge is -82 dBm in data/network/wifi.yaml)."""
    lte_dbm_edges: tuple[float, ...] = bounded((-110.0, -100.0, -90.0), ge=-200, le=50, max_len=1000)
    """Bucket edges on the LTE RSRP (dBm)."""
    qos_ms_edges: tuple[float, ...] = bounded((60.0, 90.0, 150.0, 225.0, 275.0, 350.0), gt=0, le=1e7, max_len=1000)
    """Bucket edges on the request's latency target (ms), observed with the request: the same DNN can come
    with different targets (ViT-B/16: 400 ms in the AutoScale mixes, 300 ms in the DVFO ones)."""
    local_busy_ms_edges: tuple[float, ...] = bounded((), ge=0, le=1e7, max_len=1000)
    """Bucket edges on the device's own backlog: how long until the busiest local target is free (ms).
    Default (): ignored (one bucket; the state layout and saved tables are those without it)."""
    radio_busy_ms_edges: tuple[float, ...] = bounded((), ge=0, le=1e7, max_len=1000)
    """Bucket edges on the busiest radio transmitter's backlog (ms). Default (): ignored."""
    cpu_busy_ms_edges: tuple[float, ...] = bounded((), ge=0, le=1e7, max_len=1000)
    """Bucket edges on the edge CPU's own backlog (ms): which processor is busy. Default (): ignored."""
    gpu_busy_ms_edges: tuple[float, ...] = bounded((), ge=0, le=1e7, max_len=1000)
    """Bucket edges on the edge GPU's own backlog (ms). Default (): ignored."""
    dsp_busy_ms_edges: tuple[float, ...] = bounded((), ge=0, le=1e7, max_len=1000)
    """Bucket edges on the edge DSP's own backlog (ms). Default (): ignored."""
    optimistic_init: float = bounded(0.0, ge=-1e9, le=1e9)  # a reward-sized value
    """Initial value of every table entry (sample efficiency). 0 is a zero-initialised table. A value above
    every reachable reward makes the greedy choice try each untried action of a state once before settling
    (optimism in the face of uncertainty), instead of waiting for epsilon to draw it; with alpha = 1/n the first
    update replaces it by the sample, so it leaves no bias behind."""
    share_dnn: bool = False
    """Per-DNN sharing (sample efficiency): a second table over the DNN buckets alone (every runtime context
    pooled) learns from the same samples; a (state, action) of the full table never visited reads the pooled
    estimate (when that action was tried for the DNN) instead of its initial value, so a rare runtime context
    starts from what the DNN usually needs. The full table decides wherever it has samples."""
    backoff: bool = False
    """Generalisation to unvisited states (docs/autoscale-backoff.md): besides the full table, a hierarchy of
    coarser tables is learned from the same samples (sample averages of the TD targets over the merged states),
    each dropping one more runtime feature, least informative first (informativeness = the visit-weighted share
    of states whose greedy action changes when the feature is dropped, measured on the learned tables). The DNN
    features and the Wi-Fi / LTE signal are never dropped. At decision time a state the full table never
    visited reads the finest coarser table that saw it, then the nearest signal bucket of the coarsest table;
    never a row that ignores signal. Supersedes ``share_dnn`` at decision time (that pooled row is used only
    while training)."""
    backoff_rank: str = bounded("changed_share", choices=("changed_share", "value_lost"))
    """How the back-off measures a feature's informativeness (the drop order): ``changed_share`` = the
    visit-weighted share of states whose greedy action changes when the feature is merged away; ``value_lost`` =
    the visit-weighted mean reward lost by acting on the merged table's choice. Chosen by leave-one-scenario-out
    validation on the training scenarios (scripts/autoscale_loso.py, docs/autoscale.md, Round 8)."""
    backoff_order: tuple[str, ...] = bounded((), max_len=5, choices=("cpu_load", "mem_load", "gpu_load", "qos_ms", "radio_busy_ms"))
    """Runtime features (observation names: ``qos_ms``, ``gpu_load``, ...) the back-off drops first, in this order,
    instead of by measured informativeness; unnamed droppable features follow, measured. () = all measured. The
    DNN, signal and backlog features cannot be named (never dropped). Chosen by leave-one-scenario-out
    validation on the training scenarios (scripts/autoscale_loso.py, docs/autoscale.md, Round 8)."""
    backoff_coverage: bool = False
    """Back-off coverage rule (docs/autoscale.md, Round 10): a coarser table's cell decides only if, for every
    feature it has merged away, some of its samples had the request's own bucket of that feature; otherwise the
    next coarser table is tried (if none qualifies, the finest that saw the state decides, as without the rule).
    A cell whose samples all come from other buckets of a dropped feature speaks for another context (e.g. a busy
    GPU's game where the request's GPU is idle). False: the finest table that saw the state decides."""
    backoff_min_visits: int = bounded(1, ge=1, le=1_000_000)
    """Samples a (state, action) entry needs before a greedy decision reads it, at every level: the full table
    included, so a state visited only a few times (its few tried actions often exploratory mistakes) backs off to
    the finest coarser table with entries that have enough samples (docs/autoscale.md). 1 = any sample."""
    scenarios: tuple[str, ...] = bounded(default_factory=_default_scenarios, choices=list_scenarios, min_len=1)
    """Scenario names or YAML paths; episodes cycle through them so one table covers all."""
    edge: str = bounded("phone_sd845", choices=list_profiles)
    """Edge device profile (name or path)."""
    peer: str | None = bounded("peer_laptop", choices=list_profiles)
    """Nearby peer device profile, or None for no peer action."""
    cloud: str = bounded("cloud_rtx3080", choices=list_profiles)
    """Cloud server profile."""
    episode_steps: int | None = bounded(None, ge=1, le=10_000_000)
    """Requests per episode (each episode is one scenario realisation); None = the scenario's whole trace,
    so training sees every phase of a scenario (the registered env's 200-step limit would show only its start)."""
    violation_penalty: float = bounded(0.5, ge=0, le=1e6)
    """The env's penalty scale for a missed latency target or accuracy bound (env default 10). It sets the
    learner's appetite for risk: at 10, offloading ViT-B/16 over weak Wi-Fi (QoS met ~75% of the time at less
    than half the energy) never pays; 0.5 was chosen on training seeds for the issue's <= 5% violation target."""
    violation_cost_mj: float | None = bounded(None, ge=0, le=1e9)  # None: set from params.yaml objective
    """λ of the declared objective (params.yaml ``objective``; the pipeline sets it from there): the env's
    reward becomes ``-(E + λ·miss)`` in joules and ``violation_penalty`` is unused (docs/bound.md). None: the
    legacy reward (inferences per joule, ``violation_penalty`` on a miss)."""
    max_levels_per_target: int | None = bounded(6, ge=1, le=10_000)
    """DVFS levels kept per local target (evenly spread, incl. lowest and highest); None = all.
    Fewer actions = fewer to explore per state; the oracle must be run on the same action set."""

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_edges") or f.name in ("scenarios", "backoff_order"):
                v = tuple(v)
                setattr(self, f.name, v)
            if f.name.endswith("_edges") and any(b <= a for a, b in zip(v, v[1:])):
                raise ValueError(f"AutoScaleConfig.{f.name} must be strictly ascending, got {list(v)}")
        if not self.scenarios:
            raise ValueError("AutoScaleConfig.scenarios must name at least one scenario")
        checks = {"total_steps": self.total_steps >= 1,
                  "episode_steps": self.episode_steps is None or self.episode_steps >= 1,
                  "learning_rate": 0 < self.learning_rate <= 1, "discount": 0 <= self.discount < 1,
                  "epsilon_start": 0 <= self.epsilon_start <= 1, "epsilon_end": 0 <= self.epsilon_end <= 1,
                  "epsilon_decay_steps": self.epsilon_decay_steps >= 1,
                  "backoff_min_visits": self.backoff_min_visits >= 1,
                  "backoff_rank": self.backoff_rank in ("changed_share", "value_lost"),
                  "backoff_order": (len(set(self.backoff_order)) == len(self.backoff_order) and all(
                      f"{n}_edges" in _DROPPABLE_NAMES for n in self.backoff_order))}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"AutoScaleConfig: invalid value for {bad}: need total_steps, episode_steps, "
                             f"epsilon_decay_steps, backoff_min_visits >= 1; learning_rate in (0, 1]; discount in [0, 1); "
                             f"epsilons in [0, 1]; backoff_rank changed_share or value_lost; backoff_order distinct names "
                             f"from {[n.removesuffix('_edges') for n in _DROPPABLE_NAMES]}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AutoScaleConfig":
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"AutoScaleConfig: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
        return cls(**data)

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the AutoScale env this config trains on (and must be evaluated on)."""
        kw = {"edge": self.edge, "peer": self.peer, "cloud": self.cloud, "violation_penalty": self.violation_penalty,
              "max_levels_per_target": self.max_levels_per_target}
        return kw if self.violation_cost_mj is None else {**kw, "violation_cost_mj": self.violation_cost_mj}


# --------------------------------------------------------------------------- state discretisation

#: (observation field, config field) of every bucketed feature, in mixed-radix order (NN first); the
#: index of a field comes from the env's named observation (bench.sim.envs.AUTOSCALE_OBS_FIELDS)
_FEATURE_NAMES = (
    ("n_conv", "conv_edges"), ("n_fc", "fc_edges"), ("n_recurrent", "recurrent_edges"),
    ("n_attention", "attention_edges"), ("log10_flops", "macs_log10_edges"), ("cpu_load", "cpu_load_edges"),
    ("mem_load", "mem_load_edges"), ("gpu_load", "gpu_load_edges"), ("wifi_dbm", "wifi_dbm_edges"),
    ("lte_dbm", "lte_dbm_edges"), ("qos_ms", "qos_ms_edges"), ("local_busy_ms", "local_busy_ms_edges"),
    ("radio_busy_ms", "radio_busy_ms_edges"), ("cpu_busy_ms", "cpu_busy_ms_edges"),
    ("gpu_busy_ms", "gpu_busy_ms_edges"), ("dsp_busy_ms", "dsp_busy_ms_edges"),
)


def _feature_index() -> tuple[tuple[int, str], ...]:
    from bench.sim.envs import AUTOSCALE_OBS_FIELDS

    return tuple((AUTOSCALE_OBS_FIELDS.index(obs), name) for obs, name in _FEATURE_NAMES)


_FEATURES = _feature_index()


#: the DNN's features lead the mixed radix (the rest is the runtime context)
_NN_FEATURES = tuple(name for _, name in _FEATURES[:5])
#: features the back-off never drops: the DNN's and the radio signals (docs/autoscale-backoff.md)
_SIGNAL_FEATURES = ("wifi_dbm_edges", "lte_dbm_edges")
#: the device's own backlog decides whether a local target can still meet the deadline, as the signal decides an
#: offload; its busy bucket is rare (low visit-weighted informativeness), so measured it would go first and a busy
#: request would read the idle choice (measured: heldout_cell_edge, docs/autoscale.md)
_BACKLOG_FEATURES = ("local_busy_ms_edges", "cpu_busy_ms_edges", "gpu_busy_ms_edges", "dsp_busy_ms_edges")
_PROTECTED = tuple(i for i, (_, name) in enumerate(_FEATURES)
                   if name in _NN_FEATURES + _SIGNAL_FEATURES + _BACKLOG_FEATURES)
#: runtime features the back-off may drop (``AutoScaleConfig.backoff_order`` names only these)
_DROPPABLE_NAMES = ("cpu_load_edges", "mem_load_edges", "gpu_load_edges", "qos_ms_edges", "radio_busy_ms_edges")
_SIGNAL_POS = tuple(i for i, (_, name) in enumerate(_FEATURES) if name in _SIGNAL_FEATURES)


class StateBins:
    """Observation -> discrete state id by bucketing and mixed-radix arithmetic."""

    def __init__(self, config: AutoScaleConfig):
        spec = []
        for idx, name in _FEATURES:
            edges = list(getattr(config, name))
            if name == "macs_log10_edges":  # compare with the observed log10 FLOPs directly
                edges = [e + _LOG10_2 for e in edges]
            spec.append((idx, edges, len(edges) + 1))
        self.sizes = tuple(n for _, _, n in spec)
        # a feature without edges has one bucket: it adds nothing to the id, and its field need not be read
        self._spec = tuple(x for x in spec if x[2] > 1)
        self.n_states = int(np.prod(self.sizes))

    def state_id(self, obs) -> int:
        """State id of one observation (pure Python on a list: a few microseconds)."""
        o = obs.tolist() if isinstance(obs, np.ndarray) else list(obs)
        sid = 0
        for idx, edges, n in self._spec:
            sid = sid * n + bisect_right(edges, o[idx])
        return sid

    def state_ids(self, obs: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`state_id` over a (N, obs_dim) batch."""
        obs = np.atleast_2d(np.asarray(obs, dtype=float))
        sid = np.zeros(len(obs), dtype=np.int64)
        for idx, edges, n in self._spec:
            sid = sid * n + np.searchsorted(np.asarray(edges, dtype=float), obs[:, idx], side="right")
        return sid

    def buckets(self, sid: int) -> list[int]:
        """Bucket index per feature of a state id, in the state layout's order."""
        out = []
        for n in reversed(self.sizes):
            sid, b = divmod(sid, n)
            out.append(b)
        return out[::-1]

    def decode(self, sid: int) -> dict[str, int]:
        """Bucket index per feature of a state id (for people)."""
        out = {}
        for (_, name), n in zip(reversed(_FEATURES), reversed(self.sizes)):
            sid, out[name.removesuffix("_edges")] = divmod(sid, n)
        return dict(reversed(list(out.items())))


# --------------------------------------------------------------------------- the learner

class AutoScaleLearner(Learner):
    """Tabular Q-learner; ``act`` is greedy (argmax over the state's row)."""

    name = "autoscale"

    def __init__(self, config: AutoScaleConfig, action_names: list[str]):
        self.config = config
        self.action_names = [str(a) for a in action_names]
        self.bins = StateBins(config)
        self.n_actions = len(self.action_names)
        self.q = np.full((self.bins.n_states, self.n_actions), float(config.optimistic_init))
        self.visits = np.zeros((self.bins.n_states, self.n_actions), dtype=np.int32)
        # the DNN features lead the mixed radix: state id // runtime combinations = the DNN part
        self._n_runtime = int(np.prod(self.bins.sizes[len(_NN_FEATURES):]))
        n_dnn = self.bins.n_states // self._n_runtime
        self.q_dnn = np.full((n_dnn, self.n_actions), float(config.optimistic_init)) if config.share_dnn else None
        self.visits_dnn = np.zeros((n_dnn, self.n_actions), dtype=np.int32) if config.share_dnn else None
        self._greedy: dict[int, int] = {}  # state -> greedy action (sharing / optimism on), cleared by updates
        # back-off: sums of TD targets per (state, action), the sufficient statistic of every coarser table
        self.target_sum = np.zeros(self.q.shape) if config.backoff else None
        self._levels: list | None = None  # built lazily from target_sum / visits, then updated with them
        self._coverage: list | None = None  # per level: {dropped position: set of level cell * size + bucket}

    def row(self, s: int, training: bool = False) -> np.ndarray:
        """The action values the greedy choice reads in state ``s``.

        With the sample-efficiency options on, an unvisited entry reads the per-DNN pooled estimate
        (``share_dnn``, where that action was tried for the DNN), else ``optimistic_init`` while training;
        a greedy evaluation (``training=False``) never picks an action it has no estimate for when it has
        one for another (optimism is for exploring, not for deciding).
        """
        c = self.config
        if c.backoff and not training:
            return self._backoff_row(s)[0]
        if self.q_dnn is None and c.optimistic_init == 0.0:
            return self.q[s]
        seen = self.visits[s] > 0
        if seen.all():
            return self.q[s]
        fill = np.full(self.n_actions, c.optimistic_init if training else -np.inf)
        if self.q_dnn is not None:
            d = s // self._n_runtime
            fill = np.where(self.visits_dnn[d] > 0, self.q_dnn[d], fill)
        out = np.where(seen, self.q[s], fill)
        return out if np.isfinite(out).any() else self.q[s]

    # ------------------------------------------------------------------ back-off (autoscale_backoff.py)
    def backoff_levels(self) -> list:
        """The coarser tables, finest first: built (drop order measured) on first use from the samples so far;
        later updates add to every level, keeping the order; :meth:`rebuild_backoff` re-measures it."""
        from bench.policies.autoscale_backoff import build_levels

        if self.target_sum is None:
            raise ValueError("this learner was configured without backoff (AutoScaleConfig.backoff = False)")
        if self._levels is None:
            self._levels = build_levels(self.target_sum, self.visits, self.bins.sizes,
                                        tuple(name for _, name in _FEATURES), _PROTECTED,
                                        self.config.backoff_min_visits, self.config.backoff_rank,
                                        tuple(f"{n}_edges" for n in self.config.backoff_order))
        return self._levels

    def rebuild_backoff(self) -> list:
        """Re-measure the drop order and rebuild every level from the full table's sums (end of training)."""
        self._levels = None
        self._coverage = None
        self._greedy.clear()
        return self.backoff_levels()

    def _level_coverage(self) -> list:
        """Per back-off level, per merged feature position (more than one bucket): the set of (level cell, the
        feature's bucket) pairs some sample had, as ``cell * size + bucket`` (``backoff_coverage``)."""
        if self._coverage is None:
            sizes = np.asarray(self.bins.sizes, dtype=np.int64)
            sid = np.nonzero(self.visits.sum(axis=1) > 0)[0].astype(np.int64)
            b = np.empty((len(sid), len(sizes)), dtype=np.int64)
            rest = sid.copy()
            for p in range(len(sizes) - 1, -1, -1):
                rest, b[:, p] = np.divmod(rest, sizes[p])
            out = []
            for lvl in self.backoff_levels():
                cell = np.zeros(len(sid), dtype=np.int64)
                for p, st in zip(lvl.kept, lvl.strides):
                    cell += b[:, p] * st
                out.append({p: set((cell * sizes[p] + b[:, p]).tolist())
                            for p in range(len(sizes)) if p not in lvl.kept and sizes[p] > 1})
            self._coverage = out
        return self._coverage

    def _covers(self, k: int, cell: int, buckets: list[int]) -> bool:
        """Whether level ``k`` (1 = the first coarser table) saw, in ``cell``, the request's bucket of every
        feature it merged away."""
        cov = self._level_coverage()[k - 1]
        return all(cell * self.bins.sizes[p] + buckets[p] in seen for p, seen in cov.items())

    def _backoff_row(self, s: int) -> tuple[np.ndarray, list]:
        """Action values of state ``s`` with back-off, and per action the level that supplied it.

        State-level back-off: the finest table that saw the state (any action) decides, among the actions
        tried there (the rest read -inf). Level 0 is the full table, ``k`` the k-th coarser table,
        ``NEIGHBOUR`` the nearest signal cell of the coarsest table; None: no estimate anywhere (then the
        full table's initial row decides, as without back-off). Filling a visited state's untried actions
        from coarser tables was measured worse on training scenarios (a coarse estimate pools contexts in
        which the action works), so a visited state keeps to its own samples.
        """
        from bench.policies.autoscale_backoff import NEIGHBOUR, neighbour_cells

        def masked(values, seen, label):
            return np.where(seen, values, -np.inf), [label if x else None for x in seen]

        seen = self.visits[s] >= self.config.backoff_min_visits  # the same confidence rule at every level
        if seen.any():
            return masked(self.q[s], seen, 0)
        levels = self.backoff_levels()
        buckets = self.bins.buckets(s)
        first = None
        for k, lvl in enumerate(levels, start=1):
            j = lvl.state_id(buckets)
            values, lvl_seen = lvl.row(j)
            if lvl_seen.any():
                if not self.config.backoff_coverage or self._covers(k, j, buckets):
                    return masked(values, lvl_seen, k)
                first = first or (values, lvl_seen, k)
        if first is not None:  # no coarser cell saw every merged bucket of the request: the finest that saw it
            return masked(*first)
        if levels:  # the coarsest (DNN, signal) cell never saw this DNN there: the nearest signal cell that did
            top = levels[-1]
            for j in neighbour_cells(buckets, top, self.bins.sizes, _SIGNAL_POS):
                values, top_seen = top.row(j)
                if top_seen.any():
                    return masked(values, top_seen, NEIGHBOUR)
        return self.q[s].copy(), [None] * self.n_actions

    def served_level(self, s: int):
        """The back-off level that supplies the greedy action in state ``s`` (see :meth:`_backoff_row`)."""
        row, source = self._backoff_row(s)
        return source[int(row.argmax())]

    def act(self, obs) -> int:
        s = self.bins.state_id(obs)
        if self.q_dnn is None and self.config.optimistic_init == 0.0 and not self.config.backoff:
            return int(self.q[s].argmax())
        a = self._greedy.get(s)  # the masked/pooled row costs a few numpy calls: cache the choice until an update
        if a is None:
            a = self._greedy[s] = int(self.row(s).argmax())
        return a

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions for an (N, obs_dim) batch (feature-importance measurements); same choices as :meth:`act`."""
        sid = self.bins.state_ids(obs)
        if self.q_dnn is None and self.config.optimistic_init == 0.0 and not self.config.backoff:
            return self.q[sid].argmax(axis=1)
        uniq, inv = np.unique(sid, return_inverse=True)
        choice = np.empty(len(uniq), dtype=np.int64)
        for i, s in enumerate(uniq.tolist()):
            a = self._greedy.get(s)
            if a is None:
                a = self._greedy[s] = int(self.row(s).argmax())
            choice[i] = a
        return choice[inv.reshape(-1)]

    def epsilon(self, step: int) -> float:
        c = self.config
        frac = min(step / c.epsilon_decay_steps, 1.0)
        return c.epsilon_start + frac * (c.epsilon_end - c.epsilon_start)

    def update_ids(self, s: int, a: int, reward: float, s_next: int, terminated: bool) -> float:
        """Q-learning step on state ids; returns the TD error."""
        c = self.config
        if self._greedy:
            self._greedy.clear()
        self.visits[s, a] += 1
        target = reward
        if c.discount > 0 and not terminated:
            target += c.discount * self.q[s_next].max()
        if self.target_sum is not None:
            self.target_sum[s, a] += target
            if self._levels:  # built already: every coarser table learns the sample too
                self._coverage = None
                buckets = self.bins.buckets(s)
                for lvl in self._levels:
                    lvl.add(buckets, a, target)
        td = target - self.q[s, a]
        self.q[s, a] += max(1.0 / self.visits[s, a], c.learning_rate) * td
        if self.q_dnn is not None:  # the pooled per-DNN estimate, same step-size rule
            d = s // self._n_runtime
            self.visits_dnn[d, a] += 1
            self.q_dnn[d, a] += max(1.0 / self.visits_dnn[d, a], c.learning_rate) * (target - self.q_dnn[d, a])
        return float(td)

    def update(self, transition: Transition) -> dict[str, float]:
        s, s2 = self.bins.state_id(transition.obs), self.bins.state_id(transition.next_obs)
        return {"td_error": self.update_ids(s, int(transition.action), float(transition.reward), s2,
                                            bool(transition.terminated))}

    # ------------------------------------------------------------------ persistence (npz + JSON, no pickle)
    def save(self, path: str | Path) -> Path:
        """Write ``q_table.npz`` (table, visits) and ``autoscale.json`` (config, actions) into directory ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        extra = {} if self.q_dnn is None else {"q_dnn": self.q_dnn, "visits_dnn": self.visits_dnn}
        if self.target_sum is not None:
            extra["target_sum"] = self.target_sum
        np.savez_compressed(path / Q_FILE, q=self.q, visits=self.visits, **extra)
        meta = {"format_version": FORMAT_VERSION, "policy": "autoscale", "config": self.config.to_dict(),
                "action_names": self.action_names, "state_sizes": list(self.bins.sizes),
                "state_features": [name for _, name in _FEATURES]}
        if self.target_sum is not None:  # for people: the measured drop order (rebuilt from the sums on load)
            meta["backoff_order"] = [{"dropped": lvl.dropped.removesuffix("_edges"),
                                      "informativeness": round(lvl.informativeness, 6)}
                                     for lvl in self.backoff_levels()]
        (path / META_FILE).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, env=None) -> "AutoScaleLearner":
        """Load a saved learner; with ``env``, check that its action table matches the saved one."""
        path = Path(path)
        for f in (Q_FILE, META_FILE):
            if not (path / f).exists():
                raise FileNotFoundError(f"{path / f} not found: an AutoScale artefact is a directory with "
                                        f"{Q_FILE} and {META_FILE}")
        meta = json.loads((path / META_FILE).read_text())
        if meta.get("format_version") not in (2, FORMAT_VERSION):  # 2 differs only by lacking the back-off
            raise ValueError(f"{path / META_FILE}: format_version {meta.get('format_version')!r}, "
                             f"expected {FORMAT_VERSION}")
        learner = cls(AutoScaleConfig.from_dict(meta["config"]), meta["action_names"])
        if env is not None:
            names = [str(n) for n in env.unwrapped.action_table["name"]]
            if names != learner.action_names:
                raise ValueError(f"{path}: saved for actions {learner.action_names}, but the env's are {names}")
        with np.load(path / Q_FILE, allow_pickle=False) as data:
            if data["q"].shape != learner.q.shape:
                raise ValueError(f"{path / Q_FILE}: table shape {data['q'].shape} does not match the config's "
                                 f"{learner.q.shape}")
            learner.q, learner.visits = data["q"].copy(), data["visits"].copy()
            if learner.q_dnn is not None:
                learner.q_dnn, learner.visits_dnn = data["q_dnn"].copy(), data["visits_dnn"].copy()
            if learner.target_sum is not None:
                learner.target_sum = data["target_sum"].copy()
                learner._levels = None
            learner._greedy.clear()
        return learner


#: AutoScaleConfig keys only training reads (the Q-learning update, exploration, reward, training scenarios): a saved
#: learner's decision depends on its tables, the state bins (``*_edges``), the action names and the decision rule's
#: settings (``share_dnn``, ``backoff``, ...), not on these
TRAINING_ONLY = ("seed", "total_steps", "learning_rate", "discount", "epsilon_start", "epsilon_end",
                 "epsilon_decay_steps", "scenarios", "episode_steps", "violation_penalty", "violation_cost_mj")


def policy_digest(path: str | Path) -> str:
    """A short hash of what a saved AutoScale learner (:meth:`AutoScaleLearner.save`) acts on: its arrays (names,
    dtypes, shapes, bytes; not the npz's compression), action names, state layout and acting configuration (the
    config without :data:`TRAINING_ONLY` keys and keys at their default: :func:`bench.policies.artefact.acting_config`)."""
    from bench.policies.artefact import acting_config, digest, npz_arrays

    path = Path(path)
    meta = json.loads((path / META_FILE).read_text())
    acting = {k: meta.get(k) for k in ("policy", "action_names", "state_sizes", "state_features")}
    acting["config"] = acting_config(meta.get("config") or {}, AutoScaleConfig, TRAINING_ONLY)
    return digest(npz_arrays(path / Q_FILE), acting)


# --------------------------------------------------------------------------- training

@dataclass
class AutoScaleResult:
    """What :func:`train` returns."""

    learner: AutoScaleLearner
    curve: pd.DataFrame  # per episode: step, episode, scenario, reward, energy_mj, qos_ok, epsilon
    wall_time_s: float
    env_steps: int


def make_envs(config: AutoScaleConfig) -> list[gym.Env]:
    """One AutoScale env per training scenario (same devices, so the same action table)."""
    from bench.sim.envs import AUTOSCALE_ID

    from bench.world.scenarios import load_scenario

    envs = []
    for s in config.scenarios:
        limit = config.episode_steps or load_scenario(s).steps
        envs.append(gym.make(AUTOSCALE_ID, scenario=s, max_episode_steps=limit, **config.env_kwargs()))
    names = [list(e.unwrapped.action_table["name"]) for e in envs]
    if any(n != names[0] for n in names):
        raise ValueError("training scenarios produced different action tables; use one set of devices")
    return envs


def train(config: AutoScaleConfig, callback: Callable[[int, "AutoScaleLearner"], bool | None] | None = None,
          callback_every: int = 1000, progress: bool = False) -> AutoScaleResult:
    """Train AutoScale by epsilon-greedy Q-learning, cycling through ``config.scenarios`` per episode.

    ``callback(step, learner)``, when given, is called after every ``callback_every`` env steps (e.g. to
    evaluate the greedy policy); returning True stops training there. It draws nothing from the training
    generators, so a run that is not stopped is identical to one without a callback. ``progress`` shows a
    tqdm bar over env steps (updated once per episode, so the hot loop pays nothing).
    """
    from tqdm.auto import tqdm

    if callback is not None and callback_every < 1:
        raise ValueError(f"callback_every must be >= 1, got {callback_every}")
    t0 = time.perf_counter()
    envs = make_envs(config)
    learner = AutoScaleLearner(config, list(envs[0].unwrapped.action_table["name"]))
    env_ss, explore_ss = np.random.SeedSequence(config.seed).spawn(2)
    seed_rng, explore_rng = np.random.default_rng(env_ss), np.random.default_rng(explore_ss)
    n_actions, q, state_id = learner.n_actions, learner.q, learner.bins.state_id
    plain = learner.q_dnn is None and config.optimistic_init == 0.0
    greedy_row = q.__getitem__ if plain else (lambda s_: learner.row(s_, training=True))

    rows, step, episode, stop = [], 0, 0, False
    bar = tqdm(total=config.total_steps, desc="autoscale", unit="step", disable=not progress)
    while step < config.total_steps and not stop:
        env = envs[episode % len(envs)]
        obs, _ = env.reset(seed=int(seed_rng.integers(2**31 - 1)))
        s = state_id(obs)
        ep_reward, ep_energy, ep_ok, ep_len = 0.0, 0.0, 0, 0
        while True:
            # epsilon-greedy: one uniform draw decides, a second picks the random action
            if explore_rng.random() < learner.epsilon(step):
                a = int(explore_rng.integers(n_actions))
            else:
                a = int(greedy_row(s).argmax())
            obs, reward, terminated, truncated, info = env.step(a)
            s_next = state_id(obs)
            learner.update_ids(s, a, reward, s_next, terminated)
            s = s_next
            step += 1
            ep_len += 1
            ep_reward += reward
            ep_energy += info["energy_mj"]
            ep_ok += info["qos_ok"]
            if callback is not None and step % callback_every == 0 and callback(step, learner):
                stop = True
            if terminated or truncated or step >= config.total_steps or stop:
                break
        rows.append({"step": step, "episode": episode, "scenario": env.unwrapped.scenario.name,
                     "reward": ep_reward / ep_len, "energy_mj": ep_energy / ep_len, "qos_ok": ep_ok / ep_len,
                     "epsilon": learner.epsilon(step)})
        episode += 1
        bar.update(ep_len)
    bar.close()
    if config.backoff:  # the drop order is measured on everything learned
        learner.rebuild_backoff()
    return AutoScaleResult(learner, pd.DataFrame(rows), time.perf_counter() - t0, step)


# --------------------------------------------------------------------------- registry

@register("autoscale", order=10, colour="#d62728", marker="o")
def autoscale(env, path: str | Path | None = None, config: AutoScaleConfig | None = None,
              **overrides: Any) -> AutoScaleLearner:
    """A saved learner (``path=``) checked against ``env``, or an untrained one for ``env``'s actions."""
    if path is not None:
        return AutoScaleLearner.load(path, env)
    if config is None:
        config = AutoScaleConfig(**overrides)
    elif overrides:
        raise ValueError(f"pass either config= or field overrides, not both (got {sorted(overrides)})")
    return AutoScaleLearner(config, list(env.unwrapped.action_table["name"]))
