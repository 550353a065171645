"""Vector environments: N copies of AutoScale-v0 / DVFO-v0 stepped in one batch-simulator call.

``gymnasium.make_vec("bench/AutoScale-v0", num_envs=N)`` builds
:class:`AutoScaleVectorEnv` (the ``vector_entry_point`` of the registered ids);
``vectorization_mode="sync"`` still gives gymnasium's ``SyncVectorEnv`` of the
single env. One :meth:`step` gathers the N current requests, evaluates them with
the one kernel (:func:`bench.sim.kernel.step_rows`: one numpy call per array op
for all N) and carries each copy's queue, radio and thermal state
(:class:`~bench.sim.kernel.Carry`; for DVFO also the previous action) in arrays.

Semantics are those of ``SyncVectorEnv`` over the single env with its
``TimeLimit``: copy ``i`` reset with ``seed + i`` realises the same episode as
``gym.make(id).reset(seed=seed + i)`` and, given the same actions, returns the
same observations, rewards and truncations (``tests/sim/test_vector.py`` checks
this with gymnasium's ``check_environments_match`` and the outcomes to 1e-9);
autoreset is gymnasium's default ``NEXT_STEP`` (the step after a truncation
resets that copy and ignores its action). ``info`` holds per-copy arrays of the
step's outcome (``energy_mj``, ``latency_ms``, ``qos_ok``, ``timed_out``, ...)
with ``_key`` masks, like ``SyncVectorEnv``'s; the per-episode
:class:`~bench.sim.core.EnergyLedger` is the single env's (``env.unwrapped.ledger``).

:class:`SB3VecEnv` adapts either vector env to Stable-Baselines3's ``VecEnv``
(same-step reset, ``terminal_observation`` in the infos), so SB3 learners train
on it directly.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from types import SimpleNamespace

from bench.sim.core import States
from bench.sim.envs import _MAX_MS, OBJECTIVE_REWARD_SCALE_MJ, AutoScaleEnv, DVFOEnv, _SimEnv, radio_thermal_obs
from bench.sim.kernel import Carry, RequestInputs, advance, step_rows
_INFO_KEYS = ("energy_mj", "remote_energy_mj", "latency_ms", "accuracy", "accuracy_loss", "qos_ok", "timed_out",
              "tail_mj", "promo_mj", "throttled", "action", "step")


class _SimVectorEnv(VectorEnv):
    """N copies of a :class:`~bench.sim.envs._SimEnv`, stepped together (see the module docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    env_class: type[_SimEnv]

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, **env_kwargs):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs!r}")
        self.env = env = self.env_class(**env_kwargs)  # one template: the system, spaces and episode realisation
        self.sim = env.sim
        self.num_envs = n = int(num_envs)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.observation_space = batch_space(env.observation_space, n)
        self.action_space = batch_space(env.action_space, n)
        self.render_mode = None
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._buf: dict[str, np.ndarray] | None = None
        self._rows = 0  # rows kept per copy: the episode's steps (+1 for the observation after a TimeLimit)
        self._T = np.zeros(n, dtype=np.int64)  # requests per copy's episode
        self._L = np.zeros(n, dtype=np.int64)  # steps per copy's episode (TimeLimit applied)
        self._t = np.zeros(n, dtype=np.int64)
        self._carry = Carry.fresh(n, self.sim.kernel)
        self._autoreset = np.zeros(n, dtype=bool)
        self._started = False

    # ------------------------------------------------------------------ episodes
    def _obs_table(self, states: States) -> np.ndarray:
        return self.env._obs_table(states)

    def _reset_one(self, i: int, seed: int | None) -> None:
        if seed is not None or self._rngs[i] is None:
            self._rngs[i], _ = seeding.np_random(seed)
        _, states, draws = self.env.realise(self._rngs[i])
        T = len(states)
        L = T if self.max_episode_steps is None else min(T, self.max_episode_steps)
        rows = min(T, L + 1)
        # what does not depend on the policy, per request: realised route goodput/RTT, interference, jitter, obs
        x = self.sim.request_inputs(states, draws)
        cols = {**{f: getattr(x, f) for f in RequestInputs.__dataclass_fields__}, "obs": self._obs_table(states)}
        if self._buf is None or rows > self._rows:  # (re)allocate: every copy keeps `rows` rows
            old, old_rows = self._buf, self._rows
            self._rows = max(rows, self._rows)
            self._buf = {k: np.zeros((self.num_envs * self._rows,) + v.shape[1:], dtype=v.dtype)
                         for k, v in cols.items()}
            if old is not None:
                for k, v in old.items():
                    self._buf[k].reshape((self.num_envs, self._rows) + v.shape[1:])[:, :old_rows] = \
                        v.reshape((self.num_envs, old_rows) + v.shape[1:])
        base = i * self._rows
        for k, v in cols.items():
            self._buf[k][base:base + rows] = v[:rows]
        self._T[i], self._L[i], self._t[i] = T, L, 0
        fresh = Carry.fresh(1, self.sim.kernel)
        for f in Carry.__dataclass_fields__:
            getattr(self._carry, f)[i] = getattr(fresh, f)[0]

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None):
        """Reset every copy; ``seed`` an int (copy i gets ``seed + i``) or one seed per copy."""
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"expected {self.num_envs} seeds, got {len(seeds)}")
        for i, s in enumerate(seeds):
            self._reset_one(i, s)
        self._autoreset[:] = False
        self._started = True
        return self._observe(), {}

    # ------------------------------------------------------------------ stepping
    def _obs_rows(self) -> np.ndarray:
        return np.arange(self.num_envs) * self._rows + np.minimum(self._t, self._T - 1)

    def _observe(self) -> np.ndarray:
        return self._buf["obs"][self._obs_rows()]

    def _reward(self, out, x: dict[str, np.ndarray], a: np.ndarray, live: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(actions, dtype=np.int64).reshape(-1)
        if a.shape != (self.num_envs,) or a.min() < 0 or a.max() >= self.single_action_space.n:
            raise ValueError(f"actions must be {self.num_envs} integers in [0, {self.single_action_space.n}); "
                             f"got {actions!r}")
        resetting = self._autoreset.copy()
        for i in np.flatnonzero(resetting):  # NEXT_STEP autoreset: this step resets the copy, its action is ignored
            self._reset_one(int(i), None)
        live = ~resetting
        rows = np.arange(self.num_envs) * self._rows + self._t
        b = self._buf
        x = RequestInputs(**{k: v[rows] for k, v in b.items() if k != "obs"})
        raw = step_rows(self.sim.kernel, x, np.arange(self.num_envs), a, self._carry)
        out = SimpleNamespace(**raw)
        self._before = self._carry
        reward = np.where(live, self._reward(out, x, a, live), 0.0)
        info_hot = self._carry.throttled.copy()
        self._carry = advance(self._carry, raw, x.interarrival_ms, live=live, thermal=self.sim.thermal_params)
        step = self._t.copy()
        self._t = self._t + live
        truncated = live & (self._t >= self._L)
        self._autoreset = truncated
        info = self._info(out, live, a, step, info_hot)
        return self._observe(), reward, np.zeros(self.num_envs, dtype=bool), truncated, info

    def _info(self, out, live, a, step, hot) -> dict[str, Any]:
        vals = {"energy_mj": out.energy_mj, "remote_energy_mj": out.remote_energy_mj, "latency_ms": out.latency_ms,
                "accuracy": out.accuracy, "accuracy_loss": out.accuracy_loss, "qos_ok": out.qos_ok,
                "timed_out": out.timed_out, "tail_mj": out.tail_mj, "promo_mj": out.promo_mj, "throttled": hot,
                "action": a, "step": step}
        info: dict[str, Any] = {}
        for k, v in vals.items():
            info[k] = np.asarray(v)
            info["_" + k] = live
        return info

    def close_extras(self, **kwargs):
        self.env.close()


class AutoScaleVectorEnv(_SimVectorEnv):
    """``bench/AutoScale-v0`` x N in one batch step (see :mod:`bench.sim.vector`); kwargs as :class:`AutoScaleEnv`."""

    env_class = AutoScaleEnv

    def _observe(self):
        obs = super()._observe()
        c = self._carry
        obs[:, 12] = np.minimum(np.maximum(c.local_free.max(axis=1, initial=0.0), 0.0), _MAX_MS)
        obs[:, 13] = np.minimum(np.maximum(c.tx_free.max(axis=1, initial=0.0), 0.0), _MAX_MS)
        for i, r in self.env._per_target:  # each local target's own backlog (cpu, gpu, dsp)
            obs[:, i] = np.minimum(np.maximum(c.local_free[:, r], 0.0), _MAX_MS)
        return obs

    def _reward(self, out, x, a, live):
        if self.env.objective is not None:  # as AutoScaleEnv.step: -(E + λ·miss) in joules
            return -self.env.objective.cost(out.energy_mj, out.qos_ok) / OBJECTIVE_REWARD_SCALE_MJ
        with np.errstate(divide="ignore"):
            return np.where(out.qos_ok, 1000.0 / out.energy_mj, -self.env.violation_penalty * (1.0 + out.violation))


class DVFOVectorEnv(_SimVectorEnv):
    """``bench/DVFO-v0`` x N in one batch step (see :mod:`bench.sim.vector`); kwargs as :class:`DVFOEnv`."""

    env_class = DVFOEnv

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, **env_kwargs):
        super().__init__(num_envs, max_episode_steps, **env_kwargs)
        self._prev0 = self.env.initial_prev()
        self._prev = np.full(self.num_envs, self._prev0, dtype=np.int64)
        self._prev_obs = self.env.prev_obs_table()

    def _reset_one(self, i, seed):
        super()._reset_one(i, seed)
        self._prev[i] = self._prev0

    def _observe(self):
        rows = self._obs_rows()
        obs = self._buf["obs"][rows]
        obs[:, 6:10] = self._prev_obs[self._prev]
        obs[:, 10] = np.minimum(np.maximum(self._carry.local_free[:, 0], 0.0) / self._buf["interarrival_ms"][rows], 10.0)
        c, r = self._carry, self.env._radio
        busy, connected, hot = radio_thermal_obs(c.tx_free[:, r], c.radio_idle[:, r], self.env._route_tail_ms, c.throttled)
        obs[:, 15], obs[:, 16], obs[:, 17] = busy, connected, hot
        return obs

    def _reward(self, out, x, a, live):
        e = self.env
        w = x.workload
        if e.objective is not None:  # as DVFOEnv.step: -(E + λ·miss) / E_ref
            reward = -(e.w_energy * e.objective.cost(out.energy_mj, out.qos_ok) / e.e_ref_mj[w]
                       + e.w_time * out.latency_ms / e.t_ref_ms[w])
        else:
            reward = -(e.w_energy * out.energy_mj / e.e_ref_mj[w] + e.w_time * out.latency_ms / e.t_ref_ms[w])
            reward = reward - np.where(out.qos_ok, 0.0, e.qos_penalty)
        self._last_wait = np.maximum(self._carry.local_free[:, 0], 0.0)
        self._prev = np.where(live, a, self._prev)
        return reward

    def _info(self, out, live, a, step, hot):
        info = super()._info(out, live, a, step, hot)
        info["wait_ms"], info["_wait_ms"] = self._last_wait, live
        return info


# --------------------------------------------------------------------------- Stable-Baselines3

def SB3VecEnv(venv: _SimVectorEnv):
    """A Stable-Baselines3 ``VecEnv`` over one of these vector envs (same-step reset, ``terminal_observation``)."""
    from stable_baselines3.common.vec_env import VecEnv

    class _Adapter(VecEnv):
        def __init__(self, v: _SimVectorEnv):
            self.venv = v
            super().__init__(v.num_envs, v.single_observation_space, v.single_action_space)
            self._seed = None
            self._actions = None

        def reset(self):
            obs, _ = self.venv.reset(seed=self._seed)
            self._seed = None
            return obs

        def step_async(self, actions):
            self._actions = actions

        def step_wait(self):
            v = self.venv
            obs, rew, term, trunc, info = v.step(self._actions)
            done = term | trunc
            infos = [{} for _ in range(self.num_envs)]
            if done.any():
                for i in np.flatnonzero(done):
                    infos[i] = {"terminal_observation": obs[i].copy(), "TimeLimit.truncated": bool(trunc[i])}
                    v._reset_one(int(i), None)
                v._autoreset[done] = False
                obs = v._observe()
            return obs, rew.astype(np.float32), done, infos

        def close(self):
            self.venv.close()

        def seed(self, seed=None):
            self._seed = seed
            return [None if seed is None else seed + i for i in range(self.num_envs)]

        def get_attr(self, attr_name, indices=None):
            return [getattr(self.venv.env, attr_name) for _ in self._get_indices(indices)]

        def set_attr(self, attr_name, value, indices=None):
            setattr(self.venv.env, attr_name, value)

        def env_method(self, method_name, *args, indices=None, **kwargs):
            return [getattr(self.venv.env, method_name)(*args, **kwargs) for _ in self._get_indices(indices)]

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False for _ in self._get_indices(indices)]

    return _Adapter(venv)
