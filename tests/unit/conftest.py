"""Fixtures of the unit tests."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from pps.report import plot_style  # noqa: E402


@pytest.fixture
def figures(monkeypatch):
    """Every figure the plot functions save, drawn (as savefig would) and kept open for
    inspection; closed after the test."""
    saved = []

    def keep(fig, out):
        fig.canvas.draw()
        saved.append(fig)
        return out
    monkeypatch.setattr(plot_style, "save", keep)
    yield saved
    for fig in saved:
        plot_style.plt.close(fig)
