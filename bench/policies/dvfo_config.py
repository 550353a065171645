"""DVFO's configuration, without torch (issue 25).

:class:`DVFOConfig` (every knob of a DVFO training run, one docstring each) lives here, not in
:mod:`bench.policies.dvfo` (which re-exports it); the ``dvfo`` policy is registered in :mod:`bench.policies` by a
thin factory that imports :mod:`bench.policies.dvfo` when it is called. Why: ``import bench.policies`` (every
policy registered) and params.yaml's validation (``train.dvfo`` checked against :class:`DVFOConfig`) run in every
``python -m bench`` command and every pipeline stage, and importing the training module imported torch (2-4 CPU-s
per process here where nothing else needed it: the switched-off stages, ``python -m bench readme``, each notebook
stage's validation). A saved learner's file names and :func:`policy_digest` (what it acts on) are here too, so
the report's staleness check (:func:`bench.pipeline.robustness.learner_digest`) needs no torch. Whatever trains
or acts (:func:`bench.policies.dvfo.train`, :class:`bench.policies.dvfo.DVFOLearner`, ``make_policy("dvfo", ...)``)
still imports torch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.validate import bounded
from bench.world.profiles import list_profiles
from bench.world.scenarios import list_scenarios

#: a saved learner's files (:meth:`bench.policies.dvfo.DVFOLearner.save`)
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
#: TD losses :attr:`DVFOConfig.loss` allows (their torch functions: :data:`bench.policies.dvfo.LOSSES`)
LOSS_NAMES = ("huber", "mse")
#: the Q-network's floating-point types :attr:`DVFOConfig.precision` allows (torch and numpy types:
#: :data:`bench.policies.dvfo.DTYPES`)
PRECISIONS = ("float32", "float64")


@dataclass
class DVFOConfig:
    """Hyper-parameters and environment settings of a DVFO training run."""

    seed: int = bounded(0, ge=0, le=0)
    """Root seed; fans out through ``numpy.random.SeedSequence`` to every generator."""
    total_steps: int = bounded(100_000, ge=1, le=1_000_000_000)
    """Environment steps (= inference requests) of training."""
    learning_rate: float = bounded(5e-4, gt=0, le=1)
    """Adam learning rate of the Q-network."""
    learning_rate_end: float | None = bounded(None, gt=0, le=1)
    """When set, the learning rate decays linearly from ``learning_rate`` (at ``learning_starts``) to this value
    at ``total_steps`` (SB3's linear schedule), so the last gradient steps move the greedy choice less
    (issue 23, docs/dvfo.md). None = constant ``learning_rate``."""
    act_average_fraction: float = bounded(0.0, ge=0, lt=1)
    """When > 0, the greedy policy acts on the uniform average of the online network's weights over the gradient
    steps of the last ``act_average_fraction`` of ``total_steps`` (stochastic weight averaging, Izmailov et al.,
    UAI 2018): when training reaches ``total_steps`` the averaged weights replace the online ones (and the
    target's), so what is saved and evaluated is the average. Why (issue 23, docs/dvfo.md round 8): with a
    constant learning rate each gradient step moves the ranking of near-tied actions, so the greedy choice at
    the last step is one noisy sample; the average over the last steps is not. 0 = act on the last weights."""
    select_snapshots: int = bounded(1, ge=1, le=100)
    """With ``act_average_fraction`` f > 0: how many consecutive windows of f·``total_steps`` at the end of
    training give a candidate policy each (the online weights averaged over the window's gradient steps). When
    > 1, the candidate with the lowest objective (E + λ·misses per request; ``-reward`` under the legacy reward)
    over one greedy episode of every training scenario acts (the episode seeds come from the training seed's own
    generator, the same episodes for every candidate; a tie goes to the later window). The training trajectory is
    unchanged; the last window's candidate is what ``select_snapshots: 1`` acts on. Why (issue 23, docs/dvfo.md
    round 10): which late weights act is one draw per seed; a choice among a few late averages, judged on the
    training scenarios, guards against a bad draw. 1 = no choice."""
    buffer_size: int = bounded(100_000, ge=1, le=10_000_000)  # preallocated: 2 float32 obs + action, reward, done each
    """Replay buffer capacity (transitions); the oldest are overwritten."""
    batch_size: int = bounded(256, ge=1, le=1_000_000)
    """Transitions per gradient step."""
    prioritized_replay: bool = False
    """Sample efficiency: proportional prioritised replay (Schaul et al., ICLR 2016). A transition is drawn
    with probability proportional to (|TD error| + ``per_eps``) ** ``per_alpha`` (new ones at the highest
    priority so far), and its loss is weighted by (N P) ** -beta / max, beta annealed from ``per_beta`` to 1
    over training, which undoes the sampling bias by the end. False = uniform replay."""
    per_alpha: float = bounded(0.6, ge=0, le=1)
    """Prioritised replay: how strongly priorities shape sampling (0 = uniform). The paper's proportional value."""
    per_beta: float = bounded(0.4, ge=0, le=1)
    """Prioritised replay: initial importance-sampling exponent, annealed linearly to 1. The paper's value."""
    per_eps: float = bounded(1e-3, gt=0, le=1)
    """Prioritised replay: added to |TD error| so no transition gets probability 0."""
    gamma: float = bounded(0.1, ge=0, lt=1)
    """Discount. Suite choice: short horizon, requests interact only through the queueing wait."""
    tau: float = bounded(0.01, gt=0, le=1)
    """Polyak factor of the target-network update (1.0 = hard copy)."""
    target_update_interval: int = bounded(1, ge=1, le=1_000_000_000)
    """Env steps between target-network updates (each blends ``tau`` of the online net in)."""
    train_frequency: int = bounded(4, ge=1, le=1_000_000_000)
    """Env steps between gradient steps."""
    learning_starts: int = bounded(2_000, ge=1, le=1_000_000_000)
    """Random-action warm-up steps; observation statistics are collected (then frozen) over them."""
    start_e: float = bounded(1.0, ge=0, le=1)
    """Initial exploration probability."""
    end_e: float = bounded(0.02, ge=0, le=1)
    """Final exploration probability."""
    exploration_fraction: float = bounded(0.5, gt=0, le=1)
    """Fraction of ``total_steps`` over which epsilon decays linearly from ``start_e`` to ``end_e``."""
    hidden_sizes: tuple[int, ...] = bounded((128, 128), ge=1, le=65_536, min_len=1, max_len=16)
    """Widths of the Q-network's hidden layers (ReLU)."""
    obs_clip: float = bounded(5.0, gt=0, le=1e6)
    """Standardised observations are clipped to [-obs_clip, obs_clip]."""
    max_grad_norm: float = bounded(10.0, gt=0, le=1e9)
    """Gradient-norm clip of each update."""
    loss: str = bounded("huber", choices=LOSS_NAMES)
    """TD regression loss: ``huber`` (smooth L1, delta 1 in reward units; DQN's error clipping) or ``mse``.
    Q-learning needs the *expected* return; Huber estimates it only where TD errors stay within delta.
    Beyond it the fit tends to the median, so a cost that occurs in fewer than half of the outcomes
    (a deadline miss worth λ/E_ref = 3-28 units under the objective reward) barely moves Q (docs/dvfo.md)."""
    scenarios: tuple[str, ...] = bounded(("dvfo_trickle_5mbps", "dvfo_bandwidth_sweep", "dvfo_bandwidth_walk"),
                                         choices=list_scenarios, min_len=1)
    """Scenarios trained on, cycled one per episode (names from ``bench.world.scenarios.list_scenarios()``)."""
    max_episode_steps: int | None = bounded(None, ge=1, le=10_000_000)
    """Steps per episode; ``None`` = the scenario's whole trace (so a bandwidth sweep is seen in full)."""
    edge: str = bounded("jetson_xavier_nx", choices=list_profiles)
    """Edge device profile."""
    cloud: str = bounded("cloud_rtx3080", choices=list_profiles)
    """Cloud profile."""
    n_cpu_levels: int | None = bounded(4, ge=1, le=10_000)
    """CPU DVFS levels offered (evenly spread incl. lowest and highest; ``None`` = all)."""
    n_gpu_levels: int | None = bounded(5, ge=1, le=10_000)
    """GPU DVFS levels offered."""
    n_mem_levels: int | None = bounded(3, ge=1, le=10_000)
    """Memory (EMC) frequency levels offered."""
    xi_levels: int | tuple[float, ...] = bounded(6, ge=0, le=1, min_len=2, max_len=1000,  # explicit shares in [0, 1]
                                                 int_ge=2, int_le=1000)  # or a count (>= 2: 0 and 1)
    """Offload-share levels: a count (evenly spaced in [0, 1]) or explicit values (must include 0)."""
    w_energy: float = bounded(1.0, ge=0, le=1e6)
    """Weight of normalised device energy in the reward."""
    w_time: float = bounded(0.0, ge=0, le=1e6)
    """Weight of normalised latency in the reward (0 = the DVFO poster's energy-only reward)."""
    qos_penalty: float = bounded(1.0, ge=0, le=1e6)
    """Reward penalty when the latency target or accuracy bound is missed (legacy reward only)."""
    violation_cost_mj: float | None = bounded(None, ge=0, le=1e9)
    """λ of the declared objective (params.yaml ``objective``; the pipeline sets it from there): the reward
    becomes ``-(w_energy (E + λ·miss) / E_ref + w_time T / T_ref)`` and ``qos_penalty`` is unused
    (docs/bound.md). None: the legacy reward."""
    precision: str = bounded("float32", choices=PRECISIONS)
    """Floating-point type of the Q-network, its optimiser and the replay buffer (issue 23, item 5: cross-CPU
    reproducibility, docs/dvfo.md). ``float64`` keeps the rounding differences between CPUs' vector code paths
    ~1e-16 instead of ~1e-7, so they take far longer to flip an argmax and send two trainings apart."""
    torch_threads: int = bounded(1, ge=1, le=1024)
    """CPU threads torch may use (a single small MLP gains nothing from more)."""
    log_every_episodes: int = bounded(1, ge=1, le=1_000_000)
    """Learning-curve row every this many episodes."""

    def __post_init__(self):
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        self.scenarios = (self.scenarios,) if isinstance(self.scenarios, str) else tuple(self.scenarios)
        if not isinstance(self.xi_levels, (int, np.integer)):
            self.xi_levels = tuple(float(x) for x in self.xi_levels)
        checks = {"per_alpha": 0.0 <= self.per_alpha <= 1.0, "per_beta": 0.0 <= self.per_beta <= 1.0,
                  "per_eps": self.per_eps > 0,
                  "total_steps": self.total_steps >= 1, "buffer_size": self.buffer_size >= self.batch_size,
                  "batch_size": self.batch_size >= 1, "gamma": 0.0 <= self.gamma < 1.0, "tau": 0.0 < self.tau <= 1.0,
                  "target_update_interval": self.target_update_interval >= 1,
                  "train_frequency": self.train_frequency >= 1, "learning_starts": self.learning_starts >= 1,
                  "start_e": 0.0 <= self.start_e <= 1.0, "end_e": 0.0 <= self.end_e <= 1.0,
                  "exploration_fraction": 0.0 < self.exploration_fraction <= 1.0,
                  "hidden_sizes": len(self.hidden_sizes) >= 1 and min(self.hidden_sizes) >= 1,
                  "scenarios": len(self.scenarios) >= 1, "torch_threads": self.torch_threads >= 1,
                  "learning_rate": self.learning_rate > 0, "log_every_episodes": self.log_every_episodes >= 1,
                  "loss": self.loss in LOSS_NAMES, "precision": self.precision in PRECISIONS,
                  "act_average_fraction": 0.0 <= self.act_average_fraction < 1.0,
                  "select_snapshots": self.select_snapshots == 1 or (
                      self.act_average_fraction > 0 and self.select_snapshots * self.act_average_fraction <= 1.0)}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid DVFOConfig field(s) {bad}: " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))

    @classmethod
    def ci(cls, **overrides) -> "DVFOConfig":
        """A configuration that trains in a few seconds (tests, notebooks' CI parameters)."""
        base = dict(total_steps=3_000, learning_starts=500, buffer_size=3_000, batch_size=64, hidden_sizes=(64, 64),
                    train_frequency=2, learning_rate=1e-3, max_episode_steps=250, exploration_fraction=0.6)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DVFOConfig":
        """Build from a mapping (e.g. params.yaml); unknown keys are named with the allowed ones."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"unknown DVFOConfig field(s) {unknown}; allowed: {allowed}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``bench/DVFO-v0`` (besides the scenario)."""
        xi = self.xi_levels if isinstance(self.xi_levels, (int, np.integer)) else list(self.xi_levels)
        return dict(edge=self.edge, cloud=self.cloud, n_cpu_levels=self.n_cpu_levels, n_gpu_levels=self.n_gpu_levels,
                    n_mem_levels=self.n_mem_levels, xi_levels=xi, w_energy=self.w_energy, w_time=self.w_time,
                    qos_penalty=self.qos_penalty,
                    **({} if self.violation_cost_mj is None else {"violation_cost_mj": self.violation_cost_mj}))


#: DVFOConfig keys only training reads (the update, exploration, reward shaping and schedule): a saved learner's
#: greedy decision depends on its Q-network's tensors (weights and observation statistics), ``obs_clip``,
#: ``precision``, ``hidden_sizes`` and the action space (device, levels, xi), not on these
TRAINING_ONLY = ("seed", "total_steps", "learning_rate", "learning_rate_end", "act_average_fraction",
                 "select_snapshots", "buffer_size",
                 "batch_size",
                 "prioritized_replay", "per_alpha", "per_beta", "per_eps", "gamma", "tau", "target_update_interval",
                 "train_frequency", "learning_starts", "start_e", "end_e", "exploration_fraction", "max_grad_norm",
                 "loss", "scenarios", "max_episode_steps", "w_energy", "w_time", "qos_penalty", "violation_cost_mj",
                 "torch_threads", "log_every_episodes")


def policy_digest(path: str | Path) -> str:
    """A short hash of what a saved DVFO learner (:meth:`bench.policies.dvfo.DVFOLearner.save`) acts on: its
    tensors (names, dtypes, shapes, bytes; not the safetensors metadata header), its spaces and its acting
    configuration (the saved config without :data:`TRAINING_ONLY` keys and keys at their default:
    :func:`bench.policies.artefact.acting_config`). Equal digests: the same greedy decisions. Used to tell whether
    a result that replayed it is stale."""
    from bench.policies.artefact import acting_config, digest, safetensors_tensors

    path = Path(path)
    meta = json.loads((path / CONFIG_FILE).read_text())
    acting = {k: meta.get(k) for k in ("format", "version", "obs_dim", "n_actions")}
    acting["config"] = acting_config(meta.get("config") or {}, DVFOConfig, TRAINING_ONLY)
    return digest(safetensors_tensors(path / WEIGHTS_FILE), acting)
