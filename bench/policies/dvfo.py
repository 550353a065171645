"""DVFO (Zhang et al., TMC 2024): a DQN over ``bench/DVFO-v0`` with thinking-while-moving.

The agent picks, per inference request, the edge device's (f_CPU, f_GPU, f_MEM)
levels and the share xi of feature maps offloaded to the cloud (one ``Discrete``
index, see :class:`bench.sim.envs.DVFOEnv`). Read top to bottom, CleanRL style:

1. :class:`DVFOConfig` - every knob, one docstring each (``DVFOConfig.ci()`` is
   the few-second configuration for tests and notebooks);
2. seeding - one ``numpy.random.SeedSequence`` fans out to the torch generator
   (weight init), the environment seeds, replay sampling and epsilon draws; no
   global random state is read or written (torch's default init runs inside
   ``fork_rng`` and is then overwritten from the explicit generator);
3. :class:`QNetwork` - a small MLP; observations are standardised: the condition fields (DNN, bandwidth,
   loads, signal) over one episode of every training scenario (:func:`condition_stats`), the others with running
   mean / variance collected during the random warm-up (``learning_starts``
   steps) and frozen afterwards, so the input scale never moves under the
   learned Q-values (stats are saved with the weights); standardised values are
   clipped to +-``obs_clip``;
4. :class:`DVFOLearner` - replay buffer, Double-DQN target (online net picks the
   next action, target net scores it; van Hasselt et al., AAAI 2016), Huber
   loss, Polyak-averaged target network (``tau``), linear epsilon schedule;
5. :func:`train` - the loop over the environment (scenarios cycled per episode);
6. thinking-while-moving (Xiao et al., ICLR 2020): :class:`ConcurrentController`
   computes the next request's action in a background thread while the current
   inference executes; :func:`hidden_decision_share` measures how much of the
   real wall-clock decision time of the torch network on CPU that overlap hides
   behind the simulated execution latencies.

Suite choices (not the paper's published settings; see docs/papers.md): the state is
the env's observation (DNN features, bandwidth, previous action, time to go);
the discount defaults to a short horizon (``gamma=0.1``, tuned on training seeds) because consecutive
requests interact only through the queueing wait; Double DQN; the default
training scenarios are the three DVFO bandwidth scenarios on the Jetson Xavier NX; optionally the greedy policy acts
on the mean of the weights over the last steps (``act_average_fraction``; the pipeline's params.yaml sets it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from torch import nn

from bench.policies.base import Learner, Transition, register
from bench.sim.envs import DVFO_ID
from bench.validate import bounded
from bench.world.profiles import list_profiles
from bench.world.scenarios import list_scenarios

WEIGHTS_FILE = "weights.safetensors"
#: TD losses :attr:`DVFOConfig.loss` allows (elementwise, no reduction)
LOSSES = {"huber": lambda q, y: nn.functional.smooth_l1_loss(q, y, reduction="none"),
          "mse": lambda q, y: nn.functional.mse_loss(q, y, reduction="none")}
#: the Q-network's floating-point types :attr:`DVFOConfig.precision` allows (torch, numpy)
DTYPES = {"float32": (torch.float32, np.float32), "float64": (torch.float64, np.float64)}
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- 1. configuration

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
    loss: str = bounded("huber", choices=("huber", "mse"))
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
    precision: str = bounded("float32", choices=tuple(DTYPES))
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
                  "loss": self.loss in LOSSES, "precision": self.precision in DTYPES,
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


def make_env(config: DVFOConfig, scenario: str) -> gym.Env:
    """``bench/DVFO-v0`` for one scenario with the config's settings."""
    from bench.world.scenarios import load_scenario
    steps = config.max_episode_steps or load_scenario(scenario).steps
    return gym.make(DVFO_ID, scenario=scenario, max_episode_steps=steps, **config.env_kwargs())


# --------------------------------------------------------------------------- 2. seeding

@dataclass
class Seeds:
    """Independent generators fanned out from one root seed."""

    torch_init: torch.Generator
    env: np.random.Generator  # draws per-episode env seeds
    replay: np.random.Generator
    explore: np.random.Generator  # epsilon coin flips and random actions
    conditions: np.random.Generator  # the episodes the condition fields are standardised over (a fifth child:
    # SeedSequence children do not depend on how many are spawned, so the other four are unchanged)
    select: np.random.Generator | None = None  # the episodes ``select_snapshots`` judges on (a sixth child, likewise)

    @classmethod
    def from_seed(cls, seed: int) -> "Seeds":
        ss_torch, ss_env, ss_replay, ss_explore, ss_cond, ss_sel = np.random.SeedSequence(seed).spawn(6)
        g = torch.Generator().manual_seed(int(ss_torch.generate_state(1, np.uint64)[0] >> np.uint64(1)))
        return cls(g, np.random.default_rng(ss_env), np.random.default_rng(ss_replay), np.random.default_rng(ss_explore),
                   np.random.default_rng(ss_cond), np.random.default_rng(ss_sel))


def set_deterministic(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode)`` for eager CPU code, without importing TorchInductor.

    The public call also sets ``torch._inductor.config.deterministic``, so its first call in a process imports the
    compiler stack (dynamo, inductor, sympy: 4.4-4.6 CPU-s per process here where no bytecode is cached, measured;
    every training process paid it) although nothing here compiles. Eager kernels read only the flag set by
    ``torch._C._set_deterministic_algorithms``, so the trained bytes are the same. Where inductor is already loaded
    (someone compiles) or torch lacks the private setter, the public call is used."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode)
    else:
        setter(mode)


@contextlib.contextmanager
def torch_settings(threads: int) -> Iterator[None]:
    """Deterministic algorithms and a thread count for the block; restores torch's previous global settings."""
    prev_det, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    set_deterministic(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        set_deterministic(prev_det)
        torch.set_num_threads(prev_threads)


# --------------------------------------------------------------------------- 3. Q-network

class QNetwork(nn.Module):
    """MLP: standardised observation -> one Q-value per action.

    Buffers ``obs_mean`` / ``obs_std`` hold the (frozen) observation statistics so
    that they travel with the weights in the safetensors file.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: tuple[int, ...], obs_clip: float,
                 generator: torch.Generator | None = None):
        super().__init__()
        # nn.Linear's default init draws from torch's global RNG: fork it (leave it as it was),
        # then re-draw every parameter from the explicit generator.
        with torch.random.fork_rng(devices=[]):
            sizes = (obs_dim, *hidden_sizes)
            layers: list[nn.Module] = []
            for a, b in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            layers.append(nn.Linear(sizes[-1], n_actions))
            self.net = nn.Sequential(*layers)
        if generator is not None:
            for m in self.net:
                if isinstance(m, nn.Linear):  # same distribution as nn.Linear.reset_parameters
                    nn.init.kaiming_uniform_(m.weight, a=5 ** 0.5, generator=generator)
                    bound = 1.0 / m.in_features ** 0.5
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        self.obs_clip = float(obs_clip)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self._linears = [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # the layers called directly (addmm is what nn.Linear runs): the per-module call overhead of
        # nn.Sequential was a third of a single-request decision (profiled)
        z = ((obs - self.obs_mean) / self.obs_std).clamp(-self.obs_clip, self.obs_clip)
        last = len(self._linears) - 1
        for i, lin in enumerate(self._linears):
            z = torch.addmm(lin.bias, z, lin.weight.t())
            if i < last:
                z = z.relu()
        return z


class RunningStats:
    """Welford running mean / variance of observations (float64)."""

    def __init__(self, dim: int):
        self.n, self.mean, self.m2 = 0, np.zeros(dim), np.zeros(dim)

    def push(self, x: np.ndarray) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    def std(self, floor: float = 1e-3) -> np.ndarray:
        return constant_as_inf(np.sqrt(self.m2 / max(self.n - 1, 1)), floor)


def constant_as_inf(std: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """``std`` with the features that did not vary (std below ``floor``) set to inf, so they standardise to 0.

    Such a feature carries nothing the network could learn; a floor of 1e-3 (the rule before issue 23)
    turned any other value met later (a held-out GPU co-runner's load of 0.8) into the +-obs_clip extreme
    of an input the network never saw vary (measured on heldout_dvfo_camera_corunner: docs/dvfo.md)."""
    return np.where(std < floor, np.inf, std)


def condition_stats(envs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, mean, std) of the DVFO condition fields over one episode of every training env (``reset`` with a
    seed from ``rng``; no step is taken: these fields do not depend on actions). Pooled over the scenarios, so the
    standardisation covers the training distribution, not the first scenario's warm-up (issue 23: with a 500-step
    warm-up on the constant 5 Mbit/s trickle scenario the bandwidth's std was the 1e-3 floor, which clipped every
    other bandwidth to +-obs_clip)."""
    from bench.sim.envs import DVFO_CONDITION_FIELDS, obs_index

    tables = []
    for env in envs:
        env.reset(seed=int(rng.integers(2**31)))
        tables.append(env.unwrapped.condition_observations())
    first = envs[0]
    idx = np.array([obs_index(first, f) for f in DVFO_CONDITION_FIELDS])
    x = np.concatenate(tables)[:, idx].astype(np.float64)
    return idx, x.mean(axis=0), constant_as_inf(x.std(axis=0, ddof=1))


class FusedAdam:
    """``torch.optim.Adam(params, lr, fused=True)`` (its defaults: betas 0.9 / 0.999, eps 1e-8, no weight decay) as
    the kernel it runs, ``torch._fused_adam_``, on the same state, without ``torch.optim``.

    Why (issue 25): ``torch.optim.Optimizer`` wraps its methods in ``torch._disable_dynamo``, whose first call imports
    TorchDynamo and TorchInductor (sympy, the compiler; 4.0 CPU-s per process where no bytecode is cached, 1.3
    where it is; measured) although nothing here compiles, and every training process (a stage's run and its
    curve seeds, each DRLDO suite) paid it. The same kernel on the same tensors in the same order gives the same
    bytes (checked: the trained weights and curve of a short dvfo_jetson run, before and after). Where torch lacks the
    kernel, ``torch.optim.Adam`` does the work. ``param_groups[0]["lr"]`` is the learning rate, as in torch.optim."""

    BETAS, EPS = (0.9, 0.999), 1e-8

    def __init__(self, params, lr: float):
        self.params = list(params)
        self.param_groups = [{"lr": lr}]
        self._torch = None
        if not hasattr(torch, "_fused_adam_"):  # pragma: no cover - the pinned torch has it
            self._torch = torch.optim.Adam(self.params, lr=lr, fused=True)
            self.param_groups = self._torch.param_groups
            return
        # as torch.optim.Adam's lazy state for fused=True: float32 step counters, zero moments
        self._steps = [torch.zeros((), dtype=torch.float32) for _ in self.params]
        self._exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self._exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self) -> None:
        """``zero_grad(set_to_none=True)``."""
        if self._torch is not None:  # pragma: no cover
            self._torch.zero_grad(set_to_none=True)
            return
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        if self._torch is not None:  # pragma: no cover
            self._torch.step()
            return
        if any(p.grad is None for p in self.params):
            raise RuntimeError("FusedAdam.step: every parameter needs a gradient (call backward first)")
        torch._foreach_add_(self._steps, 1)
        torch._fused_adam_(self.params, [p.grad for p in self.params], self._exp_avgs, self._exp_avg_sqs, [],
                           self._steps, amsgrad=False, lr=float(self.param_groups[0]["lr"]), beta1=self.BETAS[0],
                           beta2=self.BETAS[1], weight_decay=0.0, eps=self.EPS, maximize=False, grad_scale=None,
                           found_inf=None)


class ReplayBuffer:
    """Fixed-size ring buffer of transitions in preallocated numpy arrays."""

    def __init__(self, capacity: int, obs_dim: int, dtype=np.float32):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.obs = np.zeros((capacity, obs_dim), dtype=dtype)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=dtype)
        self.action = np.zeros(capacity, dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=dtype)
        self.done = np.zeros(capacity, dtype=dtype)
        self.priority = np.zeros(capacity)  # prioritised replay only: (|TD| + eps) ** alpha
        self.max_priority = 1.0

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        i = self.pos
        self.priority[i] = self.max_priority
        self.obs[i], self.next_obs[i], self.action[i] = obs, next_obs, action
        self.reward[i], self.done[i] = reward, float(terminated)  # truncation still bootstraps
        self.pos, self.size = (i + 1) % self.capacity, min(self.size + 1, self.capacity)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, self.size, size=n)
        t = torch.from_numpy
        return t(self.obs[idx]), t(self.action[idx]), t(self.reward[idx]), t(self.next_obs[idx]), t(self.done[idx])

    def sample_prioritized(self, n: int, rng: np.random.Generator, beta: float):
        """Proportional prioritised draw: the batch, its indices and importance weights (max-normalised)."""
        p = self.priority[:self.size]
        cdf = np.cumsum(p)
        idx = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), self.size - 1)
        w = (self.size * p[idx] / cdf[-1]) ** -beta
        t = torch.from_numpy
        batch = (t(self.obs[idx]), t(self.action[idx]), t(self.reward[idx]), t(self.next_obs[idx]), t(self.done[idx]))
        return batch, idx, torch.from_numpy((w / w.max()).astype(self.reward.dtype))

    def set_priorities(self, idx: np.ndarray, td_abs: np.ndarray, alpha: float, eps: float) -> None:
        pr = (np.asarray(td_abs, dtype=float) + eps) ** alpha
        self.priority[idx] = pr
        self.max_priority = max(self.max_priority, float(pr.max()))


# --------------------------------------------------------------------------- 4. learner

class DVFOLearner(Learner):
    """Double-DQN learner; ``act`` is greedy, ``explore`` is epsilon-greedy (training only).

    ``update(transition)`` stores the transition and, on schedule, takes a
    gradient step and updates the target network; it returns diagnostics.
    """

    name = "dvfo"

    def __init__(self, config: DVFOConfig, obs_dim: int, n_actions: int, seeds: Seeds | None = None):
        self.config = config
        self.obs_dim, self.n_actions = int(obs_dim), int(n_actions)
        self.seeds = seeds or Seeds.from_seed(config.seed)
        self._dtype, self._np_dtype = DTYPES[config.precision]
        # drawn in float32 and then cast: the same initial weights (to float32's precision) in either precision
        self.q = QNetwork(self.obs_dim, self.n_actions, config.hidden_sizes, config.obs_clip,
                          self.seeds.torch_init).to(self._dtype)
        self.target = QNetwork(self.obs_dim, self.n_actions, config.hidden_sizes, config.obs_clip).to(self._dtype)
        self.target.load_state_dict(self.q.state_dict())
        # fused Adam and foreach clipping / Polyak: one kernel per step instead of one per tensor (profiled:
        # the per-tensor loops were a quarter of a gradient step for this small network)
        self.optimizer = FusedAdam(self.q.parameters(), lr=config.learning_rate)
        self._params, self._target_params = list(self.q.parameters()), list(self.target.parameters())
        self.buffer = ReplayBuffer(config.buffer_size, self.obs_dim, self._np_dtype)
        self.stats = RunningStats(self.obs_dim)
        #: (indices, mean, std) that replace the warm-up's statistics for the condition fields (:func:`train` sets it)
        self.condition_stats: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.steps = 0
        #: the running uniform average of the online parameters (``act_average_fraction``) and how many it holds
        self._average: list[torch.Tensor] | None = None
        self._n_averaged = 0
        #: ``select_snapshots``: the finished earlier windows' averages (oldest first) and the window being averaged
        self._snapshots: list[list[torch.Tensor]] = []
        self._window: int | None = None
        #: what the choice among the snapshots saw (:func:`select_snapshot`): scores per window, oldest first
        self.selection: dict[str, Any] | None = None

    # ---------------------------------------------------------------- acting
    def act(self, obs: np.ndarray) -> int:
        """Greedy action for one observation."""
        with torch.inference_mode():
            q = self.q(torch.from_numpy(np.asarray(obs, dtype=self._np_dtype).reshape(1, -1)))
        return int(q.argmax())

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions for an (N, obs_dim) batch (feature-importance measurements)."""
        with torch.inference_mode():
            q = self.q(torch.as_tensor(np.asarray(obs, dtype=self._np_dtype)))
        return q.argmax(dim=1).numpy().astype(np.int64)

    def epsilon(self, step: int | None = None) -> float:
        """Linear schedule from ``start_e`` to ``end_e`` over ``exploration_fraction * total_steps``."""
        c = self.config
        step = self.steps if step is None else step
        if step < c.learning_starts:
            return 1.0
        span = c.exploration_fraction * c.total_steps
        return float(max(c.end_e, c.start_e + (c.end_e - c.start_e) * step / span))

    def explore(self, obs: np.ndarray) -> int:
        """Epsilon-greedy action (training); coin flips and random actions come from the explore generator."""
        rng = self.seeds.explore
        if rng.random() < self.epsilon():
            return int(rng.integers(self.n_actions))
        return self.act(obs)

    # ---------------------------------------------------------------- learning
    def update(self, transition: Transition) -> dict[str, float]:
        c = self.config
        obs = np.asarray(transition.obs, dtype=self._np_dtype)
        if self.steps < c.learning_starts:
            self.stats.push(obs.astype(np.float64))
        self.buffer.add(obs, transition.action, transition.reward, transition.next_obs, transition.terminated)
        self.steps += 1
        if self.steps == c.learning_starts:  # freeze the standardisation before the first gradient step
            for net in (self.q, self.target):
                mean, std = self.stats.mean.copy(), self.stats.std()
                if self.condition_stats is not None:
                    idx, c_mean, c_std = self.condition_stats
                    mean[idx], std[idx] = c_mean, c_std
                net.obs_mean.copy_(torch.as_tensor(mean, dtype=self._dtype))
                net.obs_std.copy_(torch.as_tensor(std, dtype=self._dtype))
        diag: dict[str, float] = {"epsilon": self.epsilon()}
        if self.steps < c.learning_starts:
            return diag
        if self.steps % c.train_frequency == 0:
            if c.learning_rate_end is not None:
                frac = min(max(self.steps - c.learning_starts, 0) / max(c.total_steps - c.learning_starts, 1), 1.0)
                lr = c.learning_rate + (c.learning_rate_end - c.learning_rate) * frac
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
            diag["loss"] = self._gradient_step()
            if c.act_average_fraction > 0:
                window = self._averaging_window(self.steps)
                if window is not None:
                    if self._window is not None and window != self._window:  # an earlier window is complete
                        self._snapshots.append([a.clone() for a in self._average])
                        self._average, self._n_averaged = None, 0
                    self._window = window
                    self._accumulate_average()
        if self.steps % c.target_update_interval == 0:
            with torch.no_grad():
                torch._foreach_lerp_(self._target_params, self._params, c.tau)
        if self.steps == c.total_steps and self._n_averaged:
            self._act_on_average()
        return diag

    def _averaging_window(self, step: int) -> int | None:
        """Which averaging window a gradient step at ``step`` belongs to: 0 = the last ``act_average_fraction`` of
        training, 1 = the one before, ... up to ``select_snapshots`` - 1; None = before them."""
        c = self.config
        for j in range(c.select_snapshots):
            if step > (1.0 - (j + 1) * c.act_average_fraction) * c.total_steps:
                return j
        return None

    def _accumulate_average(self) -> None:
        """Fold the online parameters after a gradient step into their running uniform average."""
        with torch.no_grad():
            if self._average is None:
                self._average = [p.detach().clone() for p in self._params]
            else:  # avg += (p - avg) / (n + 1)
                torch._foreach_lerp_(self._average, self._params, 1.0 / (self._n_averaged + 1))
        self._n_averaged += 1

    def _act_on_average(self) -> None:
        """The end of training: the averaged weights become the online and target networks' (what acts, is saved)."""
        with torch.no_grad():
            torch._foreach_copy_(self._params, self._average)
            torch._foreach_copy_(self._target_params, self._average)
        self._average, self._n_averaged = None, 0

    def _gradient_step(self) -> float:
        c = self.config
        if c.prioritized_replay:
            beta = c.per_beta + (1.0 - c.per_beta) * min(self.steps / c.total_steps, 1.0)
            (obs, act, rew, nxt, done), idx, weights = self.buffer.sample_prioritized(c.batch_size, self.seeds.replay,
                                                                                      beta)
        else:
            obs, act, rew, nxt, done = self.buffer.sample(c.batch_size, self.seeds.replay)
        with torch.no_grad():  # Double DQN: online net chooses, target net evaluates
            a_next = self.q(nxt).argmax(dim=1, keepdim=True)
            q_next = self.target(nxt).gather(1, a_next).squeeze(1)
            y = rew + c.gamma * (1.0 - done) * q_next
        q = self.q(obs).gather(1, act.unsqueeze(1)).squeeze(1)
        if c.prioritized_replay:
            loss = (weights * LOSSES[c.loss](q, y)).mean()
            self.buffer.set_priorities(idx, (q - y).detach().abs().numpy(), c.per_alpha, c.per_eps)
        else:
            loss = LOSSES[c.loss](q, y).mean()
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self._params, c.max_grad_norm, foreach=True)
        self.optimizer.step()
        return float(loss.item())

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write ``path/weights.safetensors`` (Q-network + observation stats) and ``path/config.json``."""
        from safetensors.torch import save_file
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().clone() for k, v in self.q.state_dict().items()}
        # one metadata entry: safetensors writes its metadata map in hash order, so two entries made the file's
        # header (and the artefact's digest) differ between identical trainings (seen on dvfo_phone's weights)
        save_file(tensors, str(path / WEIGHTS_FILE), metadata={"format": f"bench.dvfo/{FORMAT_VERSION}"})
        meta = {"format": "bench.dvfo", "version": FORMAT_VERSION, "obs_dim": self.obs_dim,
                "n_actions": self.n_actions, "train_steps": self.steps, "config": self.config.to_dict()}
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path, env=None) -> "DVFOLearner":
        """Inverse of :meth:`save`; checks the spaces against ``env`` when given."""
        from safetensors.torch import load_file
        path = Path(path)
        for f in (CONFIG_FILE, WEIGHTS_FILE):
            if not (path / f).exists():
                raise FileNotFoundError(f"{path / f} does not exist; a saved DVFO learner is a directory with "
                                        f"{CONFIG_FILE} and {WEIGHTS_FILE}")
        meta = json.loads((path / CONFIG_FILE).read_text())
        if meta.get("format") != "bench.dvfo":
            raise ValueError(f"{path / CONFIG_FILE} is not a saved DVFO learner (format={meta.get('format')!r})")
        if env is not None:
            obs_dim, n_act = _spaces(env)
            if (obs_dim, n_act) != (meta["obs_dim"], meta["n_actions"]):
                raise ValueError(f"saved learner has obs_dim={meta['obs_dim']}, n_actions={meta['n_actions']} but the "
                                 f"env has obs_dim={obs_dim}, n_actions={n_act} (different level settings?)")
        learner = cls(DVFOConfig.from_dict(meta["config"]), meta["obs_dim"], meta["n_actions"])
        state = load_file(str(path / WEIGHTS_FILE))
        learner.q.load_state_dict(state)
        learner.target.load_state_dict(state)
        learner.steps = int(meta.get("train_steps", 0))
        return learner


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
    """A short hash of what a saved DVFO learner (:meth:`DVFOLearner.save`) acts on: its tensors (names, dtypes,
    shapes, bytes; not the safetensors metadata header), its spaces and its acting configuration (the saved
    config without :data:`TRAINING_ONLY` keys and keys at their default: :func:`bench.policies.artefact.acting_config`).
    Equal digests: the same greedy decisions. Used to tell whether a result that replayed it is stale."""
    from bench.policies.artefact import acting_config, digest, safetensors_tensors

    path = Path(path)
    meta = json.loads((path / CONFIG_FILE).read_text())
    acting = {k: meta.get(k) for k in ("format", "version", "obs_dim", "n_actions")}
    acting["config"] = acting_config(meta.get("config") or {}, DVFOConfig, TRAINING_ONLY)
    return digest(safetensors_tensors(path / WEIGHTS_FILE), acting)


def _spaces(env) -> tuple[int, int]:
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(act_space, gym.spaces.Discrete) or len(obs_space.shape) != 1:
        raise ValueError(f"DVFO needs a flat Box observation and a Discrete action space; got {obs_space}, {act_space}")
    return int(obs_space.shape[0]), int(act_space.n)


# not live: its action set is a Jetson's GPU and memory clocks, which the testbed's host does not have
@register("dvfo", order=20, colour="#9c27b0", marker="o", live=False)
def make_dvfo(env, path: str | Path | None = None, **config: Any) -> DVFOLearner:
    """Registry factory: an untrained learner from ``DVFOConfig`` fields, or a saved one via ``path=``."""
    if path is not None:
        if config:
            raise ValueError(f"pass either path= or DVFOConfig fields, not both (got {sorted(config)})")
        return DVFOLearner.load(path, env)
    obs_dim, n_act = _spaces(env)
    return DVFOLearner(DVFOConfig.from_dict(config), obs_dim, n_act)


# --------------------------------------------------------------------------- 5. training loop

@dataclass
class DVFOResult:
    """What :func:`train` returns."""

    learner: DVFOLearner
    curve: pd.DataFrame  # one row per logged episode
    wall_time_s: float
    env_steps: int
    config: DVFOConfig = field(repr=False, default=None)


def train(config: DVFOConfig, callback: Callable[[int, DVFOLearner], bool | None] | None = None,
          callback_every: int = 1000, progress: bool = False,
          wrap_env: Callable[[gym.Env], gym.Env] | None = None) -> DVFOResult:
    """Train DVFO on ``config.scenarios`` (cycled per episode) for ``config.total_steps`` requests.

    ``callback(step, learner)``, when given, is called after every ``callback_every`` env steps (e.g. to
    evaluate the greedy policy); returning True stops training there. It must not use the learner's
    generators; a run that is not stopped is then identical to one without a callback. ``progress`` shows a
    tqdm bar over env steps (updated once per episode). ``wrap_env``, when given, wraps every training env
    (e.g. DRLDO's restriction to the offload share at the top frequencies, :mod:`bench.policies.drldo`).
    """
    from tqdm.auto import tqdm

    if callback is not None and callback_every < 1:
        raise ValueError(f"callback_every must be >= 1, got {callback_every}")
    t0 = time.perf_counter()
    seeds = Seeds.from_seed(config.seed)
    envs = {s: make_env(config, s) for s in dict.fromkeys(config.scenarios)}
    if wrap_env is not None:
        envs = {s: wrap_env(e) for s, e in envs.items()}
    first = envs[config.scenarios[0]]
    for name, e in envs.items():
        if _spaces(e) != _spaces(first):
            raise ValueError(f"scenario {name!r} gives different spaces than {config.scenarios[0]!r}")
    rows: list[dict[str, Any]] = []
    with torch_settings(config.torch_threads):
        learner = DVFOLearner(config, *_spaces(first), seeds=seeds)
        learner.condition_stats = condition_stats(list(envs.values()), seeds.conditions)
        step, episode, stop = 0, 0, False
        bar = tqdm(total=config.total_steps, desc="dvfo", unit="step", disable=not progress)
        while step < config.total_steps and not stop:
            scenario = config.scenarios[episode % len(config.scenarios)]
            env = envs[scenario]
            obs, _ = env.reset(seed=int(seeds.env.integers(2**31)))
            ep = {"reward": 0.0, "energy_mj": 0.0, "latency_ms": 0.0, "qos_ok": 0.0, "n": 0, "loss": []}
            done = False
            while not done and step < config.total_steps:
                action = learner.explore(obs)
                nxt, reward, term, trunc, info = env.step(action)
                diag = learner.update(Transition(obs, action, reward, nxt, term, trunc, info))
                obs, done, step = nxt, term or trunc, step + 1
                ep["reward"] += reward
                ep["energy_mj"] += info["energy_mj"]
                ep["latency_ms"] += info["latency_ms"]
                ep["qos_ok"] += info["qos_ok"]
                ep["n"] += 1
                if "loss" in diag:
                    ep["loss"].append(diag["loss"])
                if callback is not None and step % callback_every == 0 and callback(step, learner):
                    stop = True
                    break
            if episode % config.log_every_episodes == 0:
                n = ep["n"]
                rows.append({"step": step, "episode": episode, "scenario": scenario, "reward": ep["reward"] / n,
                             "energy_mj": ep["energy_mj"] / n, "latency_ms": ep["latency_ms"] / n,
                             "qos_ok": ep["qos_ok"] / n, "epsilon": learner.epsilon(),
                             "loss": float(np.mean(ep["loss"])) if ep["loss"] else float("nan"), "n_steps": n})
            episode += 1
            bar.update(ep["n"])
        bar.close()
        if learner._snapshots and step == config.total_steps:
            select_snapshot(learner, envs, seeds.select)
    for e in envs.values():
        e.close()
    return DVFOResult(learner, pd.DataFrame(rows), time.perf_counter() - t0, step, config)


def select_snapshot(learner: DVFOLearner, envs: dict[str, gym.Env], rng: np.random.Generator) -> dict[str, Any]:
    """``select_snapshots``: score every candidate (the earlier windows' averages, then the acting weights) over one
    greedy episode of each training env, the same episode seeds for all, and make the best the online and target
    weights. Score: mean objective per request, E + λ·misses in mJ (``violation_cost_mj``), or ``-reward`` under
    the legacy reward; lower is better, a tie goes to the later window. Returns (and keeps as
    ``learner.selection``) the scores, oldest window first, and the chosen index."""
    lam = learner.config.violation_cost_mj
    candidates = learner._snapshots + [[p.detach().clone() for p in learner._params]]
    episode_seeds = [int(rng.integers(2**31)) for _ in envs]
    scores = []
    for weights in candidates:
        with torch.no_grad():
            torch._foreach_copy_(learner._params, weights)
        total, n = 0.0, 0
        for env, s in zip(envs.values(), episode_seeds):
            obs, _ = env.reset(seed=s)
            done = False
            while not done:
                obs, reward, term, trunc, info = env.step(learner.act(obs))
                total += (info["energy_mj"] + lam * (1.0 - float(info["qos_ok"]))) if lam is not None else -reward
                n += 1
                done = term or trunc
        scores.append(total / n)
    best = min(range(len(scores)), key=lambda i: (scores[i], -i))
    with torch.no_grad():
        torch._foreach_copy_(learner._params, candidates[best])
        torch._foreach_copy_(learner._target_params, candidates[best])
    learner._snapshots = []
    learner.selection = {"scores": scores, "chosen": best}
    return learner.selection


# --------------------------------------------------------------------------- 6. thinking while moving

class ConcurrentController:
    """Thinking-while-moving control loop (Xiao et al., ICLR 2020).

    As soon as request t starts executing, the observation for request t+1 is
    known to the agent (the env's observation carries the action still running
    and the time it has to go), so the next action is computed in a background
    thread while request t executes. Per request the controller records the
    real wall-clock decision time ``d`` of ``policy.act`` (measured in the
    worker thread) and the request's simulated execution time ``e``
    (``info["latency_ms"]``); the share of the decision hidden behind the
    execution is ``min(d, e) / d``.

    ``time_scale > 0`` makes the overlap physical: the main thread sleeps for
    ``e * time_scale`` (the execution window on a compressed clock) while the
    worker decides, and the exposed part is the time the main thread then
    still blocks on the worker; the hidden share is measured, not computed.
    With ``time_scale = 0`` (default) no time is slept and the exposed part is
    ``max(0, d - e)`` on the simulated clock. The first decision of an episode
    has nothing to overlap with and counts as fully exposed.
    """

    def __init__(self, policy, env, time_scale: float = 0.0):
        if time_scale < 0:
            raise ValueError(f"time_scale must be >= 0, got {time_scale}")
        self.policy, self.env, self.time_scale = policy, env, float(time_scale)

    @staticmethod
    def _timed_act(policy, obs) -> tuple[int, float]:
        t = time.perf_counter()
        a = policy.act(obs)
        return a, time.perf_counter() - t

    def run(self, n_steps: int, seed: int) -> pd.DataFrame:
        """Run ``n_steps`` requests (resetting the env as episodes end); one row per request."""
        env_seeds = np.random.default_rng(np.random.SeedSequence(seed))
        rows: list[dict[str, Any]] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dvfo-think") as pool:
            obs, _ = self.env.reset(seed=int(env_seeds.integers(2**31)))
            action, d_s = self._timed_act(self.policy, obs)  # nothing executes yet: fully exposed
            exposed_s, first = d_s, True
            for _ in range(n_steps):
                nxt, _r, term, trunc, info = self.env.step(action)  # request starts executing
                exec_ms = float(info["latency_ms"])
                done = term or trunc
                if done:
                    future = None
                else:
                    future = pool.submit(self._timed_act, self.policy, nxt)  # think while moving
                    if self.time_scale > 0:
                        t = time.perf_counter()
                        time.sleep(exec_ms / 1e3 * self.time_scale)
                        window_s = time.perf_counter() - t
                        t = time.perf_counter()
                        nxt_action, nxt_d_s = future.result()
                        nxt_exposed_s = time.perf_counter() - t
                    else:
                        nxt_action, nxt_d_s = future.result()
                        window_s = exec_ms / 1e3
                        nxt_exposed_s = max(0.0, nxt_d_s - window_s)
                # the main thread's wait can exceed the decision itself by the thread hand-off (wake-up,
                # scheduling): a real cost of concurrency, reported apart from the exposed decision time
                shown_s = min(exposed_s, d_s)
                rows.append({"decision_us": d_s * 1e6, "wait_us": exposed_s * 1e6, "exposed_us": shown_s * 1e6,
                             "handoff_us": (exposed_s - shown_s) * 1e6, "execution_ms": exec_ms,
                             "hidden_share": 1.0 - shown_s / d_s if d_s > 0 else 1.0,
                             "action": action, "first_of_episode": first})
                first = done
                if done:
                    obs, _ = self.env.reset(seed=int(env_seeds.integers(2**31)))
                    action, d_s = self._timed_act(self.policy, obs)
                    exposed_s = d_s
                else:
                    action, d_s, exposed_s = nxt_action, nxt_d_s, nxt_exposed_s
        return pd.DataFrame(rows)


def hidden_decision_share(learner, env, n_steps: int = 500, seed: int = 0, time_scale: float = 0.0) -> dict[str, float]:
    """How much DVFO decision latency thinking-while-moving hides (see :class:`ConcurrentController`).

    Returns mean / p50 / p99 decision time (µs, real wall clock of ``learner.act``
    on this CPU), mean simulated execution time (ms), mean exposed decision time
    with and without concurrency (µs), and ``share_hidden`` = mean over requests
    of ``min(decision, execution) / decision`` (first decisions of episodes count
    as not hidden).
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    threads = getattr(getattr(learner, "config", None), "torch_threads", 1)
    with torch_settings(threads):
        df = ConcurrentController(learner, env, time_scale).run(n_steps, seed)
    d = df["decision_us"].to_numpy()
    return {"n_requests": int(len(df)), "decision_us_mean": float(d.mean()),
            "decision_us_p50": float(np.percentile(d, 50)), "decision_us_p99": float(np.percentile(d, 99)),
            "execution_ms_mean": float(df["execution_ms"].mean()),
            "exposed_us_sequential_mean": float(d.mean()),
            "exposed_us_concurrent_mean": float(df["exposed_us"].mean()),
            "handoff_us_mean": float(df["handoff_us"].mean()),  # thread hand-off (0 when time_scale = 0)
            "share_hidden": float(df["hidden_share"].mean()), "time_scale": float(time_scale)}
