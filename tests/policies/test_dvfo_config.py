"""DVFO's configuration and registry entry load without torch (issue 25); what trains or acts still gets it."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym

from bench.paths import PARAMS_FILE, REPO_ROOT

#: prints which of the named modules the code before it loaded
_LOADED = "\nimport sys\nprint(sorted(m for m in ('torch', 'bench.policies.dvfo') if m in sys.modules))\n"


def _loaded_after(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code + _LOADED], capture_output=True, text=True, timeout=120,
                         cwd=REPO_ROOT)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_importing_the_policies_and_validating_params_does_not_import_torch():
    # every `python -m bench` command and stage does both; torch cost 2-4 CPU-s of each that did nothing with it
    assert _loaded_after("import bench.policies") == "[]"
    assert _loaded_after(f"from bench.config import load_params\nload_params({str(PARAMS_FILE)!r})") == "[]"
    assert _loaded_after("from bench.policies import LEARNERS\nLEARNERS['dvfo'].config_class()") == "[]"


def test_building_a_dvfo_learner_imports_the_training_module():
    code = ("import gymnasium as gym\nfrom bench.policies import make_policy\nfrom bench.policies.dvfo_config import "
            "DVFOConfig\nenv = gym.make('bench/DVFO-v0', scenario='dvfo_trickle_5mbps', "
            "**DVFOConfig.ci().env_kwargs())\nprint(type(make_policy('dvfo', env, **DVFOConfig.ci().to_dict())))")
    assert _loaded_after(code) == "['bench.policies.dvfo', 'torch']"


def test_the_training_module_re_exports_the_config_and_agrees_on_its_choices():
    import bench.policies
    from bench.policies import LEARNERS, REGISTRY, policy_info
    from bench.policies import dvfo, dvfo_config

    assert dvfo.DVFOConfig is dvfo_config.DVFOConfig
    assert LEARNERS["dvfo"].config_class() is dvfo.DVFOConfig and LEARNERS["dvfo"].module == "bench.policies.dvfo"
    assert tuple(dvfo.LOSSES) == dvfo_config.LOSS_NAMES and tuple(dvfo.DTYPES) == dvfo_config.PRECISIONS
    info = policy_info("dvfo")
    assert (info.order, info.colour, info.marker, info.live, info.privileged, info.reference) == (
        20, "#9c27b0", "o", False, False, False)
    assert REGISTRY["dvfo"] is bench.policies.dvfo_policy  # the thin factory; it calls dvfo.make_dvfo


def test_the_registry_factory_builds_what_make_dvfo_builds(tmp_path):
    from bench.policies import make_policy
    from bench.policies.dvfo import DVFOConfig, DVFOLearner, make_dvfo

    cfg = DVFOConfig.ci(hidden_sizes=(8,))
    env = gym.make("bench/DVFO-v0", scenario="dvfo_trickle_5mbps", **cfg.env_kwargs())
    learner = make_policy("dvfo", env, **cfg.to_dict())
    assert isinstance(learner, DVFOLearner) and learner.config == cfg
    path = learner.save(tmp_path / "l")
    loaded = make_policy("dvfo", env, path=path)
    direct = make_dvfo(env, path=path)
    obs, _ = env.reset(seed=0)
    assert loaded.act(obs) == direct.act(obs) == learner.act(obs)


def test_a_saved_learners_digest_needs_no_torch(tmp_path):
    # the report's staleness check (bench.pipeline.robustness.learner_digest) digests the trained learners
    from bench.policies.dvfo import DVFOConfig, make_dvfo, policy_digest

    cfg = DVFOConfig.ci(hidden_sizes=(8,))
    env = gym.make("bench/DVFO-v0", scenario="dvfo_trickle_5mbps", **cfg.env_kwargs())
    path = make_dvfo(env, **cfg.to_dict()).save(tmp_path / "l")
    code = (f"from bench.pipeline.robustness import learner_digest\nd = learner_digest({str(path)!r})\n"
            f"assert d == {policy_digest(path)!r}, d")
    assert _loaded_after(code) == "[]"
