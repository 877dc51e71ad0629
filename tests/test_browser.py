"""The explorer page in a real browser: headless Chromium, driven over the DevTools protocol, loads the
page from uvicorn on 127.0.0.1, and we check what a person would see and do (map, slider, interpolation,
the other tabs), saving screenshots.

Environment: VAEKIT_EXPLORER_RUN serves that run folder instead of the tiny test run (how
docs/images/explorer.png is made); VAEKIT_SCREENSHOTS keeps the screenshots there instead of in a
temporary folder; VAEKIT_CHROMIUM names another Chromium binary.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi", reason="the explorer needs the serve extra (fastapi, uvicorn)")
uvicorn = pytest.importorskip("uvicorn", reason="the explorer needs the serve extra (fastapi, uvicorn)")
websocket = pytest.importorskip(
    "websocket", reason="driving Chromium needs websocket-client (pip install -e '.[dev]')"
)

from test_server import train_tiny  # noqa: E402
from test_server_tables import train_table  # noqa: E402

import vaekit  # noqa: E402
from vaekit.server import create_app  # noqa: E402

CHROMIUM = Path(os.environ.get("VAEKIT_CHROMIUM", "/usr/bin/chromium"))
pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """Headless Chromium with a fresh profile, and a small client of the DevTools protocol."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 1000) -> None:
        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"Chromium did not start (exit code {self.proc.returncode})")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0
        self.errors: list[str] = []
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Page.enable")

    def _note(self, event: dict) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description", details.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"]["text"])

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self._note(msg)

    def js(self, expression: str):
        """The value of a JavaScript expression (promises awaited)."""
        r = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression!r} threw: {r['exceptionDetails'].get('exception', r)}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression!r}; page errors: {self.errors}")
            time.sleep(0.05)

    def mouse(self, kind: str, x: float, y: float, buttons: int = 0) -> None:
        button = "left" if kind != "mouseMoved" or buttons else "none"
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, buttons=buttons,
                  clickCount=1 if kind != "mouseMoved" else 0)

    def click(self, x: float, y: float) -> None:
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, 1)
        self.mouse("mouseReleased", x, y)

    def click_element(self, selector: str) -> None:
        x, y = self.js(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
            el.scrollIntoView({{block: 'center'}}); const r = el.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        self.click(x, y)

    def upload(self, selector: str, path: Path) -> None:
        """Choose ``path`` in the file input ``selector``, as a person picking a file would."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.call("DOM.setFileInputFiles", files=[str(path)], nodeId=node)

    def screenshot(self, path: Path) -> None:
        """The whole page, not just the window."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        if getattr(self, "ws", None):
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The explorer on a free 127.0.0.1 port, served by uvicorn in a thread; stopped at the end."""
    run = os.environ.get("VAEKIT_EXPLORER_RUN")
    if not run:  # a tiny run with `vaekit evaluate`'s numbers (seed, K, bpd, seconds) for the facts tab
        run = train_tiny(tmp_path_factory.getbasetemp(), "explorer-evaluated-run")
        vaekit.evaluate(run, nll_samples=20)
    yield from serve(run)


@pytest.fixture(scope="module")
def table_server(tmp_path_factory):
    """The explorer on a tiny table run (tests/test_server_tables.py)."""
    yield from serve(train_table(tmp_path_factory.mktemp("table-browser")))


def serve(run):
    """Serve the explorer of ``run`` (a generator for a fixture: yields the base URL, then stops)."""
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(run), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"headless Chromium not found at {CHROMIUM}: install Debian's 'chromium' package "
                    "(scripts/test.sh does) or set VAEKIT_CHROMIUM")
    b = Browser(tmp_path / "profile")
    yield b
    b.close()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_explorer_page_in_chromium(server, browser, tmp_path):
    shots = Path(os.environ.get("VAEKIT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    b = browser
    b.call("Page.navigate", url=server + "/")
    b.wait_for("window.vaekitExplorer && window.vaekitExplorer.ready")
    state = "window.vaekitExplorer"

    # the map: one dot per example, drawn in the label colours
    n_points = b.js(f"{state}.map.x.length")
    assert n_points == b.js(f"{state}.info.map_points") > 10
    coloured = b.js("""(() => { const c = document.getElementById('map');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          const spread = Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]);
          if (d[i+3] > 0 && spread > 60) n++; }
        return n; })()""")
    assert coloured > 20 * n_points ** 0.5, "the map shows (almost) no coloured dots"
    assert b.js(f"{state}.selected") == b.js(f"{state}.map.index[0]")
    assert b.js("document.getElementById('decoded').naturalWidth") > 0

    # hovering a dot shows its image; clicking an empty spot decodes it
    rect = b.js("(() => { const r = document.getElementById('map').getBoundingClientRect(); "
                "return [r.left, r.top, r.width, r.height]; })()")
    k = b.js(f"{state}.map.index.length - 1")
    sx, sy = b.js(f"[view.sx[{k}], view.sy[{k}]]")
    b.mouse("mouseMoved", rect[0] + sx, rect[1] + sy)
    b.wait_for("!document.getElementById('map-tooltip').classList.contains('hidden') && "
               "document.getElementById('tooltip-img').naturalWidth > 0")
    decodes = b.js(f"{state}.decodes")
    b.click(rect[0] + 3, rect[1] + 3)  # a corner: no dot there
    b.wait_for(f"{state}.decodes > {decodes} && {state}.selected === null")

    # moving the most active dimension's slider re-decodes the image
    b.click(rect[0] + sx, rect[1] + sy)
    b.wait_for(f"{state}.selected === {state}.map.index[{k}]")
    b.wait_for(f"{state}.decodes > {decodes + 1}")
    before, decodes = b.js("document.getElementById('decoded').src"), b.js(f"{state}.decodes")
    dim = b.js(f"{state}.info.dim_order[0]")
    # drag the thumb to the far end of the track (away from the example's value)
    x0, x1, y = b.js("""(() => { const s = document.querySelector('#sliders input');
        s.scrollIntoView({block: 'center'}); const r = s.getBoundingClientRect();
        const f = (s.value - s.min) / (s.max - s.min), far = f < 0.5 ? r.right - 4 : r.left + 4;
        return [r.left + 8 + f * (r.width - 16), far, r.top + r.height / 2]; })()""")
    b.mouse("mouseMoved", x0, y)
    b.mouse("mousePressed", x0, y, 1)
    for i in range(1, 9):
        b.mouse("mouseMoved", x0 + (x1 - x0) * i / 8, y, 1)
    b.mouse("mouseReleased", x1, y)
    b.wait_for(f"{state}.decodes > {decodes}")
    b.wait_for(f"Math.abs({state}.z[{dim}] - Number(document.querySelector('#sliders input').value)) < 1e-9")
    assert abs(b.js(f"{state}.z[{dim}]") - b.js(f"{state}.baseZ[{dim}]")) > 2
    b.wait_for(f"document.getElementById('decoded').src !== {json.dumps(before)}")

    # an interpolation from an example to an uploaded image: a strip of images, drawn as a path on the map
    ring = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(ring).ellipse((14, 8, 50, 56), outline=0, width=7)  # a dark "0" on white paper
    ring.save(tmp_path / "zero.png")
    b.js("document.getElementById('interp-invert').checked = true")
    b.upload('.end[data-end="b"] .end-file', tmp_path / "zero.png")
    b.wait_for(f"{state}.ends.b.z !== undefined && {state}.ends.b.desc === 'upload: zero.png'")
    b.js("window.scrollTo(0, 0)")
    b.click_element("#interp-run")
    steps = b.js("Number(document.getElementById('interp-steps').value)")
    b.wait_for(f"document.querySelectorAll('#interp-strip img').length === {steps}")
    srcs = b.js("[...document.querySelectorAll('#interp-strip img')].map((i) => i.src)")
    assert srcs[0] != srcs[-1]
    assert b.js(f"{state}.path.length") == steps
    b.js("window.scrollTo(0, 0)")
    b.screenshot(shots / "explorer.png")

    # the other tabs: samples from the prior, a reconstruction with its numbers, the model facts
    b.click_element('.tabs button[data-tab="sample"]')
    n = b.js("Number(document.getElementById('sample-n').value)")
    b.wait_for(f"document.querySelectorAll('#sample-grid img').length === {n}")
    b.screenshot(shots / "explorer-sample.png")
    b.click_element('.tabs button[data-tab="reconstruct"]')
    b.click_element("#recon-selected")
    b.wait_for("document.querySelectorAll('#recon-table tr').length === 6")
    first = b.js("document.getElementById('recon-table').textContent")
    pad = b.js("(() => { const r = document.getElementById('draw-pad').getBoundingClientRect(); "
               "return [r.left, r.top, r.width]; })()")
    b.mouse("mousePressed", pad[0] + pad[2] * 0.5, pad[1] + pad[2] * 0.2, 1)
    for i in range(1, 11):  # a vertical stroke: a "1"
        b.mouse("mouseMoved", pad[0] + pad[2] * 0.5, pad[1] + pad[2] * (0.2 + 0.06 * i), 1)
    b.mouse("mouseReleased", pad[0] + pad[2] * 0.5, pad[1] + pad[2] * 0.8)
    b.click_element("#draw-run")
    b.wait_for(f"document.getElementById('recon-table').textContent !== {json.dumps(first)}")
    assert "ELBO" in b.js("document.getElementById('recon-table').textContent")
    b.screenshot(shots / "explorer-reconstruct.png")
    b.click_element('.tabs button[data-tab="facts"]')
    assert b.js("document.querySelectorAll('#kl-chart rect').length") == b.js(f"{state}.info.latent_dim")
    assert '"latent_dim"' in b.js("document.getElementById('config').textContent")
    # the metrics table stays in its column (it used to spill over the KL chart); counts print as
    # integers and every number has its own unit
    rect = "(() => {{ const r = document.getElementById('{}').getBoundingClientRect(); " \
           "return [r.left, r.right, r.top, r.bottom]; }})()"
    table, chart = (b.js(rect.format(i)) for i in ("metrics-table", "kl-chart"))
    assert table[1] <= chart[0] or table[3] <= chart[2], (table, chart)
    cells = b.js("Object.fromEntries([...document.querySelectorAll('#metrics-table tr[data-key]')]"
                 ".map((r) => [r.dataset.key, [...r.cells].map((c) => c.textContent)]))")
    evaluation = b.js(f"{state}.info.evaluation.test")
    assert cells["seed"][2] == str(evaluation["seed"]) == "0"  # it printed as 0.000
    assert cells["n"][2] == str(evaluation["n"]) and cells["K"][2] == "20"
    assert cells["bpd"][1] == "bits/dim" and cells["elbo"][1] == "nats"
    assert cells["wall_seconds"][1] == cells["cpu_seconds"][1] == "s"
    b.screenshot(shots / "explorer-facts.png")

    # the traversal: one labelled row per unit, most KL first, starting from the decoder's example;
    # clicking an image loads its latent into the decoder
    b.click_element('.tabs button[data-tab="traverse"]')
    for control, value in (("trav-top", "'3'"), ("trav-steps", "'5'")):
        b.js(f"document.getElementById('{control}').value = {value}")
    b.js("document.getElementById('trav-from').checked = true")
    b.click_element("#trav-run")
    b.wait_for("document.querySelectorAll('#trav-grid img').length === 15")
    labels = b.js("[...document.querySelectorAll('#trav-grid .row-label')].map((l) => l.textContent)")
    assert [label.split(" ")[0] for label in labels] == [f"z{d}" for d in b.js(f"{state}.info.dim_order")[:3]]
    b.screenshot(shots / "explorer-traverse.png")
    decodes = b.js(f"{state}.decodes")
    b.js("document.querySelectorAll('#trav-grid img')[4].click()")  # the first row's last step: +3 sd
    b.wait_for(f"{state}.decodes > {decodes}")
    assert b.js(f"{state}.z[{dim}]") == pytest.approx(3.0, abs=1e-5)

    latencies = b.js(f"{state}.latencies")
    (shots / "explorer-latency.json").write_text(json.dumps({"slider_to_image_ms": latencies}))
    median = sorted(latencies)[len(latencies) // 2]
    print(f"slider -> new image: median {median:.1f} ms over {len(latencies)} updates")
    assert not b.js("document.getElementById('status').classList.contains('error')"), b.js(
        "document.getElementById('status').textContent")
    assert b.errors == []
    for name in ("explorer.png", "explorer-sample.png", "explorer-reconstruct.png", "explorer-facts.png",
                 "explorer-traverse.png"):
        assert (shots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_run_page_shows_rows(table_server, browser):
    b = browser
    b.call("Page.navigate", url=table_server + "/")
    b.wait_for("window.vaekitExplorer && window.vaekitExplorer.ready")
    state = "window.vaekitExplorer"
    assert b.js(f"{state}.table") is True
    # the decoder shows the chosen row and its decoding as tables with every column
    b.wait_for("document.querySelectorAll('#decoded-row tr').length === 3")
    names = b.js("[...document.querySelectorAll('#decoded-row th')].map((t) => t.textContent)")
    assert names == ["size", "colour", "ok"]
    assert b.js("document.querySelectorAll('#original-row tr').length") == 3
    # colour by the categorical column: the legend lists its labels, the values come with the map
    b.js("(() => { const s = document.getElementById('color-select'); s.value = 'colour'; "
         "s.dispatchEvent(new Event('change')); })()")
    b.wait_for(f"{state}.map.color_by === 'colour'")
    legend = b.js("[...document.querySelectorAll('#map-legend span')].map((s) => s.textContent)")
    assert set(legend) <= {"blue", "green", "red"} and legend
    assert b.js(f"{state}.map.values.length") == b.js(f"{state}.map.x.length")
    # clicking an empty spot decodes it into a row
    decodes = b.js(f"{state}.decodes")
    rect = b.js("(() => { const r = document.getElementById('map').getBoundingClientRect(); "
                "return [r.left, r.top]; })()")
    b.click(rect[0] + 3, rect[1] + 3)
    b.wait_for(f"{state}.decodes > {decodes} && {state}.selected === null")
    assert b.js("document.querySelector('.tabs button[data-tab=\"sample\"]').classList.contains('hidden')")
