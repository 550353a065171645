"""environment.yml and pyproject.toml list the same pinned packages."""

import tomllib

import yaml

from bench import envfile
from bench.paths import REPO_ROOT


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    with open(REPO_ROOT / "pyproject.toml", "rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    assert sorted(p for p in pip_section if p != "-e .") == sorted(deps)
    assert (REPO_ROOT / "environment.yml").read_text() == envfile.render()


def test_everything_is_pinned_and_torch_as_required():
    with open(REPO_ROOT / "pyproject.toml", "rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    assert all("==" in d for d in deps), [d for d in deps if "==" not in d]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps
    names = {d.split("==")[0].lower() for d in deps}
    assert {"jupyterlab", "papermill", "numpy", "pandas", "seaborn", "torch", "gymnasium", "dvc", "pytest", "nbval"} <= names
