"""Figures fit for a paper: print resolution, SVG beside the PNG, no colliding labels, ties drawn once,
axes named for what they show (issue 26, item 7). Small constructed tables, as in tests/test_report.py."""

import re

import numpy as np
import pandas as pd
import pytest

from bench.pipeline import report


def _small_figure():
    fig, axes = report.new_figure(3.0, 2.0)
    axes[0, 0].plot([1, 2, 3], [3, 1, 2], label="a")
    axes[0, 0].set(xlabel="x (s)", ylabel="y (mJ)")
    return fig


def test_save_writes_a_300_dpi_png_and_a_reproducible_svg(tmp_path):
    from PIL import Image

    png = report.save(_small_figure(), tmp_path / "one" / "fig.png")
    svg = png.with_suffix(".svg")
    assert png.exists() and svg.exists()
    with Image.open(png) as im:
        assert im.info["dpi"][0] == pytest.approx(300, abs=1)
        assert im.size[0] > 3.0 * 300 * 0.8  # 3 inches wide at 300 dpi (tight bbox trims a little)
    text = svg.read_text()
    assert "<dc:date>" not in text  # no date: reproducible
    again = report.save(_small_figure(), tmp_path / "two" / "fig.png")
    assert again.read_bytes() == png.read_bytes()
    assert again.with_suffix(".svg").read_bytes() == svg.read_bytes()  # ids from the fixed hashsalt
