"""Every stage notebook, executed as the pipeline executes it (papermill, CI-sized defaults).

nbval (``make test``) checks that the notebooks run; this checks what a reader of the
executed notebooks sees: every plotting cell shows an image, no progress-bar
warnings or machine paths in the outputs, the notebooks stay small, and the
report's HTML page opens in a real (headless) browser with every figure decoded.
"""

import inspect
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bench.paths import NOTEBOOKS_DIR, REPO_ROOT
from bench.pipeline import report
from bench.pipeline.stages import NOTEBOOKS, kernel_name

#: the report module's figure functions (annotated ``-> Figure``)
FIGURE_FUNCTIONS = sorted(n for n, f in vars(report).items() if inspect.isfunction(f)
                          and inspect.signature(f).return_annotation in ("Figure", report.Figure))
#: a code cell that draws: it must leave an image/png output (a figure copied from another stage with
#: gallery.add_file, e.g. the testbed's when that stage ran, is not required here)
PLOTTING = re.compile(r"gallery\.add\(|display\(fig|report\.(" + "|".join(FIGURE_FUNCTIONS)
                      + r")\(|sns\.\w+plot|\.plot\(")
#: what must never show in an executed notebook's outputs
FORBIDDEN = ("TqdmWarning", "IProgress not found", "Traceback")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Each notebook run once through papermill with its defaults (out_dir: a fresh temporary directory)."""
    pm = pytest.importorskip("papermill")
    root = tmp_path_factory.mktemp("executed")
    out = {}
    for stage, name in NOTEBOOKS.items():
        target = root / stage
        target.mkdir()
        path = root / name
        pm.execute_notebook(str(NOTEBOOKS_DIR / name), str(path), parameters={"out_dir": str(target)},
                            kernel_name=kernel_name(), cwd=str(NOTEBOOKS_DIR), progress_bar=False)
        out[stage] = (path, target)
    sizes = {NOTEBOOKS[s]: f"{p.stat().st_size / 1e3:.0f} kB" for s, (p, _) in out.items()}
    print("\nexecuted notebook sizes:", json.dumps(sizes))
    return out


def _outputs_text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            parts.append("".join(o["text"]))
        elif o["output_type"] == "error":
            parts.append("Traceback " + o.get("ename", ""))
        else:
            for kind, value in o.get("data", {}).items():
                if kind.startswith("text/"):
                    parts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(parts)


@pytest.mark.parametrize("stage", list(NOTEBOOKS))
def test_executed_notebook_shows_images_and_clean_outputs(executed, stage):
    path, out_dir = executed[stage]
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    plotting = [c for c in code if PLOTTING.search("".join(c["source"]))]
    assert plotting, f"{path.name}: no plotting cell found"
    for cell in plotting:
        kinds = {k for o in cell.get("outputs", []) for k in o.get("data", {})}
        assert "image/png" in kinds, f"{path.name}: a plotting cell shows no image:\n{''.join(cell['source'])[:200]}"
    machine_paths = {str(out_dir), str(out_dir.parent), tempfile.gettempdir() + os.sep, str(REPO_ROOT)}
    for cell in code:
        if "injected-parameters" in cell["metadata"].get("tags", []):
            continue  # papermill's record of what was passed in, not an output
        text = _outputs_text(cell)
        for bad in FORBIDDEN:
            assert bad not in text, f"{path.name}: {bad!r} in an output:\n{text[:500]}"
        for p in machine_paths:
            assert p not in text, f"{path.name}: the machine path {p!r} leaks into an output:\n{text[:500]}"
    # the executed notebook stays small: figures and tables, no per-update progress chunks
    streams = sum(o["output_type"] == "stream" for c in code for o in c.get("outputs", []))
    assert streams <= len(code), f"{path.name}: {streams} stream outputs in {len(code)} cells"


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_html_report_opens_in_a_headless_browser_with_every_figure_loaded(executed, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no headless browser: install Debian's `chromium` (.ci/run does) to check the HTML report")
    page = executed["report"][1] / "index.html"
    html = page.read_text(encoding="utf-8")
    n_figures = html.count('<img class="figure"')
    assert n_figures >= 10, f"{page.name} embeds only {n_figures} figures"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body, f"the browser returned no page:\n{proc.stdout[:500]}\n{proc.stderr[-1000:]}"
    assert f'data-figures="{n_figures}"' in body.group(0), body.group(0)
    assert f'data-figures-loaded="{n_figures}"' in body.group(0), body.group(0)
    imgs = re.findall(r'<img class="figure"[^>]*>', proc.stdout)
    assert len(imgs) == n_figures and all('data-loaded="true"' in i for i in imgs)
    assert all(int(re.search(r'data-natural-width="(\d+)"', i).group(1)) > 100 for i in imgs)
