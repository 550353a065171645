"""Plugins and outside paths: a plugin's sys.exit is an error, outside files are named in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from bench.config import TRUST_EXTERNAL_ENV, ParamsError, params_from_dict
from bench.paths import PARAMS_FILE, REPO_ROOT
from hw import registry as hw_registry


@pytest.fixture
def clean_registries(monkeypatch):
    monkeypatch.delenv(hw_registry.PLUGINS_ENV, raising=False)
    before = {id(r): set(r._items) for r in hw_registry.registries()}
    yield
    for reg in hw_registry.registries():
        for name in set(reg._items) - before.get(id(reg), set()):
            reg._items.pop(name, None)
    hw_registry._loaded_user_plugins.clear()
    import bench.config as cfg

    cfg._warned_outside.clear()


EXITS = ["import sys; sys.exit(0)", "import sys; sys.exit(1)", "import sys; sys.exit('bye')", "raise SystemExit",
         "exit()", "raise KeyError('x')"]


@pytest.mark.parametrize("body", EXITS)
def test_plugin_exiting_or_failing_at_import_is_a_one_line_error(tmp_path, clean_registries, body):
    (tmp_path / "quitter.py").write_text(body + "\n")
    with pytest.raises(ParamsError) as exc:
        params_from_dict({"plugins": ["quitter.py"]}, base_dir=tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and "plugins[0]" in msg and "quitter.py" in msg
    if "exit" in body.lower():
        assert "sys.exit" in msg


@pytest.mark.parametrize("body", EXITS[:3])
def test_params_cli_does_not_pass_a_plugin_that_exits_0(tmp_path, body):
    (tmp_path / "quitter.py").write_text(body + "\n")
    data = yaml.safe_load(PARAMS_FILE.read_text())
    data["plugins"] = ["quitter.py"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    env = {**os.environ, TRUST_EXTERNAL_ENV: "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop(hw_registry.PLUGINS_ENV, None)
    res = subprocess.run([sys.executable, "-m", "bench", "params", "--file", str(tmp_path / "params.yaml")],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "ok" not in res.stdout and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "sys.exit" in res.stderr


def test_plugin_config_class_that_exits_is_a_one_line_error(tmp_path, clean_registries):
    (tmp_path / "exiting_learner.py").write_text(textwrap.dedent('''
        import dataclasses, sys
        from bench.policies import LEARNERS, LearnerSpec
        import bench.policies.autoscale as a

        @dataclasses.dataclass
        class QuitConfig(a.AutoScaleConfig):
            def __post_init__(self):
                sys.exit(0)

        a.QuitConfig = QuitConfig
        LEARNERS.register("quitter", LearnerSpec("quitter", "bench/AutoScale-v0", "bench.policies.autoscale",
                                                 "QuitConfig"))
    '''))
    data = yaml.safe_load(PARAMS_FILE.read_text())
    data["plugins"] = ["exiting_learner.py"]
    data["train"]["quitter"] = {"total_steps": 10}
    with pytest.raises(ParamsError) as exc:
        params_from_dict(data, base_dir=tmp_path)
    assert "train.quitter" in str(exc.value) and "sys.exit(0)" in str(exc.value)


def test_broken_entry_point_that_exits_only_warns(monkeypatch, clean_registries):
    import importlib.metadata as md

    class EP:
        name, value, module, dist = "exiter", "exiter:x", "exiter", None

        def load(self):
            raise SystemExit(0)

    reg = hw_registry.registries()[0]
    monkeypatch.setattr(md, "entry_points", lambda group=None: [EP()] if group == reg.group else [])
    reg._loaded = False
    with pytest.warns(RuntimeWarning, match="sys.exit"):
        names = reg.names()
    assert "exiter" not in names and "sys.exit" in reg.errors["exiter"]
    reg.errors.pop("exiter", None)
    reg._loaded = False


@pytest.mark.parametrize("trusted", [False, True])
def test_plugin_outside_the_repository_is_named_in_one_warning_line(tmp_path, clean_registries, capsys, monkeypatch,
                                                                     trusted):
    if trusted:
        monkeypatch.setenv(TRUST_EXTERNAL_ENV, "1")
    else:
        monkeypatch.delenv(TRUST_EXTERNAL_ENV, raising=False)
    assert not tmp_path.resolve().is_relative_to(REPO_ROOT.resolve())
    (tmp_path / "outside.py").write_text("X = 1\n")
    params_from_dict({"plugins": ["outside.py"]}, base_dir=tmp_path)
    err = capsys.readouterr().err
    if trusted:
        assert err == ""
        return
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: params.yaml: plugins[0]")
    assert "outside.py" in lines[0] and "outside the repository" in lines[0] and TRUST_EXTERNAL_ENV in lines[0]


def test_plugin_inside_the_repository_is_silent(clean_registries, capsys, monkeypatch):
    monkeypatch.delenv(TRUST_EXTERNAL_ENV, raising=False)
    params_from_dict({"plugins": ["bench/paths.py"]}, base_dir=REPO_ROOT)
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("inside", [False, True])
def test_profile_path_outside_the_repository_warns(tmp_path, clean_registries, capsys, monkeypatch, inside):
    monkeypatch.delenv(TRUST_EXTERNAL_ENV, raising=False)
    src = REPO_ROOT / "data" / "profiles" / "phone_sd845.yaml"
    path = src if inside else tmp_path / "my_phone.yaml"
    if not inside:
        path.write_text(src.read_text())
    data = yaml.safe_load(PARAMS_FILE.read_text())
    data["train"]["runs"]["mine"] = {"learner": "autoscale", "profile": str(path)}
    params_from_dict(data, base_dir=REPO_ROOT)
    err = capsys.readouterr().err
    if inside:
        assert "warning" not in err
    else:
        lines = [ln for ln in err.splitlines() if "warning" in ln]
        assert len(lines) == 1 and "train.runs.*.profile" in lines[0] and "my_phone.yaml" in lines[0]
