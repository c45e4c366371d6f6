"""`pps report` as a reader meets it: report.html rendered by real headless Chromium (not
blank, the headline numbers in the page, nothing from the network, results' strings
escaped), and the plots' rules checked on the figures themselves (axes labelled, no offset
text, legends outside the data and without repeated colours, small multiples past eight
series, no empty panels), from a short real loopback run."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from support import pps

from pps.report import plot_latency, plot_style, plots
from pps.report.build import write_report
from pps.report.display import rate
from pps.report.plot_ledger import ledger_rows
from pps.results.store import TrialResults, read_trial

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
HOSTILE_LABEL = '<script>alert("x")</script><img src=http://198.18.0.1/x.png>&amp;'


@pytest.fixture(scope="module")
def trial_dir(tmp_path_factory) -> Path:
    """One short real loopback run, sampled often enough to give a time series."""
    out = tmp_path_factory.mktemp("run") / "trial"
    done = pps("run", "--duration", "0.5", "--set", "run.warmup=0.2", "--set", "run.interval=0.2",
               "--set", "target.port=47461", "--out", str(out), timeout=90)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def report(trial_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    done = pps("report", str(trial_dir), "--out", str(out), timeout=90)
    assert done.returncode == 0, done.stderr
    assert f"html:   {out / 'report.html'}" in done.stdout
    return out


def chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    assert exe, "Debian's chromium package is needed: apt-get install -y chromium"
    profile = tmp_path / "chromium-profile"  # a fresh profile each time
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------------------- the page

def test_report_html_renders_with_its_numbers(report, trial_dir, tmp_path):
    page = report / "report.html"
    shot = tmp_path / "shot.png"
    done = chromium("--window-size=1280,2000", f"--screenshot={shot}", page.as_uri(),
                    tmp_path=tmp_path)
    assert shot.exists(), done.stderr
    pixels = matplotlib.image.imread(shot)[:, :, :3]
    not_white = (pixels < 0.9).any(axis=2).mean()
    assert not_white > 0.05, f"the page looks blank: {not_white:.1%} of pixels not white"

    dom = chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path).stdout
    summary = json.loads((trial_dir / "run.json").read_text())["summary"]
    for number in (rate(summary["rx_pps"]).strip(), rate(summary["tx_pps"]).strip()):
        assert number in dom, f"{number} not in the rendered page"
    assert "Drop ledger" in dom and "Latency distribution" in dom


def test_report_html_is_self_contained(report):
    text = (report / "report.html").read_text()
    sources = re.findall(r'\b(?:src|href)="([^"]*)"', text)
    pngs = sorted(report.glob("*.png"))
    assert len(sources) == len(pngs) >= 5  # every plot, embedded
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_SIGNATURE
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text and "@import" not in text


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_report_html_escapes_strings_from_results(trial_dir, tmp_path):
    copy = tmp_path / "hostile"
    shutil.copytree(trial_dir, copy)
    run = json.loads((copy / "run.json").read_text())
    run["config"]["run"]["label"] = HOSTILE_LABEL
    (copy / "run.json").write_text(json.dumps(run))
    written = write_report([copy], tmp_path / "r")
    parsed = _Elements()
    parsed.feed(written["html"].read_text())
    assert "script" not in parsed.tags
    assert parsed.tags.count("img") == len(written["plots"])  # the label's <img> is text
    assert any(HOSTILE_LABEL in t for t in parsed.text)


# ----------------------------------------------------------------------------- the figures

def _check_rules(fig) -> None:
    """Labelled axes in every row and column of panels, no offset text, legends outside
    their axis and without a repeated colour, no empty visible panel."""
    visible = [ax for ax in fig.axes if ax.axison]
    assert visible
    rows = {ax.get_subplotspec().rowspan.start for ax in visible}
    cols = {ax.get_subplotspec().colspan.start for ax in visible}
    assert rows <= {ax.get_subplotspec().rowspan.start for ax in visible if ax.get_ylabel()}
    assert cols <= {ax.get_subplotspec().colspan.start for ax in visible if ax.get_xlabel()}
    renderer = fig.canvas.get_renderer()
    for ax in visible:
        assert ax.yaxis.get_offset_text().get_text() == ""
        assert ax.xaxis.get_offset_text().get_text() == ""
        assert ax.lines or ax.patches or ax.collections, "an empty panel"
        legend = ax.get_legend()
        if legend is not None:
            box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert box.x0 >= area.x1 or box.y1 <= area.y0 or box.y0 >= area.y1, "legend over data"
            colours = [to_hex(h.get_color() if hasattr(h, "get_color") else h.get_facecolor())
                       for h in legend.legend_handles]
            assert len(colours) == len(set(colours)), colours


def test_plots_of_one_trial_follow_the_rules(trial_dir, figures, tmp_path):
    trial = read_trial(trial_dir)
    for draw in (plots.ledger, plots.latency, plots.timeseries, plots.workers, plots.queues):
        assert draw([trial], ["one"], tmp_path / "x.png") is not None, draw.__name__
    assert len(figures) == 5
    for fig in figures:
        _check_rules(fig)


def test_twelve_trials_become_small_multiples(trial_dir, figures, tmp_path):
    """Past eight series, one panel per trial: colours never repeat within a figure."""
    trial = read_trial(trial_dir)
    labels = [f"trial {i}" for i in range(12)]
    plots.timeseries([trial] * 12, labels, tmp_path / "t.png")
    plots.latency([trial] * 12, labels, tmp_path / "l.png")
    for fig in figures:
        visible = [ax for ax in fig.axes if ax.axison]
        assert len(visible) == 12
        for ax in visible:
            drawn = {to_hex(line.get_color()) for line in ax.lines if len(np.asarray(line.get_xdata()))}
            assert len(drawn - {to_hex("grey")}) <= 2  # rx and drops, or one-way; grey guides
        _check_rules(fig)


def test_rate_unit_by_magnitude_and_no_offset(figures, tmp_path):
    runs = pd.DataFrame({"status": "done", "senders.batch": [1, 8, 64, 1, 8, 64],
                         "rx_pps": [1.1e6, 2.2e6, 3.3e6, 1.0e6, 2.0e6, 3.0e6],
                         "tx_pps": [1.2e6, 2.4e6, 3.6e6, 1.2e6, 2.4e6, 3.6e6]})
    plots.rate_vs_param(runs, "senders.batch", [], tmp_path / "r.png")
    slow = runs.assign(rx_pps=runs["rx_pps"] / 1e4, tx_pps=runs["tx_pps"] / 1e4)
    plots.rate_vs_param(slow, "senders.batch", [], tmp_path / "s.png")
    assert [fig.axes[0].get_ylabel() for fig in figures] == ["packets/s (Mpps)", "packets/s (pps)"]
    for fig in figures:
        _check_rules(fig)
    assert plot_style.unit_for(350_000) == (1e3, "kpps")


def test_veth_queue_counters_that_are_all_zero_draw_no_panel(tmp_path):
    """veth has rx_queue_N_xdp_packets, always 0 without XDP: not a per-queue rx counter."""
    counters = pd.DataFrame({"t": [0.0, 1.0], "source": "ethtool", "queue": [0, 0], "cpu": None,
                             "name": "rx_queue_N_xdp_packets", "delta": [0, 0], "reset": False})
    trial = TrialResults(tmp_path, {"summary": {}}, {"counters": counters})
    assert plots.queue_counter(counters) is None
    assert plots.queues([trial], ["veth"], tmp_path / "q.png") is None


def test_latency_cdf_from_buckets():
    buckets = pd.DataFrame({"low_ns": [2048, 1024, 4096], "high_ns": [4095, 2047, 8191],
                            "count": [2, 1, 1]})
    x, y = plot_latency.cdf(buckets)
    assert list(x) == [1024, 2047, 4095, 8191]  # a bucket's count at its upper edge
    assert list(y) == [0, 0.25, 0.75, 1.0]
    assert plot_latency.cdf(buckets.assign(count=0)) is None


def test_ledger_parts_add_up_to_sent(tmp_path):
    summary = {"sent": 1000, "ledger": {"sent": 1000, "received": 900, "unaccounted": -5,
                                        "layers": {"udp": 105, "nic": 0}}}
    rows = ledger_rows([TrialResults(tmp_path, {"summary": summary})], ["a"])
    row = rows[0]
    assert row["received"] + sum(row[p] for p in plot_style.LAYERS) + row["unaccounted"] == 1000
    assert np.isclose(row["udp"] / row["sent"], 0.105)
