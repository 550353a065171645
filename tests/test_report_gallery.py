"""The report's Gallery writes figures in a forked child while the notebook draws the next (issue 25)."""

from __future__ import annotations

import multiprocessing

import pytest
from matplotlib.figure import Figure

from bench.pipeline import report

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")


def _figure(n: int) -> Figure:
    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.plot(range(n), [i * i for i in range(n)], label=f"n={n}")
    ax.legend()
    return fig


def test_figures_written_in_children_are_the_files_written_here(tmp_path):
    here, there = report.Gallery(tmp_path / "here", save_workers=0), report.Gallery(tmp_path / "there", save_workers=1)
    for n in (3, 5, 8):
        here.add(_figure(n), f"f{n}", f"caption {n}", "A" if n < 8 else "B")
        there.add(_figure(n), f"f{n}", f"caption {n}", "A" if n < 8 else "B")
    got = there.sections  # waits for every child
    assert [(t, [(p.name, c) for p, c in figs]) for t, figs in got.items()] == \
        [(t, [(p.name, c) for p, c in figs]) for t, figs in here.sections.items()]
    for n in (3, 5, 8):
        for ext in ("png", "svg"):
            assert (tmp_path / "there" / f"f{n}.{ext}").read_bytes() == (tmp_path / "here" / f"f{n}.{ext}").read_bytes()


def test_a_figure_the_child_cannot_write_is_an_error_naming_it(tmp_path):
    (tmp_path / "fig.png").mkdir()  # a directory where the PNG should go: the child's write fails
    gallery = report.Gallery(tmp_path, save_workers=1)
    gallery.add(_figure(3), "fig", "caption", "A")
    with pytest.raises(RuntimeError, match="fig.png"):
        gallery.sections


def test_report_workers_zero_writes_in_this_process(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_REPORT_WORKERS", "0")
    gallery = report.Gallery(tmp_path)
    gallery.add(_figure(3), "fig", "caption", "A")
    assert not gallery._pending and (tmp_path / "fig.png").is_file() and (tmp_path / "fig.svg").is_file()
