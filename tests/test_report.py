"""report.html: verdict first, self-contained, and it renders in a real browser cleanly."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from bench.results.rundir import RunInfo, RunScenario, RunWriter
from helpers_rundir import START, make_run_dir

SLO = {"objectives": [{"ops": ["get"], "percentile": "99%", "under": "1ms"},
                      {"ops": ["set"], "percentile": "99%", "under": "300us"}],
       "errors": {"max": "1%"}, "window": "5s", "windows_compliant": "90%"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--enable-logging=stderr",
                  "--v=0"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20 s run with a get/set mix, some timeouts and an SLO the sets miss."""
    rng = np.random.default_rng(7)
    values = rng.lognormal(np.log(200), 0.5, (20, 200)).astype(np.int64).tolist()
    counters = [{"hits": 180, "misses": 20, "errors": {"timeout": i % 3}} for i in range(20)]
    run_dir = make_run_dir(tmp_path_factory.mktemp("report"), {"get": values, "set": values},
                           counters={"get": counters}, slo=SLO)
    assert main(["report", str(run_dir)]) == 0
    return run_dir / "report.html"


def test_verdict_comes_before_the_first_plot(report: Path) -> None:
    page = report.read_text()
    assert page.index("FAIL: SLO missed") < page.index("<img")
    assert "99% of set under 300 us: only" in page
    assert page.index("<h2>Latency percentile spectrum</h2>") < page.index("<h2>What ran</h2>")


def test_self_contained_and_pngs_beside(report: Path) -> None:
    page = report.read_text()
    assert "<script" not in page and "<link" not in page and "http" not in page
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) == 5  # spectrum, latency over time, throughput, errors, node load
    beside = sorted(report.parent.glob("report-*.png"))
    assert [p.name for p in beside] == ["report-errors.png", "report-latency-over-time.png",
                                        "report-node-load.png", "report-spectrum.png",
                                        "report-throughput.png"]
    embedded = {base64.b64decode(s.removeprefix("data:image/png;base64,")) for s in sources}
    assert embedded == {p.read_bytes() for p in beside}
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in embedded)


def test_sections_show_the_numbers(report: Path) -> None:
    page = report.read_text()
    assert "<td>127.0.0.1:11212</td><td>evictions</td><td>0</td><td>3</td><td>3</td>" in page
    assert "<dt>target</dt><dd>memcached://127.0.0.1:11211</dd>" in page
    assert "<td>total</td><td>8,000</td><td>400</td><td>90.00%</td>" in page


def _chromium(page: Path, screenshot: Path, profile: Path) -> str:
    """Render `page` headless into `screenshot`; return chromium's log (stderr)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is not installed (Debian package: chromium)")
    result = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             f"--screenshot={screenshot}", "--window-size=1280,2000",
                             page.as_uri()], capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


def console_messages(log: str) -> list[str]:
    """Lines where the page wrote to the console or threw (chromium's CONSOLE log lines)."""
    return [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_renders_in_chromium_without_console_errors(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    log = _chromium(report, shot, tmp_path / "profile")
    assert console_messages(log) == []
    image = np.asarray(Image.open(shot).convert("L"))
    assert image.shape == (2000, 1280)
    assert (image < 200).mean() > 0.02  # text, tables and plots drawn, not a blank page


def test_console_check_catches_page_errors(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>missingFunction();</script></body></html>")
    log = _chromium(page, tmp_path / "bad.png", tmp_path / "profile")
    assert any("missingFunction is not defined" in line for line in console_messages(log))


def test_without_slo_and_errors(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[100, 200]] * 3})
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    page = out.read_text()
    assert page.index("No SLO given") < page.index("<img")
    assert "<h2>Errors</h2><p>No errors.</p>" in page
    assert (tmp_path / "elsewhere-spectrum.png").exists()


def test_bad_out_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[100]]})
    assert main(["report", str(run_dir), "--out", str(tmp_path / "no" / "r.html")]) == 2
    assert capsys.readouterr().err == f"bench: {tmp_path / 'no'}: --out: directory does not exist\n"


def test_empty_run_renders_without_warnings(tmp_path: Path) -> None:
    run_dir = tmp_path / "empty"
    with RunWriter(run_dir, RunInfo(scenario=RunScenario(name="x")), START) as writer:
        writer.finish("aborted", ended=START + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["report", str(run_dir)]) == 0
    assert "No SLO given" in (run_dir / "report.html").read_text()
