"""The report as one self-contained HTML page: ``results/report/index.html``.

Figures are embedded as base64 PNG, tables as HTML, and the run's metadata (host,
library versions, git revision, params) is printed at the end, so the page can be
mailed or archived on its own and still says what produced it. A few lines of
inline script mark each figure once the browser has decoded it (``data-loaded``),
which lets a reader see a broken figure at once and lets the test check the page
in a real browser. The page loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import yaml

from bench.paths import REPO_ROOT

#: the libraries whose versions the page records
VERSIONED = ("edge-inference-bench", "numpy", "pandas", "torch", "gymnasium", "matplotlib", "seaborn", "dvc",
             "papermill")

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .92em; margin-top: .3em; }
table { border-collapse: collapse; font-size: .88em; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } tr:nth-child(even) td { background: #fafafa; }
img[data-loaded="false"] { outline: 3px solid #c62828; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: .85em; }
nav a { margin-right: 1em; }
"""

# marks every figure with whether the browser decoded it (naturalWidth > 0)
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img.figure"), ok = 0;
  imgs.forEach(function (img) {
    var loaded = img.complete && img.naturalWidth > 0;
    img.setAttribute("data-loaded", loaded ? "true" : "false");
    img.setAttribute("data-natural-width", String(img.naturalWidth));
    if (loaded) { ok += 1; }
  });
  document.body.setAttribute("data-figures", String(imgs.length));
  document.body.setAttribute("data-figures-loaded", String(ok));
});
"""


@dataclass
class Section:
    """One part of the page: a heading, a paragraph, then figures (path, caption) and tables (title, frame)."""

    title: str
    text: str = ""
    figures: list[tuple[Path, str]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)


def run_metadata(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Host, OS, Python, library versions, git revision and the params the run used."""
    from hw.provenance import cpu_model, git_revision, library_versions

    versions = library_versions(VERSIONED)
    versions.pop("python")
    return {"host": platform.node() or "unknown", "os": f"{platform.system()} {platform.release()}",
            "cpu": cpu_model(), "python": sys.version.split()[0],
            "versions": versions, "git_revision": git_revision(REPO_ROOT),
            "params": dict(params or {})}


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(caption or Path(path).stem)
    return (f'<figure id="{html.escape(Path(path).stem)}"><img class="figure" alt="{alt}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def _table(title: str, frame: pd.DataFrame) -> str:
    head = f"<h3>{html.escape(title)}</h3>" if title else ""
    return head + frame.to_html(index=frame.index.name is not None, escape=True, border=0, na_rep="")


def render(title: str, sections: Sequence[Section], metadata: Mapping[str, Any], intro: str = "") -> str:
    """The page's HTML (a string); :func:`write` saves it."""
    nav = " ".join(f'<a href="#s{i}">{html.escape(s.title)}</a>' for i, s in enumerate(sections))
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>" if intro else "", f"<nav>{nav}</nav>"]
    for i, s in enumerate(sections):
        body.append(f'<h2 id="s{i}">{html.escape(s.title)}</h2>')
        if s.text:
            body.append(f"<p>{html.escape(s.text)}</p>")
        body += [_table(t, f) for t, f in s.tables]
        body += [_img(p, c) for p, c in s.figures]
    meta = dict(metadata)
    params = meta.pop("params", {})
    versions = meta.pop("versions", {})
    rows = [{"": k, "value": v} for k, v in meta.items()] + [{"": f"version: {k}", "value": v}
                                                              for k, v in versions.items()]
    body.append('<h2 id="run">Run metadata</h2>')
    body.append(pd.DataFrame(rows).to_html(index=False, escape=True, border=0))
    body.append("<h3>params</h3><pre>" + html.escape(yaml.safe_dump(params, sort_keys=False)) + "</pre>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head>\n"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")


def write(path: str | Path, title: str, sections: Sequence[Section], metadata: Mapping[str, Any],
          intro: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(title, sections, metadata, intro), encoding="utf-8")
    return path
