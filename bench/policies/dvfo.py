"""DVFO (Zhang et al., TMC 2024): a DQN over ``bench/DVFO-v0`` with thinking-while-moving.

The agent picks, per inference request, the edge device's (f_CPU, f_GPU, f_MEM)
levels and the share xi of feature maps offloaded to the cloud (one ``Discrete``
index, see :class:`bench.sim.envs.DVFOEnv`). Read top to bottom, CleanRL style:

1. :class:`DVFOConfig` - every knob, one docstring each (``DVFOConfig.ci()`` is
   the few-second configuration for tests and notebooks); it is written in
   :mod:`bench.policies.dvfo_config` (re-exported here), which params.yaml's
   validation and the policy registry import without torch (issue 25);
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

from bench.policies.base import Learner, Transition
# the configuration, the saved files' names and the digest of a saved learner live in a torch-free module (issue 25:
# params validation, `import bench.policies` and the report's staleness check load them without torch); re-exported
# here, where training code, saved learners and the tests have always found them
from bench.policies.dvfo_config import (CONFIG_FILE, LOSS_NAMES, PRECISIONS, TRAINING_ONLY, WEIGHTS_FILE,  # noqa: F401
                                       DVFOConfig, policy_digest)
from bench.sim.envs import DVFO_ID

#: TD losses :attr:`DVFOConfig.loss` allows (elementwise, no reduction)
LOSSES = {"huber": lambda q, y: nn.functional.smooth_l1_loss(q, y, reduction="none"),
          "mse": lambda q, y: nn.functional.mse_loss(q, y, reduction="none")}
#: the Q-network's floating-point types :attr:`DVFOConfig.precision` allows (torch, numpy)
DTYPES = {"float32": (torch.float32, np.float32), "float64": (torch.float64, np.float64)}
if tuple(LOSSES) != LOSS_NAMES or tuple(DTYPES) != PRECISIONS:  # pragma: no cover - the two lists are edited together
    raise ImportError("bench.policies.dvfo: LOSSES / DTYPES and dvfo_config's LOSS_NAMES / PRECISIONS differ")
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- 1. configuration
# DVFOConfig: bench/policies/dvfo_config.py (imported above)

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


def _spaces(env) -> tuple[int, int]:
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(act_space, gym.spaces.Discrete) or len(obs_space.shape) != 1:
        raise ValueError(f"DVFO needs a flat Box observation and a Discrete action space; got {obs_space}, {act_space}")
    return int(obs_space.shape[0]), int(act_space.n)


def make_dvfo(env, path: str | Path | None = None, **config: Any) -> DVFOLearner:
    """An untrained learner from ``DVFOConfig`` fields, or a saved one via ``path=``: what ``make_policy("dvfo", ...)``
    builds (registered, with what the suite knows about it, by a torch-free factory in
    :mod:`bench.policies.dvfo_config` that calls this one: issue 25)."""
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
