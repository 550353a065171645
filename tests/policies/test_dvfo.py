"""DVFO learner: learnability on a small env with a known optimum, determinism, save/load, thinking-while-moving."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

import bench.sim  # noqa: F401  (registers the envs)
from bench.policies import make_policy
from bench.policies.dvfo import (DVFOConfig, DVFOLearner, ConcurrentController, hidden_decision_share, make_env,
                                 train)

# few levels so that exhaustive evaluation is cheap: 2 x 3 x 2 x 3 = 36 actions
SMALL = dict(n_cpu_levels=2, n_gpu_levels=3, n_mem_levels=2, xi_levels=(0.0, 0.4, 1.0), hidden_sizes=(64, 64))


@pytest.fixture(scope="module")
def tiny_scenario(tmp_path_factory) -> str:
    """One workload, constant 5 Mbit/s cap, no interference: the best action is the same for every request.

    ResNet-50 (was EfficientNet-B0): since energy is counted above the idle baseline (idle power is no
    longer charged per unit of latency), two EfficientNet-B0 actions tie within 0.1%, so no unique best
    action existed; ResNet-50's best action leads the second by about 12%.
    """
    path = tmp_path_factory.mktemp("scen") / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "steps": 200, "interarrival_ms": 500,
        "signal": {"wifi": {"kind": "constant", "level": "strong"}, "lte": {"kind": "constant", "level": "medium"}},
        "bandwidth_cap_mbps": {"kind": "constant", "value": 5.0}, "interference": {"kind": "none"},
        "workload_mix": [{"workload": "resnet50", "qos_ms": 200, "max_accuracy_loss": 0.01}]}))
    return str(path)


@pytest.fixture(scope="module")
def tiny_config(tiny_scenario) -> DVFOConfig:
    # 12,000 steps (was 4,000): with the flow's goodput separate from the PHY rate, a capped offload costs less
    # radio power, its rewards sit closer to the local actions' and the learner needs more samples to rank them
    # (8,000 sufficed before the objective reward and the faster DQN update; measured: greedy -0.820 vs best -0.793)
    # 16,000 (was 12,000) since the observation carries the radio and thermal state (issue 23): three more inputs
    # change the initial weights' draws and 12,000 again left the greedy policy on the second-best action after
    # the first request (measured: -0.8203 vs -0.7930; 16,000: -0.7930)
    # 24,000 (was 16,000) since the calibration refit moved the Jetson's per-class throughputs (issue 22) and DVFO
    # replays uniformly (issue 23): at 16,000 seed 0 stopped on the second-best action (-0.8206 vs -0.7944),
    # seed 1 found the best; at 24,000 seeds 0-4 all find it (measured: train, then the greedy rollout below)
    return DVFOConfig.ci(scenarios=(tiny_scenario,), total_steps=24_000, learning_starts=400, max_episode_steps=None,
                         **SMALL)


@pytest.fixture(scope="module")
def trained(tiny_config):
    return train(tiny_config)


def _mean_reward(env, choose, seed: int) -> float:
    obs, _ = env.reset(seed=seed)
    total, n, done = 0.0, 0, False
    while not done:
        obs, r, term, trunc, _ = env.step(choose(obs))
        total, n, done = total + r, n + 1, term or trunc
    return total / n


def test_greedy_policy_reaches_best_fixed_action(trained, tiny_config, tiny_scenario):
    env = make_env(tiny_config, tiny_scenario)
    seeds = (1000, 1001)  # evaluation seeds, not used in training
    # exhaustive evaluation of every constant action under the same episodes
    fixed = np.array([np.mean([_mean_reward(env, lambda o, a=a: a, s) for s in seeds])
                      for a in range(env.action_space.n)])
    greedy = np.mean([_mean_reward(env, trained.learner.act, s) for s in seeds])
    best = fixed.max()
    # derived tolerance: 2% of the best mean reward; it must also separate best from second best
    tol = 0.02 * abs(best)
    assert np.sort(fixed)[-2] < best - tol, "test env must have a unique best action for the check to mean anything"
    assert greedy >= best - tol, f"greedy mean reward {greedy:.4f} vs best fixed {best:.4f}"
    # with a constant state the optimum is one action: the learned policy should pick it for every request
    obs, _ = env.reset(seed=seeds[0])
    assert trained.learner.act(obs) == int(np.argmax(fixed))


def test_learning_curve_columns_and_steps(trained, tiny_config):
    curve = trained.curve
    for col in ("step", "episode", "reward", "energy_mj", "latency_ms", "qos_ok"):
        assert col in curve.columns
    assert trained.env_steps == tiny_config.total_steps == int(curve["step"].iloc[-1])
    assert (np.diff(curve["step"]) > 0).all()
    assert curve["qos_ok"].between(0, 1).all()
    assert trained.wall_time_s > 0


def test_same_seed_same_weights_and_curve(tiny_config):
    # two 4,000-step trainings, not a second 24,000-step one (issue 25: 16,000 fewer DQN steps, ~30 CPU-s): they pass
    # every place a run could draw differently: the warm-up's random actions (learning_starts 400), the gradient
    # steps, the target-network blends, the replay buffer wrapping (buffer_size 3,000) and the end of the epsilon
    # schedule (60 % of the steps)
    cfg = DVFOConfig.from_dict({**tiny_config.to_dict(), "total_steps": 4_000})
    assert cfg.total_steps > cfg.buffer_size and cfg.learning_starts < cfg.exploration_fraction * cfg.total_steps
    first, again = train(cfg), train(cfg)
    a, b = first.learner.q.state_dict(), again.learner.q.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(first.curve.drop(columns="scenario").to_numpy(),
                                  again.curve.drop(columns="scenario").to_numpy())


def test_different_seed_different_weights(tiny_config):
    cfg = DVFOConfig.from_dict({**tiny_config.to_dict(), "total_steps": 600, "learning_starts": 300})
    a = train(cfg).learner.q.state_dict()
    b = train(DVFOConfig.from_dict({**cfg.to_dict(), "seed": cfg.seed + 1})).learner.q.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_training_leaves_global_rng_untouched(tiny_config):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    np_state = np.random.get_state()[1].copy()
    train(DVFOConfig.from_dict({**tiny_config.to_dict(), "total_steps": 300, "learning_starts": 200}))
    assert torch.equal(torch.rand(3), expected)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)


def test_save_load_round_trip(trained, tiny_config, tiny_scenario, tmp_path):
    from safetensors.torch import load_file

    path = trained.learner.save(tmp_path / "dvfo")
    weights = load_file(str(path / "weights.safetensors"))  # really safetensors
    assert set(weights) == set(trained.learner.q.state_dict())
    meta = json.loads((path / "config.json").read_text())
    assert meta["config"]["seed"] == tiny_config.seed
    env = make_env(tiny_config, tiny_scenario)
    loaded = DVFOLearner.load(path, env)
    via_registry = make_policy("dvfo", env, path=path)
    obs, _ = env.reset(seed=7)
    for _ in range(50):
        a = trained.learner.act(obs)
        assert loaded.act(obs) == a == via_registry.act(obs)
        obs, *_ = env.step(int(env.action_space.sample()) if _ % 3 else a)  # visit varied previous actions


def test_saving_the_same_learner_twice_gives_the_same_bytes(trained, tmp_path):
    """Same training, same artefact bytes (a run's digest, dvc.lock): safetensors writes its metadata map in hash
    order, so the saved header must not depend on it (with two metadata entries 8 saves agreed 1 time in 128)."""
    blobs = {trained.learner.save(tmp_path / f"dvfo{i}").joinpath("weights.safetensors").read_bytes() for i in range(8)}
    assert len(blobs) == 1


def test_load_rejects_mismatched_env(trained, tmp_path):
    path = trained.learner.save(tmp_path / "dvfo")
    other = gym.make("bench/DVFO-v0", n_cpu_levels=2, n_gpu_levels=2, n_mem_levels=1, xi_levels=2)
    with pytest.raises(ValueError, match="n_actions"):
        DVFOLearner.load(path, other)
    with pytest.raises(FileNotFoundError, match="config.json"):
        DVFOLearner.load(tmp_path / "missing", other)


def test_registry_builds_untrained_learner_and_names_bad_fields():
    env = gym.make("bench/DVFO-v0", n_cpu_levels=2, n_gpu_levels=2, n_mem_levels=1, xi_levels=2)
    pol = make_policy("dvfo", env, hidden_sizes=(8,), seed=3)
    assert isinstance(pol, DVFOLearner) and pol.n_actions == env.action_space.n
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(pol.act(obs))
    with pytest.raises(ValueError, match="learning_rat"):
        make_policy("dvfo", env, learning_rat=1e-3)
    with pytest.raises(ValueError, match="gamma"):
        DVFOConfig(gamma=1.5)


def test_epsilon_schedule(tiny_config):
    learner = DVFOLearner(tiny_config, 11, 36)
    c = tiny_config
    assert learner.epsilon(0) == 1.0
    end = int(c.exploration_fraction * c.total_steps)
    assert learner.epsilon(end) == pytest.approx(c.end_e)
    assert learner.epsilon(c.total_steps) == pytest.approx(c.end_e)
    mid = (c.learning_starts + end) // 2
    assert c.end_e < learner.epsilon(mid) < c.start_e


@pytest.mark.parametrize("end", [None, 1e-5])
def test_learning_rate_decays_linearly_to_its_end_value_only_when_asked(end):
    """``learning_rate_end``: Adam's step size falls linearly from ``learning_rate`` after the warm-up to the end
    value at the last step (halfway there at the middle); None keeps it constant (issue 23, docs/dvfo.md)."""
    c = DVFOConfig.ci(total_steps=1_000, learning_starts=200, train_frequency=1, learning_rate_end=end)
    lrs = {}
    train(c, callback=lambda step, lr: lrs.__setitem__(step, lr.optimizer.param_groups[0]["lr"]), callback_every=100)
    want = (lambda s: c.learning_rate) if end is None else (
        lambda s: c.learning_rate + (end - c.learning_rate) * (s - c.learning_starts) / (c.total_steps - c.learning_starts))
    for step in (300, 600, 1_000):
        assert lrs[step] == pytest.approx(want(step), rel=1e-9)
    assert lrs[1_000] == pytest.approx(c.learning_rate if end is None else end, rel=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_adam_takes_torch_adams_steps(dtype):
    """:class:`FusedAdam` (issue 25: torch.optim without its TorchDynamo import) moves the parameters exactly as
    ``torch.optim.Adam(fused=True)`` does, in the same process, including after a learning-rate change."""
    from bench.policies.dvfo import FusedAdam

    g = torch.Generator().manual_seed(3)
    ours = [torch.randn(5, 4, generator=g, dtype=dtype, requires_grad=True),
            torch.randn(4, generator=g, dtype=dtype, requires_grad=True)]
    ref = [p.detach().clone().requires_grad_(True) for p in ours]
    opt, ref_opt = FusedAdam(ours, lr=1e-2), torch.optim.Adam(ref, lr=1e-2, fused=True)
    x = torch.randn(7, 5, generator=g, dtype=dtype)
    for step in range(6):
        if step == 3:
            opt.param_groups[0]["lr"] = ref_opt.param_groups[0]["lr"] = 3e-3
        for params, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            ((x @ params[0] + params[1]).square().mean()).backward()
            o.step()
        assert all(torch.equal(a, b) for a, b in zip(ours, ref)), f"step {step}"
    assert all(p.grad is not None for p in ours)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


def test_training_does_not_import_the_torch_compiler():
    """A DVFO training imports neither TorchDynamo nor TorchInductor (issue 25: 4-5.5 CPU-s per training process
    where no bytecode is cached), and still runs with deterministic algorithms on."""
    import subprocess
    import sys

    script = ("import sys, torch\n"
              "from bench.policies.dvfo import DVFOConfig, train\n"
              "seen = []\n"
              "train(DVFOConfig.ci(total_steps=300, learning_starts=100), "
              "callback=lambda s, l: seen.append(torch.are_deterministic_algorithms_enabled()), callback_every=100)\n"
              "print(sorted(m for m in ('torch._dynamo', 'torch._inductor', 'sympy') if m in sys.modules), seen, "
              "torch.are_deterministic_algorithms_enabled())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "[] [True, True, True] False"


def test_hidden_decision_share_is_sane(trained, tiny_config, tiny_scenario):
    env = make_env(tiny_config, tiny_scenario)
    out = hidden_decision_share(trained.learner, env, n_steps=120, seed=0)
    assert out["n_requests"] == 120
    assert out["decision_us_mean"] > 0 and out["decision_us_p99"] >= out["decision_us_p50"] > 0
    assert out["execution_ms_mean"] > 0
    assert 0.0 <= out["share_hidden"] <= 1.0
    assert 0.0 <= out["exposed_us_concurrent_mean"] <= out["exposed_us_sequential_mean"]


def test_concurrent_controller_overlaps_for_real(trained, tiny_config, tiny_scenario):
    """With a compressed real clock the worker thread decides while the main thread sleeps."""
    env = make_env(tiny_config, tiny_scenario)
    df = ConcurrentController(trained.learner, env, time_scale=1e-3).run(30, seed=1)
    assert len(df) == 30 and df["first_of_episode"].iloc[0]
    assert df["hidden_share"].between(0, 1).all()
    # the first decision has nothing to hide behind; later ones are (partly) overlapped
    assert df["hidden_share"].iloc[0] == 0.0
    # what the main thread waited = the exposed part of the decision + the thread hand-off
    np.testing.assert_allclose(df["exposed_us"] + df["handoff_us"], df["wait_us"])
    assert (df["handoff_us"] >= 0).all()
    # actions are the greedy ones: the controller does not change what is decided
    obs, _ = env.reset(seed=int(np.random.default_rng(np.random.SeedSequence(1)).integers(2**31)))
    assert df["action"].iloc[0] == trained.learner.act(obs)


#: Greedy energy per inference (mJ, mean over evaluation seeds 1000 and 1001) of ``tiny_config`` trained with
#: seeds 0..4, measured on this project's 2-core AMD EPYC (torch 2.14, CPU) after the queued kernel and the
#: objective reward landed (train, then roll the greedy policy out as ``_mean_energy`` does). Every seed now
#: converges to the same greedy policy (before: 70.06 / 70.06 / 70.07 / 72.69 / 70.06 on an AVX-512 Xeon).
#: Re-measured after the third round's calibration refit (the Jetson's fitted throughputs moved) and uniform
#: replay, at 24,000 steps: seeds 0-4 all 63.0551 (it was 62.7996 for all five before the refit).
CROSS_CPU_SEED_ENERGIES_MJ = {0: 63.0551, 1: 63.0551, 2: 63.0551, 3: 63.0551, 4: 63.0551}
#: tolerance of a retrain on another CPU: a different CPU perturbs the float32 network's rounding, which DQN's
#: argmax can turn into another trajectory - as a different seed does, not more (docs/reproducibility.md); when
#: every seed lands on the same policy the spread is zero, and the floor is the 2 % of the reference that the
#: learnability test above also allows a greedy policy (the same derived tolerance, not a new constant)
CROSS_CPU_TOLERANCE_MJ = max(max(abs(e - CROSS_CPU_SEED_ENERGIES_MJ[0]) for e in CROSS_CPU_SEED_ENERGIES_MJ.values()),
                             0.02 * CROSS_CPU_SEED_ENERGIES_MJ[0])


def _mean_energy(env, choose, seed: int) -> float:
    obs, _ = env.reset(seed=seed)
    total, n, done = 0.0, 0, False
    while not done:
        obs, _r, term, trunc, info = env.step(choose(obs))
        total, n, done = total + info["energy_mj"], n + 1, term or trunc
    return total / n


def test_a_fresh_retrain_lands_within_the_cross_cpu_tolerance_of_the_reference(trained, tiny_config, tiny_scenario):
    env = make_env(tiny_config, tiny_scenario)
    energy = np.mean([_mean_energy(env, trained.learner.act, s) for s in (1000, 1001)])
    assert abs(energy - CROSS_CPU_SEED_ENERGIES_MJ[0]) <= CROSS_CPU_TOLERANCE_MJ, (
        f"greedy energy {energy:.3f} mJ vs reference {CROSS_CPU_SEED_ENERGIES_MJ[0]:.3f} +- {CROSS_CPU_TOLERANCE_MJ:.3f}")
