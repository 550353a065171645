"""The one small policy interface every scheduler implements.

* :class:`Policy` - ``act(obs) -> action`` (an ``int`` index into the env's
  ``Discrete`` action space); ``reset()`` at the start of an episode.
* :class:`Learner` - a policy that also learns: ``update(transition)`` after every
  step, and ``save(path)`` / ``load(path, env)`` in safe formats (JSON, npz,
  safetensors; never pickle).

Policies are built by name through :data:`REGISTRY` (names are what params.yaml
uses): ``make_policy("autoscale", env, **kwargs)``. A factory receives the
environment (gymnasium ``Env``; use ``env.unwrapped`` for the simulator,
``action_table`` and the current request) and keyword arguments.

:data:`REGISTRY` and :data:`LEARNERS` are :class:`hw.registry.Registry` objects: besides
``@register(name)`` in this package, installed distributions add policies through the
entry-point group ``edge_inference_bench.policies`` (and learners through
``edge_inference_bench.learners``, each a :class:`LearnerSpec`), and a file of your own
project through ``plugins:`` in params.yaml (docs/extending.md).

Some baselines are *privileged*: the oracle sees the realised draw of the
current request, the hindsight statics see the whole scenario. They say so in
their class (``privileged = True``) and exist only as references.

What the suite's tables, figures and checks know about a policy (its row order, colour and
marker, whether it is a hindsight yardstick, privileged, able to run live, its name in prose)
is registered with it: ``@register(name, order=..., colour=..., ...)`` (:class:`PolicyInfo`),
read back with :func:`policy_info`. A plugin policy gets all of it by registering; nothing
downstream keeps a list of policy names.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from hw.registry import Registry


@dataclass(frozen=True)
class Transition:
    """One environment step as a learner sees it."""

    obs: np.ndarray
    action: int
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    info: dict[str, Any] = field(default_factory=dict)


class Policy:
    """Chooses an action for an observation."""

    #: registry name
    name: ClassVar[str] = "policy"
    #: True when the policy uses information a real scheduler cannot have (oracle, hindsight)
    privileged: ClassVar[bool] = False

    def reset(self) -> None:
        """Called at the start of every episode (after ``env.reset``)."""

    def act(self, obs: np.ndarray) -> int:
        raise NotImplementedError


class Learner(Policy):
    """A policy that learns from transitions and can be saved without pickle."""

    def update(self, transition: Transition) -> dict[str, float]:
        """Learn from one transition; returns diagnostics (loss, epsilon, ...) or {}."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | Path, env) -> "Learner":
        raise NotImplementedError


PolicyFactory = Callable[..., Policy]
#: policy name -> ``factory(env, **kwargs) -> Policy`` (plugins: entry-point group ``edge_inference_bench.policies``)
REGISTRY: Registry = Registry("policy", "policies")


@dataclass(frozen=True)
class PolicyInfo:
    """What tables, figures and checks know about a policy, given where it is registered
    (``@register(name, **info)``); every field has a default, so a plugin may give none."""

    order: float | None = None
    """Its row in tables and legends (lower first); None: after the ordered ones, alphabetically."""
    colour: str | None = None
    """Its colour in every figure; None: a stable one derived from its name (never a registered one's)."""
    marker: str | None = None
    """Its matplotlib marker in every figure; None: derived from its name, like the colour."""
    reference: bool = False
    """A hindsight yardstick a learner is measured against (the bound's schedule, the greedy oracle): drawn
    as an open star and named in bold."""
    privileged: bool | None = None
    """Sees what no real scheduler can (the realised draw, the whole scenario): a reference only, never run
    live. None: the policy class's own ``privileged`` (a factory's return annotation names the class)."""
    live: bool | None = None
    """Can run on the live testbed. None: when not privileged (a privileged policy needs the realised episode);
    False e.g. for an action set the testbed's host does not have."""
    label: str = ""
    """Its name in prose (claims' sentences), e.g. "the distilled depth-3 rule"; empty: the registry name."""


#: policy name -> what was registered about it (:func:`policy_info` fills in the rest)
_INFO: dict[str, PolicyInfo] = {}


def register(name: str, **info: Any) -> Callable[[PolicyFactory], PolicyFactory]:
    """Decorator: make a policy class/factory available as ``make_policy(name, env)``, with what the
    suite should know about it (the fields of :class:`PolicyInfo`, e.g. ``order=..., colour=...``)."""
    meta = PolicyInfo(**info)  # a misspelt field is a TypeError here, at import

    def deco(factory: PolicyFactory) -> PolicyFactory:
        REGISTRY.register(name, factory)
        _INFO[name] = meta
        return factory

    return deco


def _class_privileged(factory: Any) -> bool:
    """``privileged`` of the class a factory is or returns (its return annotation); False if unknown."""
    cls = factory if isinstance(factory, type) else None
    if cls is None:
        try:
            cls = typing.get_type_hints(factory).get("return")
        except Exception:  # an annotation that does not resolve (a plugin's forward reference)
            cls = None
    return bool(getattr(cls, "privileged", False)) if isinstance(cls, type) else False


def policy_info(name: str) -> PolicyInfo:
    """What is known about the policy registered as ``name`` (a default :class:`PolicyInfo` for a name
    nothing registered, e.g. one in an old results table). An entry-point plugin may carry its info as
    the attribute ``policy_info`` of its class or factory."""
    factory = REGISTRY.get(name)
    info = _INFO.get(name) or getattr(factory, "policy_info", None)
    info = info if isinstance(info, PolicyInfo) else PolicyInfo()
    if info.privileged is None:
        info = replace(info, privileged=factory is not None and _class_privileged(factory))
    if info.live is None:
        info = replace(info, live=not info.privileged)
    return info


def privileged_policies() -> list[str]:
    """Every registered policy that is privileged (plugins included)."""
    return sorted(n for n in REGISTRY if policy_info(n).privileged)


def live_excluded() -> list[str]:
    """Every registered policy that cannot run on the live testbed (``PolicyInfo.live`` false: privileged ones
    need the realised episode; DVFO's action set is a Jetson's, run live only at a fixed split)."""
    return sorted(n for n in REGISTRY if not policy_info(n).live)


def make_policy(name: str, env, **kwargs: Any) -> Policy:
    """Build the policy registered as ``name`` for ``env``; unknown names list the allowed ones."""
    if name not in REGISTRY:
        raise ValueError(REGISTRY.unknown_message(name))
    return REGISTRY[name](env, **kwargs)


@dataclass(frozen=True)
class LearnerSpec:
    """What the pipeline needs to train a learner and evaluate what it learned: one registration.

    ``module`` holds the CleanRL-style single file: a config dataclass named ``config``
    (with ``from_dict(dict)``, ``env_kwargs()`` and the fields ``edge`` and ``seed``), a
    ``train(config, progress=False)`` returning an object with ``learner`` (a
    :class:`Learner`), ``curve`` (a DataFrame with ``step`` and ``reward``), ``env_steps``
    and ``wall_time_s``. The trained policy is evaluated as ``make_policy(name, env, path=...)``,
    so the learner's class is also registered in :data:`REGISTRY` under the same name.

    ``config_module``, when given, is where the config class is defined (``module`` may re-export it): params.yaml's
    validation reads the config class from there without importing ``module`` and what it imports (issue 25: the
    DVFO training module imports torch, 2-4 CPU-s in every process that only validated params.yaml).
    """

    name: str
    #: gymnasium id of the environment it learns on (and is evaluated on)
    env_id: str
    #: module holding ``train`` and the config class
    module: str
    #: name of the config dataclass in ``module``
    config: str
    #: module defining the config class, when importing ``module`` costs more than validation should pay
    #: (None: ``module``)
    config_module: str | None = None

    def load_module(self):
        import importlib

        return importlib.import_module(self.module)

    def config_class(self) -> type:
        import importlib

        if self.config_module is not None:
            return getattr(importlib.import_module(self.config_module), self.config)
        return getattr(self.load_module(), self.config)

    def train(self, config, progress: bool = False):
        return self.load_module().train(config, progress=progress)


def _check_learner(name: str, value: object) -> None:
    if not isinstance(value, LearnerSpec):
        raise ValueError(f"learner {name!r}: {value!r} is not a bench.policies.LearnerSpec")


#: learner name -> :class:`LearnerSpec` (plugins: entry-point group ``edge_inference_bench.learners``)
LEARNERS: Registry = Registry("learner", "learners", check=_check_learner)
LEARNERS.register("autoscale", LearnerSpec("autoscale", "bench/AutoScale-v0", "bench.policies.autoscale",
                                           "AutoScaleConfig"))
# its config from the torch-free module that bench.policies.dvfo re-exports it from (issue 25)
LEARNERS.register("dvfo", LearnerSpec("dvfo", "bench/DVFO-v0", "bench.policies.dvfo", "DVFOConfig",
                                      config_module="bench.policies.dvfo_config"))
