"""Reading the sensitivity results back (bench/pipeline/sensitivity.py's readers, the report's and README's pieces):
which run is shown, the figure index parser, flips with their direction, staleness, the resumable world cache and
the README block that lists which verdicts survive their assumptions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.pipeline import readme
from bench.pipeline import robustness as R
from bench.pipeline import sensitivity as S
from bench.pipeline.engine import Engine

ONE = Engine(workers=1)  # in this process: the test replaces run_world

CLAIMS = [{"id": "c_energy", "paper": "P", "claim": "lower energy than X", "suite": "s1", "baseline": "x",
           "scenario": None},
          {"id": "c_latency", "paper": "P", "claim": "lower latency than X", "suite": "s1", "baseline": "x",
           "scenario": "trickle"}]


def _summary(**over) -> dict:
    s = {"enabled": True, "constants": 2, "factors": [0.5, 2.0], "lhs_samples": 4, "worlds": 9, "seeds": 1,
         "steps": 50, "invalid_worlds": {}, "limited_to_first_constants": None, "only_matching": None,
         "baseline": {"claim:c_energy": {"value": 0.3, "verdict": "consistent"},
                      "claim:c_latency": {"value": 0.5, "verdict": "differs"},
                      "claim:c_drldo": {"value": None, "verdict": "not measured"},
                      "learner:s1:lrn_vs_best_static_dnn": {"value": 0.1, "verdict": "yes"},
                      "headline:s1:lrn:efficiency_vs_cpu_only": {"value": 2.0, "verdict": "beats baseline"}},
         "robustness": {"claim:c_energy": "sensitive (to: network/era2018/lte.yaml:tail_mw)",
                        "claim:c_latency": "robust", "claim:c_drldo": "not assessed",
                        "learner:s1:lrn_vs_best_static_dnn": "sensitive (to: joint sample)",
                        "headline:s1:lrn:efficiency_vs_cpu_only": "robust"},
         "flips": [{"world": "oat:network/era2018/lte.yaml:tail_mw:x2", "quantity": "claim:c_energy",
                    "from": "consistent", "to": "differs"},
                   {"world": "lhs:001", "quantity": "learner:s1:lrn_vs_best_static_dnn", "from": "yes", "to": "tie"}],
         "lhs_flip_rate": {"claim:c_energy": 0.25, "learner:s1:lrn_vs_best_static_dnn": 0.5}}
    s.update(over)
    return s


# --------------------------------------------------------------------------- which run is shown

def _write_run(folder: Path, summary: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_the_stage_s_own_run_wins_then_the_committed_run_then_none(tmp_path):
    assert R.find_results(tmp_path) is None
    _write_run(tmp_path / "sensitivity", {"enabled": False, "worlds": 0})
    assert R.find_results(tmp_path) is None  # the disabled stage's empty summary is not a run
    committed = _write_run(tmp_path / R.COMMITTED_RUN, _summary())
    assert R.find_results(tmp_path) == committed
    own = _write_run(tmp_path / "sensitivity", _summary())
    assert R.find_results(tmp_path) == own


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=200))
def test_an_unreadable_summary_is_no_run(tmp_path, blob):
    (tmp_path / R.COMMITTED_RUN).mkdir(exist_ok=True)
    (tmp_path / R.COMMITTED_RUN / "summary.json").write_bytes(blob)
    (tmp_path / R.COMMITTED_RUN / R.RUN_RECORD).write_bytes(blob)
    found = R.find_results(tmp_path)
    assert found is None or json.loads(blob).get("enabled")
    assert isinstance(R.run_record(tmp_path / R.COMMITTED_RUN), dict)


# --------------------------------------------------------------------------- the figure index (a parser)

_names = st.from_regex(r"[a-z][a-z0-9_]{0,12}(:[a-z0-9_]{1,10}){1,3}", fullmatch=True)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(quantities=st.lists(_names, unique=True, max_size=6), junk=st.lists(st.text(max_size=40), max_size=5),
       missing=st.integers(0, 3))
def test_figure_index_lists_exactly_the_entries_whose_png_exists(tmp_path, quantities, junk, missing):
    fig_dir = tmp_path / "figures"
    fig_dir.mkdir(exist_ok=True)
    for f in fig_dir.iterdir():
        f.unlink()
    lines = ["# Tornado figures"]
    want = []
    for i, q in enumerate(quantities):
        name = f"tornado_{q.replace(':', '_')}.png"
        lines.append(f"* `{q}`: {name}")
        if i >= missing:  # the first `missing` entries name a file that is not there
            (fig_dir / name).write_bytes(b"png")
            want.append((q, fig_dir / name))
    # junk lines (no backticked entry) are skipped, wherever they are
    lines += [j.replace("`", "'").replace("\n", " ") for j in junk]
    (fig_dir / "index.md").write_text("\n".join(lines) + "\n")
    assert R.figure_index(fig_dir) == want


def test_figure_index_of_a_missing_or_binary_index_is_empty(tmp_path):
    assert R.figure_index(tmp_path / "nowhere") == []
    (tmp_path / "index.md").write_bytes(b"\xff\xfe\x00binary")
    assert R.figure_index(tmp_path) == []


# --------------------------------------------------------------------------- flips and their direction

_keys = st.from_regex(r"[a-z]{1,8}(/[a-z0-9]{1,8}){0,2}\.yaml:[a-z_]{1,10}(\.[a-z0-9_]{1,8}){0,2}", fullmatch=True)


@given(key=_keys, factor=st.sampled_from([0.25, 0.5, 2.0, 4.0, 1.5]))
def test_a_one_at_a_time_world_name_parses_back(key, factor):
    (world,) = [w for w in S.worlds([S.Constant(key.split(":")[0], tuple(key.split(":")[1].split(".")), 1.0,
                                                "assumed: x")], [factor], 0, 0) if w.kind == "oat"]
    assert R._oat_world(world.name) == (world.constant, factor)


@given(name=st.text(max_size=30))
def test_any_other_world_name_is_not_a_one_at_a_time_world(name):
    parsed = R._oat_world(name)
    assert parsed is None or name.startswith("oat:")


def test_robustness_table_names_constant_direction_and_new_verdict():
    t = R.robustness_table(_summary(), CLAIMS)
    row = t.set_index("quantity").loc["claim:c_energy"]
    assert row["what"] == "P: lower energy than X (s1)"
    assert row["flips (one at a time)"] == "era2018/lte.yaml: tail_mw x2 (-> differs)"
    assert row["joint-sample flip rate"] == pytest.approx(0.25)
    assert t.set_index("quantity").loc["claim:c_latency", "what"] == "P: lower latency than X (s1, trickle)"
    # a flip of the joint sample is no one-at-a-time flip
    assert t.set_index("quantity").loc["learner:s1:lrn_vs_best_static_dnn", "flips (one at a time)"] == ""
    assert set(t["kind"]) == {"claim", "learner", "headline"}


def test_flip_text_groups_factors_per_constant():
    flips = [{"constant": "a/b.yaml:k", "factor": 2.0, "to": "differs"},
             {"constant": "a/b.yaml:k", "factor": 0.5, "to": "close"},
             {"constant": "c.yaml:m.n", "factor": 0.5, "to": "differs"}]
    assert R.flip_text(flips) == "a/b.yaml: k x0.5, x2 (-> close, differs); c.yaml: m.n x0.5 (-> differs)"


# --------------------------------------------------------------------------- staleness

def test_stale_inputs_names_what_changed():
    summary = {"inputs": {"data": "a", "claims": "b", "learner:s1": "c"}}
    assert R.stale_inputs(summary, {"data": "a", "claims": "b", "learner:s1": "c"}) == []
    assert R.stale_inputs(summary, {"data": "z", "claims": "b", "learner:s1": "y"}) == ["data", "learner:s1"]
    assert R.stale_inputs({}, {"data": "z"}) == []  # nothing recorded: nothing to compare


def test_input_digests_follow_the_data(tmp_path):
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "model.yaml").write_text("a: 1\n")
    (tmp_path / "claims.yaml").write_text("[]\n")
    art = tmp_path / "policy"
    art.mkdir()
    (art / "w.bin").write_bytes(b"1")
    before = R.input_digests([{"suite": "s1", "artefact": str(art)}], "none", tmp_path)
    assert set(before) == {"data", "claims", "world", "learner:s1"}
    (tmp_path / "sim" / "model.yaml").write_text("a: 2\n")
    (art / "w.bin").write_bytes(b"2")
    after = R.input_digests([{"suite": "s1", "artefact": str(art)}], "none", tmp_path)
    assert R.stale_inputs({"inputs": before}, after) == ["data", "learner:s1"]


def test_a_changed_scenario_or_trace_marks_the_run_stale(tmp_path):
    # scenarios, traces and workload tables hold no assumed constant, yet the verdicts rest on them
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "traces").mkdir()
    (tmp_path / "claims.yaml").write_text("[]\n")
    (tmp_path / "scenarios" / "wifi.yaml").write_text("steps: 10\n")
    (tmp_path / "traces" / "lte.csv").write_text("t,mbps\n0,5\n")
    before = R.input_digests([], "none", tmp_path)
    (tmp_path / "scenarios" / "wifi.yaml").write_text("steps: 20\n")
    assert R.stale_inputs({"inputs": before}, R.input_digests([], "none", tmp_path)) == ["world"]
    (tmp_path / "scenarios" / "wifi.yaml").write_text("steps: 10\n")
    (tmp_path / "traces" / "lte.csv").write_text("t,mbps\n0,6\n")
    assert R.stale_inputs({"inputs": before}, R.input_digests([], "none", tmp_path)) == ["world"]
    assert R.stale_inputs({"inputs": {"data": before["data"]}}, R.input_digests([], "none", tmp_path)) == []


# --------------------------------------------------------------------------- the resumable cache

def test_world_cache_resumes_without_recomputing(tmp_path, monkeypatch):
    calls = []

    def fake_run_world(task):
        calls.append(task[0].name)
        return {"status": "ok", "quantities": [{"quantity": "q", "value": 1.0, "verdict": "v"}], "cpu_s": 1.0}

    monkeypatch.setattr(S, "run_world", fake_run_world)
    ws = S.worlds([S.Constant("f.yaml", ("k",), 1.0, "assumed: x")], [0.5, 2.0], 0, 0)
    spec = {"suites": [], "seeds": 1}
    first = S._map_worlds(ws, spec, ONE, False, tmp_path)
    assert calls == [w.name for w in ws] and len(list(tmp_path.glob("*.json"))) == len(ws)
    calls.clear()
    (tmp_path / f"{S.world_cache_key(ws[1], spec)}.json").write_text("{torn")  # a torn write is recomputed
    again = S._map_worlds(ws, spec, ONE, False, tmp_path)
    assert calls == [ws[1].name] and again == first
    calls.clear()
    S._map_worlds(ws, {**spec, "seeds": 2}, ONE, False, tmp_path)  # another spec: nothing is reused
    assert calls == [w.name for w in ws]


# --------------------------------------------------------------------------- README

def test_readme_block_lists_robust_and_sensitive_verdicts_with_direction():
    text = readme.robustness_section(_summary(), "a run.", CLAIMS)
    assert "**Papers-vs-suite claims**: 1 of 2 robust, 1 sensitive, 1 not assessed" in text
    assert "- sensitive: P: lower energy than X (s1) (consistent): era2018/lte.yaml: tail_mw x2 (-> differs)" in text
    assert "the joint sample flips it in 25% of its worlds" in text
    assert "- robust: P: lower latency than X (s1, trickle) (differs)" in text
    assert "s1: lrn vs best_static_dnn (yes): only the joint sample" in text
    assert "**Each policy against the on-device baseline (beats it or not)**: 1 of 1 robust" in text
    assert "no assumed constant halved or doubled one at a time, and no joint sample, flips" in text


def test_readme_block_says_what_robust_means_for_the_run_s_own_budget():
    # the definition follows the run's factors and joint sample, not a fixed sentence
    text = readme.robustness_section(_summary(factors=[0.8, 1.25], lhs_samples=0), "a run.", CLAIMS)
    assert "no assumed constant scaled x0.8 or scaled x1.25 one at a time flips the verdict" in text
    assert "joint sample," not in text and "(x0.8: scaled x0.8, x1.25: scaled x1.25)" in text


def test_readme_render_fills_the_block_from_the_committed_run(tmp_path):
    _write_run(tmp_path / R.COMMITTED_RUN, _summary())
    (tmp_path / R.COMMITTED_RUN / R.RUN_RECORD).write_text(json.dumps({"date": "2026-12-06T12:00:00Z",
                                                                       "cpu_s": 2700.0}))
    text, _ = readme.render("intro\n<!-- robustness:start -->\nold\n<!-- robustness:end -->\ntail\n", tmp_path)
    block = text.split("<!-- robustness:start -->")[1].split("<!-- robustness:end -->")[0]
    assert "old" not in block and "run 2026-12-06, 45 CPU-minutes" in block
    assert "1 seed x 50 requests per cell" in block and text.endswith("tail\n")
    # without any run, the block says so in one line
    empty, _ = readme.render("<!-- robustness:start -->\n<!-- robustness:end -->\n", tmp_path / "none")
    assert "no sensitivity results" in empty


def test_claims_table_shows_the_robustness_column_when_present():
    table = pd.DataFrame([{"paper": "P", "claim": "c", "paper_value": 1, "suite_value": "1", "verdict": "close",
                           "how measured": "", "why they differ": "", "robustness": "robust"}])
    assert "| robustness |" in readme.claims_section(table).splitlines()[0]
    assert "robustness" not in readme.claims_section(table.drop(columns="robustness"))


# --------------------------------------------------------------------------- the joint sample's range

@given(f=st.floats(0.5, 2.0), refused=st.sampled_from([None, "up", "down"]))
def test_one_sided_folds_onto_the_accepted_side(f, refused):
    g = S.one_sided(f, refused)
    assert 0.5 - 1e-12 <= g <= 2.0 + 1e-12
    assert abs(abs(math.log(g)) - abs(math.log(f))) < 1e-9  # same distance from x1
    if refused == "up":
        assert g <= 1
    elif refused == "down":
        assert g >= 1
    else:
        assert g == f


def test_joint_sample_respects_what_the_data_refused_one_at_a_time():
    cs = [S.Constant("sim/thermal.yaml", ("phone", "release_fraction"), 0.8, "assumed: x"),
          S.Constant("sim/model.yaml", ("local_jitter_sigma",), 0.05, "assumed: y")]
    oat = [w for w in S.worlds(cs, [0.5, 2.0], 0, 0) if w.kind == "oat"]
    res = [{"status": "invalid: fraction > 1"} if w.constant == cs[0].key and w.factor > 1 else {"status": "ok"}
           for w in oat]
    refused = S.refused_directions(oat, res)
    assert refused == {cs[0].key: "up"}
    joint = [json.loads(w.factors_json) for w in S.worlds(cs, [0.5, 2.0], 16, 7, refused) if w.kind == "lhs"]
    assert all(j[cs[0].key] <= 1 for j in joint) and any(j[cs[1].key] > 1 for j in joint)
    free = [json.loads(w.factors_json) for w in S.worlds(cs, [0.5, 2.0], 16, 7) if w.kind == "lhs"]
    assert any(j[cs[0].key] > 1 for j in free)


# --------------------------------------------------------------------------- the report's pieces

def test_report_names_the_run_its_budget_and_what_changed_since(tmp_path):
    from bench.pipeline import report

    folder, summary, text = report.sensitivity_results(tmp_path)
    assert folder is None and summary == {} and "no sensitivity results" in text
    run = _write_run(tmp_path / R.COMMITTED_RUN, _summary(inputs={"data": "0" * 16}))
    folder, summary, text = report.sensitivity_results(tmp_path)
    assert folder == run and summary["robustness"]
    assert "2 assumed constants x0.5 and x2 one at a time plus 4 joint" in text
    assert "these inputs changed: data" in text and R.RERUN_COMMAND in text
    fresh = _write_run(tmp_path / R.COMMITTED_RUN, _summary(inputs={"data": R.input_digests()["data"]}))
    assert "changed" not in report.sensitivity_results(tmp_path)[2] and fresh == run


def test_report_adds_one_tornado_per_indexed_figure_with_its_robustness(tmp_path):
    from bench.pipeline import report

    run = _write_run(tmp_path / R.COMMITTED_RUN, _summary())
    (run / "figures").mkdir()
    for q in ("claim:c_energy", "headline:s1:lrn:efficiency_vs_cpu_only"):
        (run / "figures" / f"tornado_{q.replace(':', '_')}.png").write_bytes(b"\x89PNG")
    (run / "figures" / "index.md").write_text("# t\n\n* `claim:c_energy`: tornado_claim_c_energy.png\n"
                                              "* `headline:s1:lrn:efficiency_vs_cpu_only`: "
                                              "tornado_headline_s1_lrn_efficiency_vs_cpu_only.png\n")
    gallery = report.Gallery(tmp_path / "out")
    (tmp_path / "out").mkdir()
    assert report.add_tornados(gallery, run, _summary(), CLAIMS) == 2
    (figs,) = gallery.sections.values()
    assert figs[0][1].startswith("P: lower energy than X (s1): sensitive (to: network/era2018/lte.yaml:tail_mw)")
    assert figs[1][1].startswith("s1: lrn, efficiency_vs_cpu_only: robust")
    assert all(p.is_file() and p.parent == tmp_path / "out" for p, _ in figs)


def test_world_cache_key_follows_data_and_learners_not_paths():
    w = S.World("oat:f.yaml:k:x2", "oat", json.dumps({"f.yaml:k": 2.0}), "f.yaml:k", 2.0)
    spec = {"seeds": 1, "data_dir": "/a/data", "suites": [{"suite": "s", "artefact": "/a/results/train/s/policy"}]}
    moved = {**spec, "data_dir": "/b/data", "suites": [{"suite": "s", "artefact": "/b/results/train/s/policy"}]}
    inputs = {"data": "d1", "learner:s": "l1"}
    assert S.world_cache_key(w, spec, inputs) == S.world_cache_key(w, moved, inputs)
    assert S.world_cache_key(w, spec, inputs) != S.world_cache_key(w, spec, {**inputs, "data": "d2"})
    assert S.world_cache_key(w, spec, inputs) != S.world_cache_key(w, {**spec, "seeds": 2}, inputs)


def test_budget_text_says_which_learners_were_replayed():
    both = {"s1": "as trained (results/train/s1/policy), not retrained per world",
            "s2": "no trained artefact in results/train: not evaluated (its claims are not assessed)"}
    text = R.budget_text(_summary(learners=both))
    assert "the learners of 1 of 2 suites replayed as trained" in text
    assert "no trained learner for s2, whose learner claims are not assessed" in text
    none = R.budget_text(_summary(learners={"s2": both["s2"]}))
    assert "no learner replayed" in none and "replayed as trained" not in none
    assert "learners as trained (not retrained per world)" in R.budget_text(_summary())  # an older summary


def test_claims_robustness_column_names_the_direction_and_the_new_verdict():
    from bench.pipeline.claims import with_robustness

    table = pd.DataFrame([{"paper": "P", "claim": c["claim"], "baseline": "x", "scenario": c["scenario"] or "all"}
                          for c in CLAIMS])
    merged = with_robustness(table, _summary(), claims=CLAIMS)
    assert list(merged["robustness"]) == [
        "sensitive (to: era2018/lte.yaml: tail_mw x2 (-> differs); 25% of joint worlds)", "robust"]
    # a verdict only the joint sample flips keeps its label; without flips recorded the keys are shown as before
    only_keys = with_robustness(table, {**_summary(), "flips": []}, claims=CLAIMS)
    assert only_keys["robustness"].iloc[0] == "sensitive (to: network/era2018/lte.yaml:tail_mw)"
