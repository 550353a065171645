"""Fixtures for the hw tests; the fakes themselves are in hw_fakes.py."""

import pytest

from hw_fakes import FakePhone


@pytest.fixture
def phone(tmp_path, monkeypatch) -> FakePhone:
    return FakePhone(tmp_path, monkeypatch)


def pytest_terminal_summary(terminalreporter):
    """How many generated inputs each parser saw in test_hw_fuzz.py, and how each ended."""
    import json
    import os
    import sys

    counts = getattr(sys.modules.get("test_hw_fuzz"), "COUNTS", None)
    if not counts:
        return
    terminalreporter.section("hw fuzz: generated inputs per parser")
    for name, c in counts.items():
        terminalreporter.write_line(f"{name:28s} {c['inputs']:6d} inputs: {c['parsed']:6d} parsed, "
                                    f"{c['own_error']:6d} own error, {c['skipped_lines']:6d} lines skipped+counted")
    if os.environ.get("HW_FUZZ_REPORT"):
        with open(os.environ["HW_FUZZ_REPORT"], "w") as fh:
            json.dump(counts, fh, indent=2, sort_keys=True)
