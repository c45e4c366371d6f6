"""The plots' layout rules, checked on the matplotlib figures built from small synthetic
tables shaped like a run's (samples, workers, counters, latency): colours never repeat within
a figure, past eight series small multiples (titled, sharing axes, none empty), axes
labelled with units, legends outside the data, titles inside the figure, and the per-second
rates drawn from the counters counting each packet once."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from pps.report import plot_timeseries, plots  # noqa: E402
from pps.results.store import TrialResults  # noqa: E402

SAMPLE_TIMES = (1.0, 2.0, 3.0)
SNAPSHOTS = (0.0, 1.0, 1.005, 2.0, 3.0, 3.004, 3.4)  # marks 5 ms apart; 3.4: after the run
COUNTER_T0 = 0.6  # the counters' clock reads 0.6 s at go


# ----------------------------------------------------------------------------- synthetic results

def _samples(receivers: int, senders: int, time: str) -> pd.DataFrame:
    rows = []
    for role, count, base in (("receiver", receivers, 80_000), ("sender", senders, 150_000)):
        for index in range(count):
            for i, t in enumerate(SAMPLE_TIMES):
                pps = base + 1_000 * index + 500 * i
                rows.append({time: t, "phase": "warmup" if i == 0 else "measure", "host": "local",
                             "worker": f"{role}-{index}", "role": role, "index": index,
                             "cpu": index % 4, "packets": int(pps * t), "pps": float(pps)})
    return pd.DataFrame(rows)


def _workers(receivers: int, senders: int) -> pd.DataFrame:
    return pd.DataFrame([{"host": "local", "role": role, "index": i, "cpu": i % 4,
                          "packets": 3 * (base + 1_000 * i)}
                         for role, count, base in (("receiver", receivers, 80_000),
                                                   ("sender", senders, 150_000))
                         for i in range(count)])


def _counter_rows(source: str, name: str, per_second: float, time: str, queue: int | None = None,
                  cpu: int | None = None) -> list[dict]:
    """One counter moving at per_second over the run, still after it stopped."""
    rows, value = [], 1_000_000
    for i, t in enumerate(SNAPSHOTS):
        delta = None if i == 0 else per_second * (t - SNAPSHOTS[i - 1])
        value += delta or 0
        rows.append({time: COUNTER_T0 + t, "source": source, "netns": None, "device": None,
                     "queue": queue, "cpu": cpu, "name": name, "value": int(value),
                     "delta": delta, "reset": False})
    return rows


def _counters(cpus: int, queues: int, time: str, busy_cpus: int | None = None,
              drops_per_s: float = 50_000) -> pd.DataFrame:
    busy = cpus if busy_cpus is None else busy_cpus
    rows = []
    for cpu in range(cpus):
        work = 100_000 + 5_000 * cpu if cpu < busy else 0
        rows += _counter_rows("softnet", "processed", work, time, cpu=cpu)
        rows += _counter_rows("softirqs", "NET_RX", work * 1.01, time, cpu=cpu)
    for queue in range(queues):
        rows += _counter_rows("ethtool", "rx_queue_N_packets", 90_000 + 3_000 * queue, time,
                              queue=queue)
    # The same UDP receive-buffer drops, seen three ways: RcvbufErrors, inside InErrors, and
    # per socket. The ledger counts them once.
    rows += _counter_rows("snmp", "UdpRcvbufErrors", drops_per_s, time)
    rows += _counter_rows("snmp", "UdpInErrors", drops_per_s, time)
    rows += _counter_rows("socket", "drops", drops_per_s, time)
    df = pd.DataFrame(rows)
    return df.astype({"queue": "Int64", "cpu": "Int64"})


def _latency(receivers: int) -> pd.DataFrame:
    rows = []
    for receiver in [*range(receivers), -1]:
        for low in (1024, 2048, 4096, 8192):
            rows.append({"kind": "one_way", "receiver": receiver, "low_ns": low,
                         "high_ns": 2 * low - 1, "count": 10 * (receivers if receiver < 0 else 1)})
    return pd.DataFrame(rows)


def trial(tmp_path: Path, receivers: int = 2, senders: int = 2, cpus: int = 2, queues: int = 0,
          time: str = "t", busy_cpus: int | None = None) -> TrialResults:
    summary = {"ledger": {"sent": 1_000_000, "received": 800_000,
                          "drops": {"snmp.UdpRcvbufErrors": 150_000, "snmp.UdpMemErrors": 0,
                                    "snmp.UdpInCsumErrors": 0, "snmp.UdpInErrors(other)": 0},
                          "layers": {"udp": 150_000}, "unaccounted": 50_000}}
    tables = {"samples": _samples(receivers, senders, time),
              "workers": _workers(receivers, senders),
              "counters": _counters(cpus, queues, time, busy_cpus),
              "latency": _latency(receivers)}
    return TrialResults(tmp_path, {"summary": summary}, tables)


# ----------------------------------------------------------------------------- inspecting figures

def panels(fig) -> list:
    return [ax for ax in fig.axes if ax.axison]


def drawn_lines(ax) -> list:
    return [line for line in ax.lines if len(np.asarray(line.get_xdata()))]


def series_colours(ax) -> list[str]:
    """The colour of each line or bar that shows data (grey guide lines left out)."""
    colours = [to_hex(line.get_color()) for line in drawn_lines(ax)
               if line.get_linestyle() != ":" or line.get_marker() not in (None, "None", "")]
    colours += [to_hex(p.get_facecolor()) for p in ax.patches if p.get_height() > 0]
    return colours


def handle_colour(handle) -> str:
    """A legend entry's colour: a line's, a bar's fill, or a ring's edge."""
    if hasattr(handle, "get_color") and not hasattr(handle, "get_facecolor"):
        return to_hex(handle.get_color())
    face = np.asarray(handle.get_facecolor()).reshape(-1, 4)
    if len(face) and face[0][3] > 0:
        return to_hex(face[0])
    return to_hex(np.asarray(handle.get_edgecolor()).reshape(-1, 4)[0])


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def check_layout(fig) -> None:
    """The rules every figure keeps, whatever its layout."""
    renderer = fig.canvas.get_renderer()
    visible = panels(fig)
    assert visible, "a figure with nothing in it"
    figure_box = fig.bbox
    texts = [fig._suptitle] if fig._suptitle is not None else []
    for ax in visible:
        assert drawn_lines(ax) or ax.patches or ax.collections, f"empty panel {ax.get_title()!r}"
        assert ax.yaxis.get_offset_text().get_text() == "", "an offset (1e6) instead of a unit"
        texts.append(ax.title)
        legend = ax.get_legend()
        if legend is not None:  # legends outside the data: beside, above or below the axes
            assert not overlaps(legend.get_window_extent(renderer), ax.get_window_extent(renderer))
    for legend in fig.legends:
        for ax in visible:
            assert not overlaps(legend.get_window_extent(renderer), ax.get_window_extent(renderer))
    for text in texts:  # titles never cut: inside the figure (saved with a tight box besides)
        if text.get_text():
            box = text.get_window_extent(renderer)
            assert box.x0 >= figure_box.x0 - 1 and box.x1 <= figure_box.x1 + 1, text.get_text()
            assert box.y1 <= figure_box.y1 + 1, text.get_text()
    # Every axis labelled, with its unit: each panel's own labels, or in a grid of shared
    # axes, its row's (y) and its column's (x).
    for ax in visible:
        spec = ax.get_subplotspec()
        row = [a for a in visible if a.get_subplotspec().rowspan.start == spec.rowspan.start]
        col = [a for a in visible if a.get_subplotspec().colspan.start == spec.colspan.start]
        ylabel = ax.get_ylabel() or next(
            (a.get_ylabel() for a in row if a.get_ylabel() and a.get_shared_y_axes().joined(a, ax)), "")
        xlabel = ax.get_xlabel() or next(
            (a.get_xlabel() for a in col if a.get_xlabel() and a.get_shared_x_axes().joined(a, ax)), "")
        assert ylabel and xlabel, f"unlabelled axis in panel {ax.get_title()!r}"
    # One colour per thing drawn: no colour stands for two different labels.
    meaning: dict[str, str] = {}
    for ax in visible:
        legend = ax.get_legend()
        if legend is None:
            continue
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            colour = handle_colour(handle)
            thing = text.get_text().split(":")[0]  # "cpu 0: 440,640 packets" names cpu 0
            assert meaning.setdefault(colour, thing) == thing, (colour, meaning[colour], thing)


# ----------------------------------------------------------------------------- per worker

@pytest.mark.parametrize("time", ["t", "t_s"])
def test_three_workers_share_one_axes_in_distinct_colours(tmp_path, figures, time):
    plots.workers([trial(tmp_path, receivers=2, senders=1, time=time)], ["run"], tmp_path / "w.png")
    fig, = figures
    check_layout(fig)
    ax, = panels(fig)
    colours = series_colours(ax)
    assert len(colours) == 3 and len(set(colours)) == 3
    assert ax.get_xlabel() == "seconds since start"
    assert ax.get_ylabel() == "packets/s (kpps)"  # ~150 000 pps: the unit by magnitude
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("receiver 0") and "packets" in labels[0]


@pytest.mark.parametrize("time", ["t", "t_s"])
def test_twelve_workers_become_small_multiples(tmp_path, figures, time):
    plots.workers([trial(tmp_path, receivers=6, senders=6, time=time)], ["run"], tmp_path / "w.png")
    fig, = figures
    check_layout(fig)
    shown = panels(fig)
    assert len(shown) == 12  # one panel per worker, none blank among them
    first = shown[0]
    for ax in shown:
        assert ax.get_title(), "every panel titled"
        assert len(drawn_lines(ax)) == 1
        assert ax.get_shared_x_axes().joined(first, ax) and ax.get_shared_y_axes().joined(first, ax)
    titles = [ax.get_title() for ax in shown]
    assert titles[0].startswith("receiver 0") and titles[-1].startswith("sender 5")
    # A colour is a role in every panel: two colours in the whole figure, the legend's.
    by_role = {ax.get_title().split()[0]: {to_hex(line.get_color()) for line in drawn_lines(ax)}
               for ax in shown}
    assert len(by_role["receiver"] | by_role["sender"]) == 2
    assert by_role["receiver"].isdisjoint(by_role["sender"])
    # Receivers and senders each start on a row of their own.
    rows = {ax.get_title().split()[0]: {ax.get_subplotspec().rowspan.start} for ax in shown}
    assert rows["receiver"].isdisjoint(rows["sender"])


def test_workers_of_several_trials_keep_colours_apart(tmp_path, figures):
    """2 receivers and 2 senders over three trials: one bar colour per worker, receiver 0 and
    sender 0 not sharing one."""
    trials = [trial(tmp_path / str(i), receivers=2, senders=2) for i in range(3)]
    plots.workers(trials, ["a", "b", "c"], tmp_path / "w.png")
    fig, = figures
    check_layout(fig)
    colours = [set(series_colours(ax)) for ax in panels(fig)]
    assert len(panels(fig)) == 2 and colours[0].isdisjoint(colours[1])


def test_a_worker_with_no_packets_is_written_not_left_blank(tmp_path, figures):
    """One flow, two receivers: receiver 1 gets nothing. Its bar is 0 high, so the 0 is
    written on it and the title says so (no max/min ratio hides it)."""
    trials = [trial(tmp_path / str(i), receivers=2, senders=1) for i in range(2)]
    for t in trials:
        workers = t.tables["workers"]
        workers.loc[(workers["role"] == "receiver") & (workers["index"] == 1), "packets"] = 0
    plots.workers(trials, ["a", "b"], tmp_path / "w.png")
    fig, = figures
    check_layout(fig)
    receivers = panels(fig)[0]
    assert "one with none" in receivers.get_title()
    assert [t.get_text() for t in receivers.texts if t.get_text()] == ["0", "0"]


def test_many_workers_over_several_trials_get_a_panel_per_trial(tmp_path, figures):
    trials = [trial(tmp_path / str(i), receivers=6, senders=6) for i in range(3)]
    plots.workers(trials, ["a", "b", "c"], tmp_path / "w.png")
    fig, = figures
    check_layout(fig)
    shown = panels(fig)
    assert [ax.get_title().split("\n")[0] for ax in shown] == ["a", "b", "c"]
    for ax in shown:
        assert len([p for p in ax.patches if p.get_height() > 0]) == 12
        assert len(set(series_colours(ax))) == 2  # receivers and senders


# ----------------------------------------------------------------------------- per queue and CPU

def test_few_queues_and_cpus_one_axes_per_counter(tmp_path, figures):
    plots.queues([trial(tmp_path, cpus=2, queues=2)], ["run"], tmp_path / "q.png")
    fig, = figures
    check_layout(fig)
    shown = panels(fig)
    assert len(shown) == 3  # queue packets, softnet processed, NET_RX softirqs
    ylabels = [ax.get_ylabel() for ax in shown]
    assert ylabels == ["packets/s (kpps)", "packets/s (kpps)", "softirqs/s (thousands)"]
    # cpu 0 is one colour in both of its panels; queue 0 another.
    queue, softnet, softirq = (series_colours(ax) for ax in shown)
    assert softnet == softirq and set(queue).isdisjoint(softnet)


def test_many_cpus_become_small_multiples(tmp_path, figures):
    plots.queues([trial(tmp_path, cpus=12, queues=0)], ["run"], tmp_path / "q.png")
    fig, = figures
    check_layout(fig)
    shown = panels(fig)
    assert len(shown) == 12
    for ax in shown:
        assert ax.get_title().startswith("cpu ")
        assert len(drawn_lines(ax)) == 2  # softnet processed and NET_RX, in the kinds' colours
    assert len({c for ax in shown for c in series_colours(ax)}) == 2
    assert fig.legends, "the kinds' colours explained once, outside the panels"


def test_idle_cpus_are_left_out_and_said_so(tmp_path, figures):
    plots.queues([trial(tmp_path, cpus=16, busy_cpus=2)], ["run"], tmp_path / "q.png")
    fig, = figures
    check_layout(fig)
    assert len(panels(fig)) == 2  # two busy CPUs: one axes per counter, not 16 panels
    assert "14 idle cpus left out" in fig._suptitle.get_text()


def test_counter_rates_stop_with_the_run_and_count_marks_once(tmp_path):
    t = trial(tmp_path, cpus=1)
    rates = plot_timeseries.counter_rates(t.tables["counters"], "softnet", "processed", "cpu",
                                          plot_timeseries.run_end(t))[0]
    # 0-1.005 (the mark merged in), 1.005-2, 2-3.004; 3.004-3.4 is after the last sample.
    assert list(np.round(rates.index, 3)) == [1.005, 2.0, 3.004]
    assert np.allclose(rates.values, 100_000)


def test_drops_per_second_count_each_drop_once(tmp_path):
    """RcvbufErrors, InErrors and the socket's drops count the same drop: 50 000/s, not 150 000."""
    rate = plot_timeseries.drop_rate(trial(tmp_path))
    assert len(rate) == 3 and np.allclose(rate.values, 50_000)


# ----------------------------------------------------------------------------- other figures

def test_many_receivers_latency_become_small_multiples(tmp_path, figures):
    plots.latency([trial(tmp_path, receivers=10)], ["run"], tmp_path / "l.png")
    fig, = figures
    check_layout(fig)
    shown = panels(fig)
    assert len(shown) == 11  # all receivers, then each
    assert shown[0].get_title() == "run: all receivers"


@pytest.mark.parametrize("time", ["t", "t_s"])
def test_one_trial_figures_keep_the_rules(tmp_path, figures, time):
    t = trial(tmp_path, receivers=2, senders=2, cpus=2, queues=2, time=time)
    for draw in (plots.ledger, plots.latency, plots.timeseries, plots.workers, plots.queues):
        assert draw([t], ["run"], tmp_path / "x.png") is not None, draw.__name__
    assert len(figures) == 5
    for fig in figures:
        check_layout(fig)


def test_twelve_trials_keep_the_rules(tmp_path, figures):
    trials = [trial(tmp_path / str(i)) for i in range(12)]
    labels = [f"trial {i}" for i in range(12)]
    for draw in (plots.ledger, plots.latency, plots.timeseries, plots.workers, plots.queues):
        draw(trials, labels, tmp_path / "x.png")
    for fig in figures:
        check_layout(fig)
    timeseries = figures[2]
    assert len(panels(timeseries)) == 12


# ----------------------------------------------------------------------------- history trend

def _trend_table(points: int) -> pd.DataFrame:
    rows = []
    for position in range(4):
        for i in range(points):
            for metric, center in (("rx_pps", 1e6 + 1e4 * i), ("p99_ns", 20_000.0)):
                verdict = None if position == 0 else "ok"
                if position == 3 and i == points - 1:
                    verdict, center = "regression", center * (0.8 if metric == "rx_pps" else 1.3)
                if position == 2 and i == 0:
                    verdict = "improvement"
                rows.append({"position": position, "source": f"r{position}", "label": f"night {position}",
                             "kernel": "6.1", "date": f"2024-01-0{position + 1}",
                             "point": f"senders.batch={2 ** i}", "metric": metric, "n": 3,
                             "center": center, "low": center * 0.97, "high": center * 1.02,
                             "verdict": verdict})
    return pd.DataFrame(rows)


def test_trend_colours_never_look_like_a_verdict(tmp_path, figures):
    from pps.experiments.regression_metrics import RUN_METRICS
    from pps.report import trend_plot

    trend_plot.trend(_trend_table(4), list(RUN_METRICS), tmp_path / "t.png")
    fig, = figures
    check_layout(fig)
    shown = panels(fig)
    assert len(shown) == 2  # rx rate and latency p99; loss and CPU not in the table
    rings = {to_hex("tab:red"), to_hex("tab:green")}
    point_colours = [{to_hex(line.get_color()) for line in drawn_lines(ax)} for ax in shown]
    assert all(len(c) == 4 and not c & rings for c in point_colours)
    assert point_colours[0] == point_colours[1]  # a sweep point keeps its colour in each panel
    assert shown[0].get_ylabel() == "rx rate (Mpps)" and shown[1].get_ylabel() == "latency p99 (µs)"


def test_trend_of_many_sweep_points_becomes_small_multiples(tmp_path, figures):
    from pps.experiments.regression_metrics import RUN_METRICS
    from pps.report import trend_plot

    trend_plot.trend(_trend_table(9), list(RUN_METRICS), tmp_path / "t.png")
    fig, = figures
    check_layout(fig)
    shown = panels(fig)
    assert len(shown) == 18  # 2 metrics x 9 sweep points
    assert all(ax.get_title() for ax in shown)
    assert len({c for ax in shown for line in drawn_lines(ax) for c in [to_hex(line.get_color())]}) == 1
    assert fig.legends
