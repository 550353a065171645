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


@pytest.mark.parametrize("workers", [1, 2])
def test_figures_written_in_children_are_the_files_written_here(tmp_path, workers):
    here = report.Gallery(tmp_path / "here", save_workers=0)
    there = report.Gallery(tmp_path / "there", save_workers=workers)
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


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 2), (4, 4)])
def test_default_writers_one_per_core_and_none_on_one_core(tmp_path, monkeypatch, cores, workers):
    # one child per core beside the drawing process: a figure that draws longer than it writes does not leave a
    # core idle while this process waits on the previous write (issue 25); one core: writing here is as fast
    monkeypatch.delenv("BENCH_REPORT_WORKERS", raising=False)
    monkeypatch.setattr("bench.config.local_cores", lambda: cores)
    assert report.Gallery(tmp_path)._workers == workers
