"""Property-based fuzzing of params.yaml loading (Hypothesis).

Malformed params — the shipped file mutated structurally, or its text edited byte by
byte — end in a validated :class:`Params` with finite numbers or in a one-line
:class:`ParamsError`; never another exception, never a hang (Hypothesis deadline).
"""

import yaml
from fuzz_support import (FUZZ, MAX_EXAMPLES, edited_bytes, finite_numbers, mutated, numeric_mutated, record,
                          report)
from hypothesis import given

from bench.config import ParamsError, as_dict, load_params, params_from_dict
from bench.paths import PARAMS_FILE

TEXT = PARAMS_FILE.read_text()
BASE = yaml.safe_load(TEXT)


def setup_module():
    # import the registries (torch, dask) once, outside the per-input deadline
    params_from_dict(BASE)


def _check(params):
    if params is not None:
        assert not finite_numbers(as_dict(params))
        for name in params.train.runs:  # run names become directories under results/
            assert "/" not in name and not name.startswith(".")


def test_fuzz_params_structured():
    @FUZZ
    @given(mutated(BASE))
    def run(doc):
        _check(record("params", "structured", lambda: params_from_dict(doc), (ParamsError,)))

    run()
    assert report("params", "structured") >= MAX_EXAMPLES // 2


def test_fuzz_params_numeric():
    @FUZZ
    @given(numeric_mutated(BASE))
    def run(doc):
        _check(record("params", "numeric", lambda: params_from_dict(doc), (ParamsError,)))

    run()
    assert report("params", "numeric") >= MAX_EXAMPLES // 2


def test_fuzz_params_text(tmp_path):
    path = tmp_path / "params.yaml"

    @FUZZ
    @given(edited_bytes(TEXT))
    def run(raw):
        path.write_bytes(raw)
        _check(record("params", "text", lambda: load_params(path), (ParamsError,)))

    run()
    assert report("params", "text") >= MAX_EXAMPLES // 2
