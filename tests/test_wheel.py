"""The package installs: a built wheel, in a fresh virtual environment, outside the repository,
has its reference data, CLI, envs and plugins.

Kept offline and fast: the wheels are built with ``--no-deps --no-build-isolation`` from a copy
of the sources, and the fresh venv sees this environment's dependencies (numpy, torch, ...)
through a ``.pth`` line instead of downloading them; the suite itself comes only from the wheel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "bench", "hw", "data")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEBENCH_PLUGINS", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(args, cwd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _build(src: Path, out: Path) -> Path:
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", out, src], cwd=src)
    return next(out.glob("*.whl"))


def test_packages_list_is_complete():
    """pyproject lists packages explicitly (data/ is mapped to bench.data): a new subpackage must be added."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("bench", "hw") for p in (ROOT / top).rglob("__init__.py")}
    missing = found - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.exists():
            shutil.copy2(path, src / name)
    wheel = _build(src, tmp / "dist")
    plugin_src = tmp / "plugin"
    shutil.copytree(ROOT / "examples" / "edgebench-example-plugin", plugin_src,
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    plugin_wheel = _build(plugin_src, tmp / "dist_plugin")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip())
    # this environment's third-party packages (not the suite: only the wheel provides `bench`)
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel], cwd=tmp)
    outside = tmp / "elsewhere"
    outside.mkdir()
    return {"py": py, "venv": venv, "cwd": outside, "wheel": wheel, "plugin_wheel": plugin_wheel}


def test_wheel_carries_the_reference_data(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for rel in ("profiles/phone_sd845.yaml", "scenarios/wifi_strong.yaml", "scenarios/_model.yaml",
                "network/era2018/wifi.yaml", "network/huang2012/lte.yaml", "workloads/workloads.csv", "dvfo/accuracy_vs_xi.csv", "claims.yaml"):
        assert f"bench/data/{rel}" in names
    assert any(n.startswith("bench/data/samples/tegrastats/") and n.endswith(".log") for n in names)
    entry = zipfile.ZipFile(installed["wheel"]).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert re.search(r"^edgebench = bench.cli:main$", entry, re.M) and not re.search(r"^bench =", entry, re.M)


def test_installed_wheel_lists_profiles_from_outside_the_repo(installed):
    py, cwd = installed["py"], installed["cwd"]
    where = _run([py, "-c", "import bench, bench.paths as p; print(bench.__file__); print(p.IN_REPO, p.DATA_DIR)"],
                 cwd=cwd).stdout
    assert str(installed["venv"]) in where and "False" in where and str(ROOT) not in where
    for command in ([py, "-m", "bench", "profiles"], [installed["venv"] / "bin" / "edgebench", "profiles"]):
        out = _run(command, cwd=cwd).stdout
        for name in ("phone_sd845", "jetson_xavier_nx", "peer_laptop", "cloud_rtx3080"):
            assert f"== {name} " in out


def test_installed_wheel_envs_and_plugin(installed):
    py, cwd = installed["py"], installed["cwd"]
    code = ("import gymnasium as gym\n"
            "env = gym.make('bench.sim:bench/AutoScale-v0')\n"
            "obs, _ = env.reset(seed=0)\n"
            "obs, r, term, trunc, info = env.step(env.action_space.sample())\n"
            "print('ok', env.observation_space.shape, info['energy_mj'] > 0)\n")
    assert "ok" in _run([py, "-c", code], cwd=cwd).stdout
    out = _run([py, "-m", "bench", "plugins"], cwd=cwd).stdout
    assert "race_to_idle" not in out
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q",
          installed["plugin_wheel"]], cwd=cwd)
    out = _run([py, "-m", "bench", "plugins"], cwd=cwd).stdout
    assert re.search(r"^policy .*race_to_idle", out, re.M) and re.search(r"^meter .*cpu_tdp", out, re.M)
    code = ("from bench.policies.rollout import evaluate_policy\n"
            "f = evaluate_policy('race_to_idle', 'bench/AutoScale-v0', 'wifi_strong', [0], 10)\n"
            "print(len(f), f['policy'].iloc[0])\n")
    assert _run([py, "-c", code], cwd=cwd).stdout.split() == ["10", "race_to_idle"]
