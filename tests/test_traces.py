"""The trace schema: columns, dtypes, errors and the metadata sidecar."""

import json

import pandas as pd
import pytest

from hw.traces import TRACE_COLUMNS, TraceSchemaError, read_trace, run_metadata, sidecar_path, trace_frame, write_trace

ROW = {"device": "d", "adapter": "none", "workload": "resnet18", "target": "cpu", "source": "measured", "meter": "none",
       "latency_ms": 12.0, "n_runs": 3, "batch": 1}


def test_frame_has_schema_columns_and_fills_missing():
    df = trace_frame([ROW])
    assert list(df.columns) == list(TRACE_COLUMNS)
    assert pd.isna(df.energy_mj[0]) and df.error[0] == ""


@pytest.mark.parametrize("bad,needle", [
    ({**ROW, "energy_j": 1.0}, "unknown column"),
    ({**ROW, "source": "guessed"}, "source='guessed'"),
    ({k: v for k, v in ROW.items() if k != "workload"}, "missing required"),
])
def test_bad_rows_are_named(bad, needle):
    with pytest.raises(TraceSchemaError, match=needle):
        trace_frame([bad])


def test_write_read_round_trip_with_sidecar(tmp_path):
    df = trace_frame([ROW, {**ROW, "workload": "vit_b_16", "error": "OOM", "n_runs": 0}])
    path = write_trace(df, tmp_path / "t.parquet", run_metadata(adapter="none"))
    back, meta = read_trace(path)
    pd.testing.assert_frame_equal(back, df)
    assert back.error.tolist() == ["", "OOM"]  # a failed configuration is kept as a row
    side = json.loads(sidecar_path(path).read_text())
    assert side == meta and {"host", "os", "versions", "git_revision", "adapter"} <= set(meta)
    assert "torch" in meta["versions"]
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries
