"""What the suite knows about a policy is registered with it (bench.policies.PolicyInfo), and consulted."""

from __future__ import annotations

import pytest

from bench.config import ParamsError, params_from_dict
from bench.policies import REGISTRY, Policy, policy_info, privileged_policies, register
from bench.policies.base import _INFO


def test_privileged_is_read_from_the_policy_class():
    # the classes say ``privileged = True``; their factories' return annotations name them
    assert privileged_policies() == ["best_found_schedule", "best_static_dnn", "best_static_dnn_signal", "bound_schedule",
                                     "edge_best_static", "greedy_oracle", "oracle"]
    assert not policy_info("cpu_only").privileged and not policy_info("autoscale").privileged


def test_every_shipped_factory_names_its_policy_class():
    """The inference above needs a class or a return annotation that resolves; a factory without one
    would silently count as unprivileged."""
    import typing

    for name in REGISTRY:
        factory = REGISTRY[name]
        if not getattr(factory, "__module__", "").startswith("bench."):
            continue
        cls = factory if isinstance(factory, type) else typing.get_type_hints(factory).get("return")
        assert isinstance(cls, type) and issubclass(cls, Policy), name


def test_live_excludes_the_privileged_and_what_registers_live_false():
    assert not policy_info("greedy_oracle").live and not policy_info("best_static_dnn").live
    assert not policy_info("dvfo").live and policy_info("cpu_only").live
    assert policy_info("bound_schedule").live  # replayed from the simulated twin (registered live=True)
    for bad in ("best_static_dnn_signal", "greedy_oracle", "dvfo"):
        with pytest.raises(ParamsError, match=rf"testbed.policies: \['{bad}'\] cannot run live"):
            params_from_dict({"testbed": {"policies": ["cpu_only", bad]}})


def test_a_plugin_policy_is_privileged_by_its_class():
    class Peek(Policy):
        privileged = True

        def act(self, obs):
            return 0

    def make_peek(env, **_) -> Peek:
        return Peek()

    try:
        register("tidy_peek")(Peek)
        register("tidy_peek_factory", label="the peeking rule")(make_peek)
        assert policy_info("tidy_peek").privileged and not policy_info("tidy_peek").live
        assert policy_info("tidy_peek_factory").label == "the peeking rule"
        assert "tidy_peek" in privileged_policies()
    finally:
        for name in ("tidy_peek", "tidy_peek_factory"):
            REGISTRY.pop(name, None)
            _INFO.pop(name, None)


def test_an_unregistered_name_gets_defaults():
    info = policy_info("no_such_policy_here")
    assert info.order is None and info.colour is None and not info.privileged and not info.reference
