"""Property-based fuzzing of scenario loading and realisation, and of CSV traces (Hypothesis).

A malformed scenario (a shipped one mutated, or its text edited) or a malformed CSV trace
ends in a scenario whose realised trace is finite, or in a one-line :class:`ScenarioError`;
never another exception, never a hang (Hypothesis deadline).
"""

import numpy as np
import yaml
from fuzz_support import (FUZZ, MAX_EXAMPLES, edited_bytes, finite_numbers, mutated, numeric_mutated, record,
                          report)
from hypothesis import given
from hypothesis import strategies as st

from bench.world.scenarios import (MODEL_FILE, SCENARIO_DIR, ScenarioError, interference_model_from_dict,
                                   list_scenarios, load_interference_model, load_scenario, scenario_from_dict)

NAMES = list_scenarios()
RAW = {n: yaml.safe_load((SCENARIO_DIR / f"{n}.yaml").read_text()) for n in NAMES}
TEXT = {n: (SCENARIO_DIR / f"{n}.yaml").read_text() for n in NAMES}
MODEL = load_interference_model()


def setup_module():
    _realise(load_scenario(NAMES[0]))  # lazy imports once, outside the per-input deadline


def _realise(scen):
    """Load + realise: every per-step array finite (the cap is +inf where a scenario has none)."""
    tr = scen.trace(np.random.default_rng(0), steps=40, model=MODEL)
    for radio, s in tr.signal_dbm.items():
        assert np.all(np.isfinite(s)), radio
    for arr in (tr.cpu_load, tr.mem_load, tr.qos_ms, tr.max_accuracy_loss):
        assert np.all(np.isfinite(arr))
    assert np.all((tr.cpu_load >= 0) & (tr.cpu_load <= 1) & (tr.mem_load >= 0) & (tr.mem_load <= 1))
    assert not np.any(np.isnan(tr.bandwidth_cap_mbps)) and np.all(tr.bandwidth_cap_mbps > 0)
    if scen.bandwidth_cap_mbps is not None:
        assert np.all(np.isfinite(tr.bandwidth_cap_mbps))
    return tr


@st.composite
def _mutated_scenario(draw):
    return draw(mutated(RAW[draw(st.sampled_from(NAMES))]))


def test_fuzz_scenarios_structured():
    @FUZZ
    @given(_mutated_scenario())
    def run(doc):
        record("scenarios", "structured", lambda: _realise(scenario_from_dict(doc)), (ScenarioError,))

    run()
    assert report("scenarios", "structured") >= MAX_EXAMPLES // 2


@st.composite
def _numeric_scenario(draw):
    return draw(numeric_mutated(RAW[draw(st.sampled_from(NAMES))]))


def test_fuzz_scenarios_numeric():
    @FUZZ
    @given(_numeric_scenario())
    def run(doc):
        record("scenarios", "numeric", lambda: _realise(scenario_from_dict(doc)), (ScenarioError,))

    run()
    assert report("scenarios", "numeric") >= MAX_EXAMPLES // 2


@st.composite
def _edited_scenario(draw):
    return draw(edited_bytes(TEXT[draw(st.sampled_from(NAMES))]))


def test_fuzz_scenarios_text(tmp_path):
    path = tmp_path / "fuzzed.yaml"

    @FUZZ
    @given(_edited_scenario())
    def run(raw):
        path.write_bytes(raw)
        record("scenarios", "text", lambda: _realise(load_scenario(path)), (ScenarioError,))

    run()
    assert report("scenarios", "text") >= MAX_EXAMPLES // 2


_CELL = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-300, 100).map(str),
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "1e999", "-1e999", "abc", '"-60"', '"', "1,2", "-60.5",
                     "0x10", "1_000", "\x00", "é", "-70\r"]),
    st.text(max_size=6),
)


@st.composite
def _csv(draw):
    header = draw(st.sampled_from(["t,rssi", "rssi", "t,rssi,extra", "t;rssi", "", "t,RSSI", '"rssi"', "rssi,rssi"]))
    rows = draw(st.lists(st.lists(_CELL, min_size=0, max_size=3).map(",".join), max_size=12))
    text = "\n".join([header, *rows]) + draw(st.sampled_from(["", "\n", "\r\n"]))
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()) and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1:]
    return raw


def test_fuzz_csv_traces(tmp_path):
    path = tmp_path / "trace.csv"
    base = RAW["wifi_strong"]

    @FUZZ
    @given(_csv(), st.booleans(), st.sampled_from(["signal", "cap"]))
    def run(raw, loop, where):
        path.write_bytes(raw)
        doc = {**base, "signal": dict(base["signal"])}
        spec = {"kind": "replay", "path": str(path), "column": "rssi", "loop": loop}
        if where == "signal":
            doc["signal"]["wifi"] = spec
        else:
            doc["bandwidth_cap_mbps"] = spec
        record("csv_traces", "generated", lambda: _realise(scenario_from_dict(doc)), (ScenarioError,))

    run()
    assert report("csv_traces", "generated") >= MAX_EXAMPLES // 2


def test_csv_trace_errors_name_line_value_and_range(tmp_path):
    path = tmp_path / "rssi.csv"
    doc = {**RAW["wifi_strong"], "signal": {"wifi": {"kind": "replay", "path": str(path), "column": "rssi"}}}
    for text, needle in [("rssi\n-60\nnan\n", "line 3: rssi: must be finite (got nan)"),
                         ("rssi\n-60\n-500\n", "line 3: rssi: out of range (got -500.0); allowed: a finite number >= -200"),
                         ("rssi\n-60\nstrong\n", "line 3: rssi: not a number (got 'strong')"),
                         ("t,dbm\n0,-60\n", "no column 'rssi' in the header"),
                         ("rssi\n", "no rows")]:
        path.write_text(text)
        with np.testing.assert_raises_regex(ScenarioError, "") as ctx:
            scenario_from_dict(doc).trace(np.random.default_rng(0), steps=5, model=MODEL)
        assert needle in str(ctx.exception), (needle, str(ctx.exception))


MODEL_RAW = yaml.safe_load(MODEL_FILE.read_text())


def _use_model(model):
    for loads in model.apps.values():  # (cpu, mem, gpu) load of each co-running app
        assert len(loads) == 3 and all(0 <= x <= 1 for x in loads)
    assert not finite_numbers(model)
    return model


def test_fuzz_interference_model():
    @FUZZ
    @given(st.one_of(mutated(MODEL_RAW), numeric_mutated(MODEL_RAW)))
    def run(doc):
        record("interference_model", "structured+numeric", lambda: _use_model(interference_model_from_dict(doc)),
               (ScenarioError,))

    run()
    assert report("interference_model", "structured+numeric") >= MAX_EXAMPLES // 2
