"""``import bench`` has no side effects: it loads nothing heavy and registers nothing.

Checked in a fresh interpreter (this test process has long imported everything).
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("gymnasium", "torch", "pandas", "pyarrow", "matplotlib", "scipy", "dask")


def _fresh_modules(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_bench_loads_nothing_heavy():
    mods = _fresh_modules("import bench, bench.paths")
    heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY)
    assert not heavy, f"`import bench` loads {heavy[:10]}"


def test_import_bench_registers_no_environment():
    mods = _fresh_modules("import bench")
    assert "bench.sim" not in mods and "bench.sim.envs" not in mods


def test_gym_make_with_module_prefix_registers_on_demand():
    code = ("import gymnasium as gym\n"
            "env = gym.make('bench.sim:bench/AutoScale-v0', max_episode_steps=3)\n"
            "env.reset(seed=0)\n"
            "print(json.dumps(env.spec.id))")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == "bench/AutoScale-v0"
