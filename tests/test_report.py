"""`layerprobe report`: a self-contained report.html that renders in headless Chromium with every
image loaded and no console error."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.helpers_cli import layerprobe_shell
from tests.limits import HANG
from tests.results_data import DEPTHS, LAYERS, curve_store, probe_rows, write_store

TASKS = {"near": (0.9, 1.5, 0.05), "far": (0.6, 2.5, 0.3), "mid": (0.8, 2.0, 0.15)}
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Injected at the top of <head> of a copy of the report: records errors (script errors, and
# resources that fail to load: the capture phase sees those too) and console.error calls, and
# after `load` writes what it found into the DOM, which --dump-dom prints.
CHECK = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(e.message || ("failed to load " + (e.target.src || e.target.tagName || e.type)).slice(0, 80)), true);
const __consoleError = console.error;
console.error = (...args) => { window.__errors.push(args.join(" ")); __consoleError(...args); };
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const out = document.createElement("pre");
  out.id = "layerprobe-check";
  out.textContent = JSON.stringify({images: images.length, broken: broken, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from layerprobe.analysis import write_report

    root = tmp_path_factory.mktemp("report")
    store = curve_store(root / "res", TASKS, shots=(1, 5))
    return write_report(store, root / "out", bootstrap=10, progress=None)


def find_chromium() -> str:
    for name in CHROMIUM:
        if path := shutil.which(name):
            return path
    pytest.skip(
        "no Chromium on this machine (tried chromium, chromium-browser, google-chrome): install "
        "Debian's `chromium` (apt-get install chromium; .ci/run does) to run the render check"
    )


def render(page, tmp_path) -> tuple[dict, str]:
    """Open ``page`` (a copy with CHECK injected) in headless Chromium without network access;
    return the check's findings and Chromium's stderr."""
    probe = tmp_path / "check.html"
    probe.write_text(page.read_text().replace("<head>", "<head>" + CHECK, 1))
    run = subprocess.run(
        [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # anything fetched from the network fails
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    found = re.search(r'<pre id="layerprobe-check">(.*?)</pre>', run.stdout, re.S)
    assert found, (
        f"Chromium did not finish loading the report (rc {run.returncode}): {run.stderr[-2000:]}"
    )
    return json.loads(html.unescape(found.group(1))), run.stderr


def test_report_renders_in_headless_chromium(report, tmp_path):
    check, stderr = render(report, tmp_path)
    n_png = len(list((report.parent / "plots").glob("*.png")))
    # saturation and layers at 5 shots (the headline), depth vs e_IR, e_IR vs shots, one heat
    # map, the matched head_wd pairs: one figure per question, not one per shot count
    assert check["images"] == n_png == 6
    assert check["broken"] == []
    assert check["errors"] == []
    console = [line for line in stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console


def test_the_check_catches_a_broken_image(report, tmp_path):
    broken = tmp_path / "broken.html"
    text = report.read_text()
    first = text.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken.write_text(text[:first] + "AAAA" + text[first + 40 :])  # corrupt the first PNG
    check, _ = render(broken, tmp_path)
    assert len(check["broken"]) == 1 and check["errors"]


def test_report_is_self_contained(report):
    text = report.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
    images = re.findall(r'<img src="([^"]{0,30})', text)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    for name in (
        "Saturation fit",
        "Layers",
        "Pre-training knobs",
        "Figures",
        "Settings the rows came from",
    ):
        assert f">{name}</h2>" in text
    # the fit table shows the saturation values the store was built with
    for e_ir in (0.05, 0.3, 0.15):
        assert f"{1 - e_ir:.3f} [" in text
    assert (report.parent / "fits.parquet").is_file() and (
        report.parent / "layers.parquet"
    ).is_file()
    assert not list((report.parent / "plots").glob("*.svg"))  # SVG copies only with --svg


def test_report_without_upstream_accuracy_shows_the_layers(tmp_path):
    from layerprobe.analysis import write_report

    rows = []
    for task, peak in (("a", 1), ("b", 3)):
        for i, (layer, depth) in enumerate(zip(LAYERS, DEPTHS, strict=True)):
            rows += probe_rows(
                0.5 + 0.1 * (i == peak),
                task=task,
                layer=layer,
                depth=depth,
                upstream_accuracy=np.nan,
            )
    page = write_report(write_store(rows, tmp_path / "res"), tmp_path / "out")
    text = page.read_text()
    assert "layerprobe upstream" in text
    assert "layers-5-shot" in text and not (tmp_path / "out" / "fits.parquet").exists()
    assert "<td>blocks.1</td>" in text  # task a's best layer
    summary = text[text.index("<h2>Summary</h2>") : text.index("</section>")]
    assert "1 checkpoint, 2 tasks" in summary and "no US accuracy" in summary
    assert "1 of 2 tasks: a (depth 0.33, 10.0 points above the last layer)" in summary


def test_report_command(tmp_path):
    store = curve_store(tmp_path / "res", {"near": TASKS["near"]})
    out = tmp_path / "o"
    run = layerprobe_shell(
        "report", "--results", store, "--out", out, "--bootstrap", "0", "--svg", "--quiet"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(tmp_path / "o" / "report.html") and run.stderr == ""
    pngs = sorted(p.stem for p in (tmp_path / "o" / "plots").glob("*.png"))
    assert pngs and pngs == sorted(p.stem for p in (tmp_path / "o" / "plots").glob("*.svg"))
    (tmp_path / "file").write_text("")
    bad = layerprobe_shell("report", "--results", store, "--out", tmp_path / "file" / "x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "is a file" in bad.stderr
