"""The notebook view in a real notebook: executed by nbclient on an ipykernel kernel, then rendered in
Chromium inside Jupyter's own output-area table rules, light and dark."""

from __future__ import annotations

import os

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat (the 'test' extra)")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient (the 'test' extra)")
pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel (the 'test' extra)")

from test_html import _contrast, _keep, browser  # noqa: E402,F401  (the Chromium fixture and helpers)

CELLS = [
    "import torch.nn as nn, torchvision, netscope",
    "report = netscope.summary(torchvision.models.resnet50(weights=None), (1, 3, 224, 224), device='meta')\nreport",
    "deep = netscope.summary(nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.ReLU()) for _ in range(4000)]),"
    " (1, 64))\ndeep",
]

# The output-area rules of JupyterLab's rendermime stylesheet that used to break the view (right-aligned
# cells, zebra rows, fixed layout, padding), with the theme variables of its light and dark themes.
JUPYTER_CSS = """
.jp-RenderedHTMLCommon table{border-collapse:collapse;border-spacing:0;border:none;color:var(--jp-ui-font-color1);
 font-size:var(--jp-ui-font-size1);table-layout:fixed;margin-left:auto;margin-right:auto}
.jp-RenderedHTMLCommon thead{border-bottom:var(--jp-border-width) solid var(--jp-border-color1);vertical-align:bottom}
.jp-RenderedHTMLCommon td,.jp-RenderedHTMLCommon th,.jp-RenderedHTMLCommon tr{vertical-align:middle;padding:.5em;
 line-height:normal;white-space:normal;max-width:none;border:none}
.jp-RenderedHTMLCommon td,.jp-RenderedHTMLCommon th{text-align:right}
.jp-RenderedHTMLCommon th{font-weight:bold}
.jp-RenderedHTMLCommon tbody tr:nth-child(odd){background:var(--jp-layout-color0)}
.jp-RenderedHTMLCommon tbody tr:nth-child(even){background:var(--jp-rendermime-table-row-background)}
.jp-RenderedHTMLCommon tbody tr:hover{background:var(--jp-rendermime-table-row-hover-background)}
body{margin:0;background:var(--jp-layout-color0);color:var(--jp-content-font-color1);font-size:14px}
"""
THEMES = {
    "light": ":root{--jp-layout-color0:#fff;--jp-layout-color1:#fff;--jp-layout-color2:#eee;"
             "--jp-content-font-color1:rgba(0,0,0,.87);--jp-content-font-color2:rgba(0,0,0,.54);"
             "--jp-ui-font-color1:rgba(0,0,0,.87);--jp-border-color1:#bdbdbd;--jp-border-color2:#e0e0e0;"
             "--jp-border-width:1px;--jp-content-link-color:#1976d2;--jp-rendermime-table-row-background:#f5f5f5;"
             "--jp-rendermime-table-row-hover-background:#e1f5fe;--jp-ui-font-size1:13px}",
    "dark": ":root{--jp-layout-color0:#111;--jp-layout-color1:#212121;--jp-layout-color2:#424242;"
            "--jp-content-font-color1:rgba(255,255,255,1);--jp-content-font-color2:rgba(255,255,255,.7);"
            "--jp-ui-font-color1:rgba(255,255,255,.87);--jp-border-color1:#616161;--jp-border-color2:#424242;"
            "--jp-border-width:1px;--jp-content-link-color:#42a5f5;--jp-rendermime-table-row-background:#212121;"
            "--jp-rendermime-table-row-hover-background:#263238;--jp-ui-font-size1:13px}",
}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    env_path = os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env_path  # the kernel imports this checkout's netscope, as the tests do
    try:
        client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}})
        client.execute()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    return notebook


def _output(cell) -> dict:
    [result] = [o for o in cell.outputs if o.output_type == "execute_result"]
    return result["data"]


def test_notebook_shows_a_headline_and_a_compact_view(executed):
    import torchvision

    import netscope

    resnet, deep = _output(executed.cells[1]), _output(executed.cells[2])
    reference = netscope.summary(torchvision.models.resnet50(weights=None), (1, 3, 224, 224), device="meta")
    assert resnet["text/plain"] == repr(reference) == "ResNet · 25.6 M params · 4.09 G MACs · 231 MB · 0 findings"  # the 3 downsample notes are info, not warnings
    params, macs = 4000 * (64 * 64 + 64), 4000 * 64 * 64  # Linear(64, 64) blocks on one 64-vector
    assert deep["text/plain"].startswith(f"Sequential · {params / 1e6:.3g} M params · {macs / 1e6:.3g} M MACs")
    assert len(deep["text/plain"].encode("utf-8")) < 1_000
    assert 'class="ns-root ns-nb"' in resnet["text/html"] and "<script" not in resnet["text/html"]
    assert len(deep["text/html"].encode("utf-8")) < 50_000
    assert len(nbformat.writes(executed).encode("utf-8")) < 200_000  # the whole saved notebook


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_notebook_output_is_readable_under_jupyter_styles(executed, browser, tmp_path, theme):
    html = _output(executed.cells[1])["text/html"]
    page = tmp_path / f"notebook-{theme}.html"
    page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{THEMES[theme]}{JUPYTER_CSS}</style>"
                    f"</head><body><div class='jp-OutputArea-output jp-RenderedHTMLCommon'>{html}</div></body></html>",
                    encoding="utf-8")
    browser.media("", "dark" if theme == "dark" else "light")
    try:
        browser.open(page)
        cells = browser.js("Array.from(document.querySelectorAll('.ns-nb tbody tr:nth-child(2) td'),"
                           " td => [getComputedStyle(td).textAlign, td.textContent])")
        assert cells[0] == ["left", "\xa0" * 4 + "conv1"]  # the tree's indent survives Jupyter's right-alignment
        assert cells[3][0] == "right"  # numbers stay right-aligned
        backgrounds = browser.js("Array.from(document.querySelectorAll('.ns-nb tbody tr'), r => getComputedStyle(r).backgroundColor)")
        assert set(backgrounds) == {"rgba(0, 0, 0, 0)"}  # no zebra rows from Jupyter
        ratios = _contrast(browser, {"headline": ".ns-headline", "cell": ".ns-nb tbody td", "header": ".ns-nb th",
                                     "flow": ".ns-step b", "run": ".ns-run", "summary": ".ns-nb summary"})
        assert all(r is not None and r >= 4.5 for r in ratios.values()), ratios
        browser.js("document.querySelectorAll('.ns-nb details').forEach(d => d.open = true)")
        browser.screenshot(tmp_path / f"notebook-{theme}.png")
        _keep(tmp_path, f"notebook-{theme}.png")
    finally:
        browser.media("", "light")
    assert browser.errors == []
