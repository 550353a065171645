"""Bad input on the surfaces the second adversarial audit (reliability round 5) found unguarded.

The contract as in tests/test_robust_surfaces.py: a user's mistake is one ``error:`` line naming the file, key
or option, the bad value and what is allowed; exit status 2; no traceback; nothing written or overwritten.
Readers of many rows skip and count the bad ones (naming their lines) and keep the good ones.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from cli_checks import one_line_exit_2

FAST = settings(max_examples=20, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HEADER = ["profile", "workload", "target"]
GOOD = ["phone_sd845", "resnet18", "cpu"]


# --------------------------------------------------------------------------- predict --csv: ragged rows

def _csv(rows) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def test_predict_skips_ragged_rows_and_predicts_the_rest(tmp_path, capsys):
    # was: one ragged row refused the whole file (exit 2, nothing predicted)
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(_csv([HEADER, GOOD, GOOD + ["extra"], []]) + _csv([["phone_sd845", "resnet18", "nope"],
                                                                     ["phone_sd845"], GOOD]))
    assert main(["predict", "--csv", str(src), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "2 ragged rows skipped" in warning[0]
    assert "line 3: 4 cells" in warning[0] and "line 6: 1 cells" in warning[0] and str(src) in warning[0]
    from bench.world.predict import read_rows
    got = read_rows(out)
    assert len(got) == 3 and list(got["target"]) == ["cpu", "nope", "cpu"]
    # a row with a bad value keeps its place and names its file line (the blank line 4 counted)
    assert got.loc[1, "error"].startswith("row 5:") and got.loc[0, "error"] == ""


def test_predict_with_no_usable_row_is_one_line(tmp_path, capsys):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(_csv([HEADER] + [GOOD[:2]] * 20))
    line = one_line_exit_2(capsys, ["predict", "--csv", str(src), "--out", str(out)], "no usable row",
                           "20 ragged rows", "line 2: 2 cells", "(12 more)")
    assert "line 11" not in line and not out.exists()
    src.write_text(_csv([HEADER]))
    one_line_exit_2(capsys, ["predict", "--csv", str(src), "--out", str(out)], "no usable row under the header")
    assert not out.exists()


@FAST
@given(widths=st.lists(st.integers(0, 5), min_size=1, max_size=12))
def test_predict_keeps_exactly_the_rows_that_fit_the_header(tmp_path_factory, widths):
    d = tmp_path_factory.mktemp("p")
    src, out = d / "in.csv", d / "out.csv"
    rows = [(GOOD + ["x"] * 5)[:w] if w != 3 else GOOD for w in widths]
    src.write_text(_csv([HEADER] + rows))
    from bench.world.predict import read_rows
    code = main(["predict", "--csv", str(src), "--out", str(out)])
    usable = sum(w == 3 for w in widths)
    assert code == (0 if usable else 2)
    if usable:
        assert len(read_rows(out)) == usable
    else:
        assert not out.exists()
