"""The simulator figure: legends beside the panels, never over the plotted lines."""

from __future__ import annotations

import pytest

from mlkube.autoscale import presets, traces
from mlkube.autoscale.plot import DPI, figure, render_png
from mlkube.autoscale.simulator import ReplicaModel, SimResult, simulate

pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")

MODEL = ReplicaModel()


def _results() -> list[SimResult]:
    rates = traces.builtin("spike", MODEL.capacity_at_slo())
    return [
        simulate(presets.policy(name, MODEL, None), rates, MODEL, trace="spike")
        for name in ("mlkube", "hpa-cpu70")
    ]


def test_legends_sit_outside_every_panel_and_inside_the_figure() -> None:
    from matplotlib import pyplot as plt

    fig = figure(_results(), MODEL, "iris: trace spike, SLO p95 100 ms")
    try:
        fig.set_dpi(DPI)  # the PNG's geometry
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        panels = [ax.get_window_extent(renderer) for ax in fig.axes]
        assert len(panels) == 3
        for ax in fig.axes:
            legend = ax.get_legend()
            assert legend is not None
            box = legend.get_window_extent(renderer)
            # Not over any panel's data area (bounding boxes in display pixels)...
            assert not any(box.overlaps(panel) for panel in panels), (box, panels)
            # ...and not cut off by the figure's edge.
            assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)
    finally:
        plt.close(fig)


def test_render_png_is_a_png() -> None:
    assert render_png(_results(), MODEL, "spike").startswith(b"\x89PNG")
