"""Figures of simulator runs: a PNG (matplotlib, Agg) and a self-contained HTML page.

No files are written here: each function returns bytes or text; the CLI writes them.
matplotlib is imported lazily so the rest of mlkube works without it.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlkube.autoscale.simulator import ReplicaModel, SimResult
from mlkube.errors import MlkubeError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
STYLES = ("-", "--", ":", "-.", "-")
DPI = 110


def render_png(results: Sequence[SimResult], model: ReplicaModel, title: str) -> bytes:
    """The figure of ``results`` (``figure``) as PNG bytes."""
    fig = figure(results, model, title)  # raises MlkubeError without matplotlib
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def figure(results: Sequence[SimResult], model: ReplicaModel, title: str) -> Figure:
    """Three stacked panels: offered load vs capacity, replicas, p95 latency vs the SLO.

    Each panel's legend sits to its right, outside the plotting area: inside it covered the
    lines it names. The caller closes the figure (``pyplot.close``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MlkubeError("--plot needs matplotlib: pip install matplotlib") from exc

    fig, (load_ax, rep_ax, lat_ax) = plt.subplots(3, 1, figsize=(13, 8.5), sharex=True)
    first = results[0]
    t = [s.t for s in first.seconds]
    load_ax.plot(t, [s.rate for s in first.seconds], color="black", lw=1.2, label="offered req/s")
    for i, r in enumerate(results):
        color = COLORS[i % len(COLORS)]
        served_cap = [s.ready * model.capacity_at_slo() for s in r.seconds]
        load_ax.plot(
            t, served_cap, color=color, lw=0.9, ls="--", label=f"{r.policy}: capacity at SLO"
        )
        label = f"{r.policy} ({r.seconds_over_slo}s over SLO, {r.replica_seconds:.0f} replica-s)"
        style = STYLES[i % len(STYLES)]
        replicas = [s.replicas for s in r.seconds]
        rep_ax.step(t, replicas, where="post", color=color, ls=style, label=label)
        rep_ax.step(t, [s.ready for s in r.seconds], where="post", color=color, lw=0.6, alpha=0.6)
        lat_ax.plot(t, [min(s.p95_ms, 10 * model.slo_ms) for s in r.seconds], color=color, lw=0.9)
    lat_ax.axhline(model.slo_ms, color="gray", ls=":", label=f"SLO {model.slo_ms:.0f} ms")
    load_ax.set_ylabel("requests/s")
    rep_ax.set_ylabel("replicas (thin: ready)")
    lat_ax.set_ylabel("p95 latency, ms (capped)")
    lat_ax.set_xlabel("seconds")
    for ax in (load_ax, rep_ax, lat_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()  # counts the legends, so the panels shrink to leave them room
    return fig


def render_html(results: Sequence[SimResult], png: bytes, title: str) -> str:
    """One page: the figure inline and the summary table."""
    rows = []
    for r in results:
        cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in r.summary().values())
        rows.append(f"<tr>{cells}</tr>")
    head = "".join(f"<th>{html.escape(k)}</th>" for k in results[0].summary())
    image = base64.b64encode(png).decode("ascii")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table><tr>{head}</tr>{''.join(rows)}</table>"
        f"<p><img alt='simulation' src='data:image/png;base64,{image}'></p></body></html>"
    )
