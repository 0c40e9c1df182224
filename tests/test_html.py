"""The HTML report, the notebook view and --plot: payload checks in Python, behaviour in headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import types
import urllib.parse
import urllib.request

import pytest
import torch.nn as nn
import torchvision

import netscope
from netscope.cli import main
from netscope.errors import DependencyError, UsageError
from netscope.records import Finding, Severity
from netscope.render.breakdown import breakdown
from netscope.render.flow import shape_flow
from netscope.render.html import notebook_html, report_html
from netscope.units import megabytes

BLOB = re.compile(r'<script type="application/json" id="ns-data">(.*?)</script>', re.S)


# ---- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet50():
    model = torchvision.models.resnet50(weights=None)
    return model, netscope.summary(model, (1, 3, 224, 224), device="meta")


@pytest.fixture(scope="module")
def resnet50_annotated(resnet50):
    """The ResNet-50 report with one failed formula check (conv1) and one naming finding (fc) added."""
    _, report = resnet50
    conv1 = next(c for c in report.layers if c.name == "conv1")
    fc = next(c for c in report.layers if c.name == "fc")
    check = types.SimpleNamespace(
        call_index=conv1.index, layer="conv1", class_name="Conv2d", status="mismatch",
        expected_shape=(1, 64, 113, 113), observed_shape=(1, 64, 112, 112), dims=(),
        findings=[Finding(Severity.WARNING, "padding-odd", "padding 3 </script> is odd", layer="conv1")])
    passed = types.SimpleNamespace(call_index=fc.index, layer="fc", class_name="Linear", status="pass",
                                   expected_shape=(1, 1000), observed_shape=(1, 1000), dims=(), findings=[])
    naming = Finding(Severity.INFO, "tied-weight", "fc is <tied> & shared", fix="untie it", layer="fc")
    return dataclasses.replace(report, checks=[check, passed], findings=[naming])


@pytest.fixture(scope="module")
def big_report():
    """12,001 modules: a Sequential of 4000 Sequential(Linear(64, 64), ReLU()) blocks."""
    model = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.ReLU()) for _ in range(4000)])
    report = netscope.summary(model, (1, 64), device="cpu")
    assert len(report.layers) == 12_001  # precondition of the test, not validation
    return report


def payload(page: str) -> dict:
    blobs = BLOB.findall(page)
    assert len(blobs) == 1
    return json.loads(blobs[0])


def full_names(data: dict) -> list:
    """The qualified names, rebuilt from the compact rows the way the page's script does."""
    fields = {f: i for i, f in enumerate(data["fields"])}
    names = []
    for row in data["rows"]:
        name, parent = row[fields["name"]], row[fields["parent"]]
        if isinstance(name, list):
            names.append(name[0])
        else:
            names.append(f"{names[parent]}.{name}" if parent >= 0 and names[parent] else name)
    return names


# ---- the page, checked in Python -------------------------------------------------------------------

def test_resnet50_page_is_small_and_self_contained(resnet50):
    _, report = resnet50
    page = report_html(report)
    assert len(page.encode("utf-8")) < 1_000_000
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched from a network
    assert "default-src 'none'" in page  # and the page forbids it
    data = payload(page)
    assert data["totals"] == report.totals.to_dict()
    assert len(data["rows"]) == len(report.layers)
    assert full_names(data) == [c.name for c in report.layers]
    fields = {f: i for i, f in enumerate(data["fields"])}
    assert [r[fields["params"]] for r in data["rows"]] == [c.subtree_params for c in report.layers]
    assert [r[fields["macs"]] for r in data["rows"]] == [c.macs for c in report.layers]
    assert [data["classes"][r[fields["class"]]] for r in data["rows"]] == [c.class_name for c in report.layers]


def test_totals_block_shows_report_totals(resnet50):
    _, report = resnet50
    page = report_html(report)
    shown = dict(re.findall(r'data-total="(\w+)" data-value="(\d+)"', page))
    t = report.totals
    for key in ("total_params", "trainable_params", "non_trainable_params", "total_macs", "input_bytes",
                "activation_bytes", "param_bytes", "buffer_bytes"):
        assert int(shown[key]) == getattr(t, key)
    assert f'data-value="{t.total_params}">{t.total_params:,}<' in page
    assert f'data-value="{t.total_macs}">{t.total_macs:,} (4.09 G)<' in page
    assert f">{megabytes(t.param_bytes)}<" in page


def test_script_breaking_text_is_escaped(resnet50_annotated):
    report = dataclasses.replace(resnet50_annotated, run=dataclasses.replace(
        resnet50_annotated.run, model="</script><script>alert(1)</script>"))
    page = report_html(report)
    assert page.count("</script>") == 2  # the data blob and the page script, nothing from the report
    data = payload(page)
    assert data["model"] == "</script><script>alert(1)</script>"
    assert data["checks"][0][2] == ["padding 3 </script> is odd"]


def test_checks_and_naming_findings_are_placed_on_their_rows(resnet50_annotated):
    report = resnet50_annotated
    data = payload(report_html(report))
    fields = {f: i for i, f in enumerate(data["fields"])}
    index = {c.name: c.index for c in report.layers}
    kinds = [row[fields["check"]] for row in data["rows"]]
    conv1_kind, fc_kind = kinds[index["conv1"]], kinds[index["fc"]]
    assert data["checks"][conv1_kind] == [
        "mismatch", "mismatch: expected (1, 64, 113, 113), observed (1, 64, 112, 112)", ["padding 3 </script> is odd"],
        ["warning"]]  # each message's severity, in the CLI's vocabulary
    assert data["checks"][fc_kind] == ["pass", "", [], []]
    assert sum(k >= 0 for k in kinds) == 2
    texts = data["texts"]
    assert list(data["names"]) == [str(index["fc"])]
    [[code, message, fix]] = data["names"][str(index["fc"])]
    assert (texts[code], texts[message], texts[fix]) == ("tied-weight", "fc is <tied> & shared", "untie it")


def test_shape_flow_of_resnet50_marks_where_spatial_size_halves(resnet50):
    _, report = resnet50
    flow = shape_flow(report.layers, report.run.input_shapes)
    assert [(s.label, s.text, s.halves) for s in flow.steps] == [
        ("input", "3×224×224", False), ("conv1", "64×112×112", True), ("maxpool", "64×56×56", True),
        ("layer1", "256×56×56", False), ("layer2", "512×28×28", True), ("layer3", "1024×14×14", True),
        ("layer4", "2048×7×7", True), ("avgpool", "2048×1×1", False), ("fc", "1000", False)]
    assert flow.omitted == 0


def test_breakdown_matches_pytorch_parameter_counts(resnet50):
    model, report = resnet50
    bars = breakdown(report.layers)
    expected = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    assert {b.label: b.value for b in bars.block_params} == {k: v for k, v in expected.items() if v}
    assert sum(b.value for b in bars.block_macs) == report.totals.total_macs
    by_type = {}
    for module in model.modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if own:
            by_type[type(module).__name__] = by_type.get(type(module).__name__, 0) + own
    assert {b.label: b.value for b in bars.type_params} == by_type
    assert [b.value for b in bars.type_params] == sorted(by_type.values(), reverse=True)


def test_12001_module_model_renders_small(big_report):
    page = report_html(big_report)
    assert len(page.encode("utf-8")) < 1_000_000
    data = payload(page)
    assert len(data["rows"]) == 12_001
    assert full_names(data) == [c.name for c in big_report.layers]
    assert data["totals"] == big_report.totals.to_dict()
    bars = breakdown(big_report.layers)
    assert len(bars.block_params) == 16 and bars.block_params[-1].label == "other (3,985 blocks)"
    assert sum(b.value for b in bars.block_params) == 4000 * (64 * 64 + 64)


def test_notebook_view_is_compact_and_script_free(resnet50_annotated, big_report):
    report = resnet50_annotated
    view = report._repr_html_()
    assert view == notebook_html(report)
    assert "<script" not in view
    assert f"{report.totals.total_params:,}" in view
    assert 'class="ns-badge ns-mismatch"' in view and "1 naming" in view
    assert "3×224×224" in view
    assert len(notebook_html(big_report)) < 100_000
    assert "3,941 more top-level calls not listed" in notebook_html(big_report)


# ---- --plot and the CLI ----------------------------------------------------------------------------

def test_cli_writes_html_and_plot(tmp_path, capsys):
    html, png = tmp_path / "report.html", tmp_path / "bars.png"
    rc = main(["summary", "resnet18", "--device", "meta", "--html", str(html), "--plot", str(png)])
    assert rc == 0
    err = capsys.readouterr().err
    assert f"wrote {html}" in err and f"wrote {png}" in err
    assert payload(html.read_text(encoding="utf-8"))["totals"]["total_params"] == 11_689_512
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_unknown_plot_extension_before_running(tmp_path, capsys):
    rc = main(["summary", "resnet18", "--device", "meta", "--plot", str(tmp_path / "bars.xyz")])
    assert rc == 2
    assert "image format" in capsys.readouterr().err
    assert not (tmp_path / "bars.xyz").exists()


def test_plot_without_matplotlib_names_the_extra(resnet50, tmp_path, monkeypatch):
    from netscope.render.plot import save_plot

    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    with pytest.raises(DependencyError, match=r'pip install "netscope\[plot\]"'):
        save_plot(resnet50[1], str(tmp_path / "bars.png"))
    assert not (tmp_path / "bars.png").exists()


def test_plot_svg(resnet50, tmp_path):
    from netscope.render.plot import save_plot

    save_plot(resnet50[1], str(tmp_path / "bars.svg"))
    text = (tmp_path / "bars.svg").read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "layer4" in text
    with pytest.raises(UsageError):
        save_plot(resnet50[1], str(tmp_path / "bars"))


# ---- in a real browser -----------------------------------------------------------------------------

class _WebSocket:
    """The client half of RFC 6455, enough for the DevTools protocol: text frames, no extensions."""

    def __init__(self, url: str, timeout: float = 20.0):
        parts = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = bytearray()
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode(errors="replace"))
        self.buffer = bytearray(rest)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("DevTools closed the connection")
        self.buffer += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
                                if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(head + mask + masked)

    def recv(self) -> str:
        message = b""
        while True:
            first, second = self._take(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._take(8))[0]
            data = self._take(n)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode in (0x9, 0xA):  # ping / pong: the browser does not ping us; ignore
                continue
            message += data
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class _Page:
    """One browser tab driven over the DevTools protocol; collects console errors as they arrive."""

    def __init__(self, ws: _WebSocket):
        self.ws, self.next_id, self.errors, self.events = ws, 0, [], []

    def call(self, method: str, **params):
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def _event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        self.events.append(method)
        if method == "Runtime.exceptionThrown":
            self.errors.append(params["exceptionDetails"].get("exception", {}).get("description", str(params)))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"]["text"])

    def open(self, path) -> None:
        self.events.clear()
        self.call("Page.navigate", url=f"file://{path}")
        while "Page.loadEventFired" not in self.events:
            self._event(json.loads(self.ws.recv()))

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (scrolled into view first)."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
                      " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type_into(self, selector: str, text: str) -> None:
        self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); e.select(); }})()")
        if text:
            self.call("Input.insertText", text=text)
        else:
            self.call("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape", windowsVirtualKeyCode=27)

    def screenshot(self, path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data


def _chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = _chromium_binary()
    if binary is None:
        pytest.skip("no headless Chromium found (install Debian's `chromium` package; .ci/run does)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = open(profile.parent / "chromium.log", "wb")
    proc = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1100",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log)
    ws = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"Chromium did not start (exit {proc.poll()}); see {log.name}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            target = next(t for t in json.load(answer) if t["type"] == "page")
        ws = _WebSocket(target["webSocketDebuggerUrl"])
        page = _Page(ws)
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=1400, height=1100, deviceScaleFactor=1, mobile=False)
        yield page
    finally:
        if ws is not None:
            ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


VISIBLE_ROWS = "Array.from(document.querySelectorAll('#ns-tree-body tr:not(.ns-more)'), r => r.querySelector('.ns-label').title)"


def _expected_filter(report, query: str) -> tuple:
    """The oracle for the search box: the matching calls and every call enclosing one of them."""
    by_index = {c.index: c for c in report.layers}
    hits = [c for c in report.layers if query in f"{c.name} {c.class_name}".lower()]
    keep = set()
    for c in hits:
        keep.add(c.index)
        parent = c.parent
        while parent is not None:
            keep.add(parent)
            parent = by_index[parent].parent
    return {c.name or "(root)" for c in hits}, [by_index[i].name or "(root)" for i in sorted(keep)]


def test_browser_resnet50(browser, resnet50_annotated, tmp_path):
    report = resnet50_annotated
    path = tmp_path / "resnet50.html"
    path.write_text(report_html(report), encoding="utf-8")
    browser.open(path)
    assert browser.js("document.body.dataset.ready") == "1"

    # the numbers shown equal report.totals, in the totals block and on the tree's root row
    shown = browser.js("Object.fromEntries(Array.from(document.querySelectorAll('[data-total]'),"
                       " e => [e.dataset.total, [e.dataset.value, e.textContent]]))")
    t = report.totals
    assert shown["total_params"] == [str(t.total_params), f"{t.total_params:,}"]
    assert shown["trainable_params"] == [str(t.trainable_params), f"{t.trainable_params:,}"]
    assert shown["total_macs"] == [str(t.total_macs), f"{t.total_macs:,} (4.09 G)"]
    assert shown["param_bytes"] == [str(t.param_bytes), megabytes(t.param_bytes)]
    root = browser.js("Array.from(document.querySelectorAll('#ns-tree-body tr')[0].cells, c => [c.textContent, c.title])")
    assert root[4][0] == f"{t.total_params:,}"
    assert root[5] == ["4.09 G", f"{t.total_macs:,} (own: 0)"]

    # collapsed below depth 1: the root and its direct children
    top = ["(root)"] + [c.name for c in report.layers if c.depth == 1]
    assert browser.js(VISIBLE_ROWS) == top
    browser.screenshot(tmp_path / "resnet50.png")

    # badges: the failed check on conv1, the naming finding on fc
    badges = browser.js("Object.fromEntries(Array.from(document.querySelectorAll('#ns-tree-body tr'),"
                        " r => [r.querySelector('.ns-label').title, Array.from(r.querySelectorAll('.ns-badge'),"
                        " b => b.className.split(' ')[1] + ':' + b.textContent)]))")
    assert badges["conv1"] == ["ns-mismatch:mismatch", "ns-warn:1 warn"]
    assert badges["fc"] == ["ns-pass:pass", "ns-names:1 naming"]
    assert badges["layer1"] == []

    # expand and collapse on click
    browser.click("#ns-tree-body tr:nth-child(6) .ns-toggle")  # layer1
    expanded = browser.js(VISIBLE_ROWS)
    assert expanded == top[:6] + ["layer1.0", "layer1.1", "layer1.2"] + top[6:]
    browser.click("#ns-tree-body tr:nth-child(7) .ns-toggle")  # layer1.0
    block = next(c for c in report.layers if c.name == "layer1.0")
    inside = [c.name for c in report.layers if c.parent == block.index]  # in call order: relu runs three times
    assert inside[:3] == ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu"] and len(inside) == 10
    assert browser.js(VISIBLE_ROWS) == top[:6] + ["layer1.0"] + inside + ["layer1.1", "layer1.2"] + top[6:]
    labels = browser.js("Array.from(document.querySelectorAll('#ns-tree-body .ns-label'), e => e.textContent)")
    assert labels[7:10] == ["conv1", "bn1", "relu"] and "relu (call 3)" in labels
    browser.click("#ns-tree-body tr:nth-child(6) .ns-toggle")
    assert browser.js(VISIBLE_ROWS) == top

    # the search box filters by name and by class, revealing rows inside collapsed subtrees
    for query in ("downsample", "bottleneck", "layer3.5.conv"):
        browser.type_into("#ns-search", query)
        hits, keep = _expected_filter(report, query.lower())
        assert browser.js(VISIBLE_ROWS) == keep
        assert set(browser.js("Array.from(document.querySelectorAll('tr.ns-hit .ns-label'), e => e.title)")) == hits
        assert browser.js("document.getElementById('ns-status').textContent") == \
            f"{len(hits)} of {len(report.layers)} layers match"
        if query == "downsample":
            browser.screenshot(tmp_path / "resnet50-search.png")
    browser.type_into("#ns-search", "")  # Escape clears the filter and restores the tree
    assert browser.js(VISIBLE_ROWS) == top[:6] + top[6:]
    assert browser.errors == []
    png = (tmp_path / "resnet50.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    if os.environ.get("NETSCOPE_KEEP_SCREENSHOTS"):
        for name in ("resnet50.png", "resnet50-search.png"):
            shutil.copy(tmp_path / name, os.path.join(os.environ["NETSCOPE_KEEP_SCREENSHOTS"], name))


def test_browser_12001_modules(browser, big_report, tmp_path):
    path = tmp_path / "big.html"
    path.write_text(report_html(big_report), encoding="utf-8")
    browser.open(path)
    assert browser.js("document.body.dataset.ready") == "1"
    count = "document.querySelectorAll('#ns-tree-body tr:not(.ns-more)').length"
    more = "Array.from(document.querySelectorAll('#ns-tree-body tr.ns-more'), r => r.textContent)"
    assert browser.js(count) == 1 + 200  # lazily: the root and its first 200 children
    assert browser.js(more) == ["show 200 more (3800 not shown)"]
    browser.click("#ns-tree-body tr.ns-more td")
    assert browser.js(count) == 1 + 400
    browser.click("#ns-tree-body tr:nth-child(2) .ns-toggle")  # block 0
    assert browser.js(VISIBLE_ROWS)[:4] == ["(root)", "0", "0.0", "0.1"]
    browser.type_into("#ns-search", "3999")
    assert browser.js(VISIBLE_ROWS) == ["(root)", "3999", "3999.0", "3999.1"]
    browser.type_into("#ns-search", "relu")  # 4000 matches: the first 500 are shown, in pages of 200
    assert browser.js("document.getElementById('ns-status').textContent") == \
        "4,000 of 12,001 layers match (showing the first 500)"
    assert browser.js("document.querySelectorAll('tr.ns-hit').length") == 200
    total = browser.js("document.querySelector('[data-total=total_params]').textContent")
    assert total == f"{big_report.totals.total_params:,}"
    assert browser.errors == []
    browser.screenshot(tmp_path / "big.png")
    if os.environ.get("NETSCOPE_KEEP_SCREENSHOTS"):
        shutil.copy(tmp_path / "big.png", os.path.join(os.environ["NETSCOPE_KEEP_SCREENSHOTS"], "big.png"))
