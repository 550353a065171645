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

Some baselines are *privileged*: the oracle sees the realised draw of the
current request, the hindsight statics see the whole scenario. They say so in
their docstring (``privileged = True``) and exist only as references.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np


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
REGISTRY: dict[str, PolicyFactory] = {}


def register(name: str) -> Callable[[PolicyFactory], PolicyFactory]:
    """Decorator: make a policy class/factory available as ``make_policy(name, env)``."""

    def deco(factory: PolicyFactory) -> PolicyFactory:
        if name in REGISTRY and REGISTRY[name] is not factory:
            raise ValueError(f"policy name {name!r} is already registered")
        REGISTRY[name] = factory
        return factory

    return deco


def make_policy(name: str, env, **kwargs: Any) -> Policy:
    """Build the policy registered as ``name`` for ``env``; unknown names list the allowed ones."""
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown policy {name!r}{hint}; registered policies: {sorted(REGISTRY)}")
    return REGISTRY[name](env, **kwargs)
