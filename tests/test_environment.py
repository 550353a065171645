"""environment.yml and pyproject.toml list the same pinned packages; the wheel's runtime list is lean."""

import tomllib

import yaml

from bench import envfile
from bench.paths import REPO_ROOT

TOOLING = {"pytest", "hypothesis", "nbval", "jupyterlab", "papermill", "dvc", "ipykernel", "nbclient", "nbformat",
           "ipywidgets", "stable-baselines3", "dask", "distributed", "dask-jobqueue", "starlette", "uvicorn"}


def _project() -> dict:
    with open(REPO_ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]


def _name(pin: str) -> str:
    return pin.split("==")[0].lower()


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    project = _project()
    every = set(project["dependencies"]) | {p for pins in project["optional-dependencies"].values() for p in pins
                                            if not p.startswith(project["name"] + "[")}
    assert sorted(p for p in pip_section if p != "-e .") == sorted(every)
    assert (REPO_ROOT / "environment.yml").read_text() == envfile.render()


def test_everything_is_pinned_and_torch_as_required():
    deps = envfile.pinned_dependencies()
    assert all("==" in d for d in deps), [d for d in deps if "==" not in d]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps
    assert {"jupyterlab", "papermill", "numpy", "pandas", "seaborn", "torch", "gymnasium", "dvc", "pytest",
            "nbval"} <= {_name(d) for d in deps}


def test_runtime_dependencies_carry_no_test_or_notebook_tooling():
    runtime = {_name(d) for d in _project()["dependencies"]}
    assert not runtime & TOOLING, sorted(runtime & TOOLING)
    assert "all" in _project()["optional-dependencies"]
