"""dvc.yaml's code dependencies are the ones each stage imports (bench/pipeline/codedeps.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.pipeline import codedeps

ROOT = Path(__file__).resolve().parents[1]


def test_dvc_yaml_code_deps_match_the_imports():
    text = (ROOT / "dvc.yaml").read_text()
    want, have = codedeps.expected(ROOT), codedeps.current(text)
    drift = {s: (sorted(set(p) - set(have.get(s, []))), sorted(set(have.get(s, [])) - set(p))) for s, p in want.items()
             if set(p) != set(have.get(s, []))}
    assert not drift, f"dvc.yaml drifted (stage: (missing, stale)); run `python -m bench dvc-deps --write`: {drift}"


def test_check_fails_on_a_drifted_list(tmp_path):
    text = (ROOT / "dvc.yaml").read_text()
    drifted = text.replace("      - bench/pipeline/evaluate.py\n", "", 1)
    assert drifted != text
    f = tmp_path / "dvc.yaml"
    f.write_text(drifted)
    res = subprocess.run([sys.executable, "-m", "bench", "dvc-deps", "--check", "--file", str(f)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 1 and "bench/pipeline/evaluate.py" in res.stderr
    # --write repairs it and keeps every non-code entry
    subprocess.run([sys.executable, "-m", "bench", "dvc-deps", "--write", "--file", str(f)], check=True, cwd=ROOT)
    assert f.read_text() == text


def test_a_stage_depends_on_the_modules_its_entry_imports_lazily():
    mods = codedeps.stage_modules(ROOT, "python -m bench notebook evaluate")
    assert "bench.pipeline.evaluate" in mods and "bench.sim.core" in mods
    # the dispatcher's other sub-commands are not followed
    assert "bench.world.predict" not in mods and "bench.perf.main" not in mods


def test_rewrite_keeps_data_and_result_entries():
    text = (ROOT / "dvc.yaml").read_text()
    out = codedeps.rewrite(text, {s: [] for s in codedeps.current(text)})
    assert "data/profiles" in out and "results/evaluate/results.parquet" in out
    assert "bench/pipeline/evaluate.py" not in out
