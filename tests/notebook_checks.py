"""What a reader of an executed notebook must see, checked on a cell's outputs (nbformat output dicts).

Used on the notebooks the CI-sized ``dvc repro`` executes (tests/test_pipeline.py: papermill, the pipeline's
parameters) and on nbval's own execution of each notebook with its defaults (notebooks/conftest.py), so every
notebook is executed once per way it is run, not once more just to read its outputs (issue 25).
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile

from bench.pipeline import report

#: the report module's figure functions (annotated ``-> Figure``; with those of bench.pipeline.figures, which it
#: re-exports and the other stages' notebooks call as ``figures.NAME``)
FIGURE_FUNCTIONS = sorted(n for n, f in vars(report).items() if inspect.isfunction(f)
                          and inspect.signature(f).return_annotation in ("Figure", report.Figure))
#: a code cell that draws: it must leave an image/png output (a figure copied from another stage with
#: gallery.add_file, e.g. the testbed's when that stage ran, is not required here); ``display(fig)``, not
#: ``display(figures.headline_table(...))``
PLOTTING = re.compile(r"gallery\.add\(|display\(fig\b|(?:report|figures)\.(" + "|".join(FIGURE_FUNCTIONS)
                      + r")\(|sns\.\w+plot|\.plot\(")
#: what must never show in an executed notebook's outputs
FORBIDDEN = ("TqdmWarning", "IProgress not found", "Traceback")


def outputs_text(outputs) -> str:
    parts = []
    for o in outputs:
        if o["output_type"] == "stream":
            parts.append("".join(o["text"]))
        elif o["output_type"] == "error":
            parts.append("Traceback " + o.get("ename", ""))
        else:
            for kind, value in o.get("data", {}).items():
                if kind.startswith("text/"):
                    parts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(parts)


def is_plotting(source: str) -> bool:
    return bool(PLOTTING.search(source))


def cell_problems(name: str, source: str, outputs, machine_paths) -> list[str]:
    """What is wrong with one executed code cell's outputs: a plotting cell without an image, a forbidden
    text (a progress-bar warning, a traceback) or a machine path in an output."""
    problems = []
    if is_plotting(source):
        kinds = {k for o in outputs for k in o.get("data", {})}
        if "image/png" not in kinds:
            problems.append(f"{name}: a plotting cell shows no image:\n{source[:200]}")
    text = outputs_text(outputs)
    problems += [f"{name}: {bad!r} in an output:\n{text[:500]}" for bad in FORBIDDEN if bad in text]
    problems += [f"{name}: the machine path {p!r} leaks into an output:\n{text[:500]}"
                 for p in machine_paths if p in text]
    return problems


def machine_paths(*paths) -> set[str]:
    """The paths no output may show: the given ones, the temporary directory and this checkout."""
    from bench.paths import REPO_ROOT

    return {*(str(p) for p in paths), tempfile.gettempdir() + os.sep, str(REPO_ROOT)}
