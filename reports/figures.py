"""Plotly figures of one run, built from the frames of ``reports.analysis``.

Each figure shares the time axis (seconds since the test started) and the fault shading, so a
reader can line up an anomaly with the fault that caused it. Bars are drawn as line segments in
one trace per category (NaN separates segments): one SVG path or WebGL buffer per trace instead of
one shape per operation is what keeps a 100,000-op report responsive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.analysis import FaultWindow, LeaderSpan, TimeWindow

OUTCOME_COLOURS: dict[str, str] = {
    "ok": "#2ca02c",
    "fail": "#d62728",
    "info": "#ff7f0e",
    "pending": "#7f7f7f",
}
FAULT_COLOURS: dict[str, str] = {
    "partition": "#9467bd",
    "kill": "#8c564b",
    "pause": "#1f77b4",
    "clock": "#bcbd22",
    "netem": "#17becf",
}
COUNTEREXAMPLE_COLOUR = "#e31a1c"
# Anomaly op markers all shown up to this many; past it, per anomaly when its link is clicked.
MAX_ANOMALY_MARKERS = 200
# Overlapping-holder bands drawn per lock chart at most (the note gives the full count).
MAX_OVERLAP_BANDS = 200
# Above this many points a trace is drawn with WebGL (scattergl) instead of SVG.
WEBGL_THRESHOLD = 4_000
# Token labels are shown when at most this many holds are in view (zoom in to see them).
MAX_TOKEN_LABELS = 300
# Labels embedded per lock chart at most (every k-th hold past it; the hover always has the token).
MAX_LABELLED_HOLDS = 6_000
PLOT_CONFIG: dict[str, Any] = {"responsive": True, "displaylogo": False, "scrollZoom": True}


def _scatter(n_points: int, **kwargs: Any) -> go.Scatter | go.Scattergl:
    return go.Scattergl(**kwargs) if n_points > WEBGL_THRESHOLD else go.Scatter(**kwargs)


def _segments(start: np.ndarray, end: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, ...]:
    """x, y arrays drawing one horizontal segment per row, separated by a NaN x.

    float32 times (microsecond resolution over the first minutes, still sub-millisecond after an
    hour) and int32 levels halve the size of the embedded data against float64.
    """
    n = len(start)
    x = np.full(3 * n, np.nan, dtype=np.float32)
    y = np.zeros(3 * n, dtype=np.int32)
    x[0::3], x[1::3] = start, end
    y[0::3], y[1::3], y[2::3] = level, level, level
    return x, y


def _f32(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _repeat_rows(values: np.ndarray) -> np.ndarray:
    """Per-row data repeated for the three points (start, end, gap) of each segment."""
    return np.repeat(values, 3, axis=0)


def shade_faults(fig: go.Figure, faults: Sequence[FaultWindow]) -> None:
    """Shade each fault window across the whole figure and label it at the top."""
    shapes: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    for n, window in enumerate(faults):
        colour = FAULT_COLOURS.get(window.fault, "#8c564b")
        shapes.append(_band(window.start, window.end, colour, 0.13, layer="below"))
        note = _note(window.start, 1, window.label, colour, yanchor="bottom", xanchor="left")
        # alternate two heights so labels of neighbouring windows do not overlap
        note |= {"yshift": 13 * (n % 2), "hovertext": window.detail or window.label}
        notes.append(note)
    _add_layout_items(fig, shapes, notes)


def highlight_windows(
    fig: go.Figure, windows: Sequence[TimeWindow], *, dash: str, labelled: bool = True
) -> None:
    """Outline time windows (counterexamples solid; anomalies dotted, unlabelled: listed above)."""
    shapes: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    for window in windows:
        fill = 0.1 if labelled else 0.0  # unlabelled (anomaly) windows are outlines: they stack
        band = _band(window.start, max(window.end, window.start + 1e-3), COUNTEREXAMPLE_COLOUR, 1)
        band["fillcolor"] = f"rgba(227,26,28,{fill})"
        band["line"] = {"color": COUNTEREXAMPLE_COLOUR, "width": 2, "dash": dash}
        shapes.append(band)
        if labelled:
            note = _note(window.start, 0, window.label, COUNTEREXAMPLE_COLOUR, yanchor="bottom")
            notes.append({**note, "xanchor": "left", "bgcolor": "rgba(255,255,255,0.7)"})
    _add_layout_items(fig, shapes, notes)


def _band(x0: float, x1: float, colour: str, opacity: float, **more: Any) -> dict[str, Any]:
    """A full-height rectangle over a time span (yref paper spans every subplot)."""
    return {
        "type": "rect",
        "xref": "x",
        "yref": "paper",
        "x0": x0,
        "x1": x1,
        "y0": 0,
        "y1": 1,
        "fillcolor": colour,
        "opacity": opacity,
        "line": {"width": 0},
        **more,
    }


def _note(x: float, y: float, text: str, colour: str, **more: Any) -> dict[str, Any]:
    return {
        "x": x,
        "y": y,
        "xref": "x",
        "yref": "paper",
        "text": text,
        "showarrow": False,
        "font": {"size": 10, "color": colour},
        **more,
    }


def _add_layout_items(
    fig: go.Figure, shapes: list[dict[str, Any]], notes: list[dict[str, Any]]
) -> None:
    """Append shapes and annotations, replacing each list whole: add_shape per item is
    quadratic, and an update_layout that repeats the existing items merges them into
    themselves one by one (seconds per figure with a few hundred bands)."""
    layout = fig.layout.to_plotly_json()
    if shapes:
        fig.layout.shapes = [*layout.get("shapes", ()), *shapes]
    if notes:
        fig.layout.annotations = [*layout.get("annotations", ()), *notes]


def _base_layout(fig: go.Figure, title: str, height: int) -> None:
    fig.update_layout(
        title={"text": title, "x": 0, "font": {"size": 14}},
        height=height,
        margin={"l": 60, "r": 20, "t": 76, "b": 40},
        plot_bgcolor="white",
        legend={"orientation": "h", "y": -0.12},
        hovermode="closest",
        uirevision="keep",
    )
    fig.update_xaxes(showgrid=True, gridcolor="#eee", zeroline=False)
    fig.update_yaxes(showgrid=True, gridcolor="#eee", zeroline=False)


def timeline_figure(
    calls: pd.DataFrame,
    faults: Sequence[FaultWindow],
    counterexamples: Sequence[TimeWindow],
    anomaly_windows: Sequence[TimeWindow],
    anomaly_points: pd.DataFrame,
) -> go.Figure:
    """One row per process: a bar from invoke to completion coloured by outcome."""
    fig = go.Figure()
    n_points = 3 * len(calls)
    for (f, outcome), group in calls.groupby(["f", "outcome"], observed=True, sort=True):
        if group.empty:
            continue
        x, y = _segments(
            group["t0"].to_numpy(), group["t_end"].to_numpy(), group["process"].to_numpy()
        )
        custom = _repeat_rows(
            np.column_stack([group["inv_index"].to_numpy(), group["latency_ms"].to_numpy()])
        ).astype(np.float32)
        fig.add_trace(
            _scatter(
                n_points,
                x=x,
                y=y,
                mode="lines",
                name=f"{f} {outcome}",
                legendgroup=str(outcome),
                line={"color": OUTCOME_COLOURS[str(outcome)], "width": 6},
                customdata=custom,
                hovertemplate=(
                    f"{f} {outcome}<br>process %{{y}}<br>op %{{customdata[0]}}"
                    "<br>%{customdata[1]:.2f} ms<extra></extra>"
                ),
            )
        )
    # One marker trace per anomaly (``meta`` "anomaly-N", numbered as in the list above it).
    # With few marked ops all are shown; otherwise each appears when its link is clicked.
    show_all = len(anomaly_points) <= MAX_ANOMALY_MARKERS
    for number, points in anomaly_points.groupby("anomaly", sort=True):
        fig.add_trace(
            go.Scatter(
                x=_f32(points["time"]),
                y=points["process"].to_numpy(),
                mode="markers",
                name=f"ops of anomaly {number}",
                legendgroup="anomalies",
                visible=True if show_all else "legendonly",
                marker={
                    "symbol": "diamond",
                    "size": 10,
                    "color": "black",
                    "line": {"color": "white", "width": 1},
                },
                customdata=points["index"].to_numpy(),
                hovertemplate=f"anomaly {number}: op %{{customdata}}<br>process %{{y}}"
                "<extra></extra>",
                meta=f"anomaly-{number}",
            )
        )
    shade_faults(fig, faults)
    highlight_windows(fig, counterexamples, dash="solid")
    highlight_windows(fig, anomaly_windows, dash="dot", labelled=False)
    processes = calls["process"].nunique() if not calls.empty else 1
    _base_layout(
        fig, "Operations per process (invoke → completion)", min(220 + 16 * processes, 900)
    )
    fig.update_xaxes(title_text="seconds since start")
    fig.update_yaxes(title_text="process", autorange="reversed")
    return fig


def lock_figure(
    lock: str,
    holds: pd.DataFrame,
    accesses: pd.DataFrame,
    faults: Sequence[FaultWindow],
    anomaly_windows: Sequence[TimeWindow],
    overlaps: pd.DataFrame,
) -> go.Figure:
    """Who held ``lock`` when (token labels) above the resource's accepted/refused accesses."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.6, 0.4],
        vertical_spacing=0.06,
    )
    for certain, name, colour, dash in (
        (True, "held", "#1f77b4", "solid"),
        (False, "possibly held (acquire outcome unknown)", "#aaaaaa", "dot"),
    ):
        part = holds[holds["certain"] == certain]
        if part.empty:
            continue
        x, y = _segments(
            part["start"].to_numpy(), part["end"].to_numpy(), part["process"].to_numpy()
        )
        tokens = part["token"].astype("float64").to_numpy()
        custom = _repeat_rows(np.column_stack([part["index"].to_numpy(), tokens]))
        custom = custom.astype(np.float32)  # exact for indices and tokens below 2**24
        fig.add_trace(
            _scatter(
                len(x),
                x=x,
                y=y,
                mode="lines",
                name=name,
                line={"color": colour, "width": 8, "dash": dash},
                customdata=custom,
                hovertemplate=(
                    "process %{y}<br>token %{customdata[1]}<br>acquire op %{customdata[0]}"
                    "<extra></extra>"
                ),
            ),
            row=1,
            col=1,
        )
        if certain:
            fig.add_trace(_token_labels(part), row=1, col=1)
    for (accepted, f), part in accesses.groupby(["accepted", "f"], sort=True):
        name = f"{f} accepted" if accepted else f"{f} refused (stale token)"
        fig.add_trace(
            _scatter(
                len(accesses),
                x=_f32(part["time"]),
                y=part["token"].astype("float64").to_numpy(),
                mode="markers",
                name=name,
                legendgroup="accepted" if accepted else "refused",
                marker={
                    "color": OUTCOME_COLOURS["ok"] if accepted else OUTCOME_COLOURS["fail"],
                    "symbol": _op_symbol(str(f)) if accepted else "x",
                    "size": 5 if accepted else 11,
                },
                customdata=np.column_stack(
                    [part["process"].to_numpy(), part["index"].to_numpy()]
                ).astype(np.int32),
                hovertemplate=(
                    name + "<br>token %{y}<br>process %{customdata[0]}"
                    "<br>op %{customdata[1]}<extra></extra>"
                ),
            ),
            row=2,
            col=1,
        )
    shade_faults(fig, faults)
    highlight_windows(fig, anomaly_windows, dash="dot", labelled=False)
    _mark_overlaps(fig, overlaps)
    processes = holds["process"].nunique() if not holds.empty else 1
    title = f"Lock {lock}: holders above, resource accesses below (green accepted, red refused)"
    _base_layout(fig, title, min(380 + 14 * processes, 900))
    fig.update_yaxes(title_text="holder (label: token)", autorange="reversed", row=1, col=1)
    fig.update_yaxes(title_text="resource: token", row=2, col=1)
    fig.update_xaxes(title_text="seconds since start", row=2, col=1)
    return fig


def _mark_overlaps(fig: go.Figure, overlaps: pd.DataFrame) -> None:
    """Red bands in the holders panel where two clients both believed they held the lock."""
    shown = overlaps.head(MAX_OVERLAP_BANDS)
    shapes = [
        {
            **_band(start, max(end, start + 1e-4), OUTCOME_COLOURS["fail"], 0.35),
            "yref": "y domain",
        }
        for start, end in zip(shown["start"], shown["end"], strict=True)
    ]
    _add_layout_items(fig, shapes, [])
    if not shown.empty:
        fig.add_trace(
            go.Scatter(
                x=_f32((shown["start"] + shown["end"]) / 2),
                y=shown["second"].to_numpy(),
                mode="markers",
                name="two holders at once",
                marker={
                    "symbol": "x-thin",
                    "size": 12,
                    "color": OUTCOME_COLOURS["fail"],
                    "line": {"width": 2, "color": OUTCOME_COLOURS["fail"]},
                },
                customdata=shown["first"].to_numpy(),
                text=shown["tokens"],
                hovertemplate=(
                    "processes %{customdata} and %{y} both believed they held the lock"
                    "<br>tokens %{text}<extra></extra>"
                ),
            ),
            row=1,
            col=1,
        )


def _token_labels(holds: pd.DataFrame) -> go.Scatter:
    """The fencing token written on each hold bar.

    Shown from the start when there are at most MAX_TOKEN_LABELS holds; otherwise hidden, and
    report.js shows it once the reader zooms in to that many (trace ``meta`` marks it).
    """
    labelled = holds.iloc[:: max(1, int(np.ceil(len(holds) / MAX_LABELLED_HOLDS)))]
    return go.Scatter(
        x=_f32((labelled["start"] + labelled["end"]) / 2),
        y=labelled["process"].to_numpy(),
        mode="text",
        text=labelled["token"].astype("string").fillna("?").to_numpy(),
        textposition="top center",
        textfont={"size": 9},
        name="token labels",
        showlegend=False,
        hoverinfo="skip",
        visible=len(holds) <= MAX_TOKEN_LABELS,
        meta="token-labels",
    )


def latency_figure(
    calls: pd.DataFrame,
    percentiles: pd.DataFrame,
    rates: pd.DataFrame,
    bucket_s: float,
    faults: Sequence[FaultWindow],
) -> go.Figure:
    """Latency scatter by operation and outcome with p50/p95/p99, and throughput below."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.65, 0.35],
        vertical_spacing=0.06,
    )
    done = calls[calls["outcome"] != "pending"]
    for (f, outcome), group in done.groupby(["f", "outcome"], observed=True, sort=True):
        if group.empty:
            continue
        fig.add_trace(
            _scatter(
                len(done),
                x=_f32(group["t0"]),
                y=_f32(group["latency_ms"]),
                mode="markers",
                name=f"{f} {outcome}",
                legendgroup="latency",
                marker={
                    "size": 4 if outcome == "ok" else 7,
                    "color": OUTCOME_COLOURS[str(outcome)],
                    "opacity": 0.55 if outcome == "ok" else 0.9,
                    "symbol": _op_symbol(str(f)),
                },
                customdata=group["inv_index"].to_numpy().astype(np.int32),
                hovertemplate=(
                    f"{f} {outcome}<br>op %{{customdata}}<br>%{{y:.2f}} ms<extra></extra>"
                ),
            ),
            row=1,
            col=1,
        )
    for column, dash in (("p50", "solid"), ("p95", "dash"), ("p99", "dot")):
        if percentiles.empty:
            break
        fig.add_trace(
            go.Scatter(
                x=percentiles["time"],
                y=percentiles[column],
                mode="lines",
                name=column,
                legendgroup="percentiles",
                line={"color": "black", "width": 1.5, "dash": dash},
            ),
            row=1,
            col=1,
        )
    for outcome in ("ok", "fail", "info"):
        if rates.empty:
            break
        fig.add_trace(
            go.Scatter(
                x=rates["time"],
                y=rates[outcome],
                mode="lines",
                name=f"{outcome}/s",
                legendgroup="throughput",
                line={"color": OUTCOME_COLOURS[outcome], "width": 1.5, "shape": "hv"},
            ),
            row=2,
            col=1,
        )
    shade_faults(fig, faults)
    _base_layout(fig, f"Latency (log scale) and throughput ({bucket_s:g} s buckets)", 620)
    fig.update_yaxes(type="log", title_text="latency (ms)", row=1, col=1)
    fig.update_yaxes(title_text="completions/s", row=2, col=1)
    fig.update_xaxes(title_text="seconds since start", row=2, col=1)
    return fig


def _op_symbol(f: str) -> str:
    symbols = {"acquire": "circle", "release": "square", "res-write": "triangle-up"}
    return symbols.get(f, "circle-open")


def roles_figure(
    spans: Sequence[LeaderSpan],
    gaps: Sequence[tuple[float, float, str]],
    faults: Sequence[FaultWindow],
    nodes: Sequence[str],
) -> go.Figure:
    """Which node was leader when, labelled with the term; failover gaps annotated."""
    fig = go.Figure()
    led = [s for s in spans if s.leader is not None]
    names = sorted({*nodes, *(s.leader for s in led if s.leader)})
    x, y = _segments(
        np.array([s.start for s in led]),
        np.array([s.end for s in led]),
        np.array([names.index(s.leader) for s in led if s.leader is not None]),
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="lines",
            name="leader",
            line={"color": "#1f77b4", "width": 14},
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[(s.start + s.end) / 2 for s in led],
            y=[names.index(s.leader) for s in led if s.leader is not None],
            mode="text",
            text=[f"term {s.term}" if s.term is not None else "" for s in led],
            textposition="top center",
            showlegend=False,
            hovertemplate="%{text}<extra></extra>",
        )
    )
    shapes = [_band(start, end, "#444", 0.18) for start, end, _ in gaps]
    notes = [
        {**_note(end, 0.02, text, "#222", xanchor="left", yanchor="bottom"), "bgcolor": "white"}
        for _, end, text in gaps
    ]
    _add_layout_items(fig, shapes, notes)
    shade_faults(fig, faults)
    _base_layout(fig, "Cluster roles: leader over time (grey: no leader known)", 300)
    fig.update_yaxes(
        tickmode="array",
        tickvals=list(range(len(names))),
        ticktext=names,
        range=[-0.7, len(names) - 0.3],
        title_text="node",
    )
    fig.update_xaxes(title_text="seconds since start")
    return fig


def clock_figure(offsets: pd.DataFrame, faults: Sequence[FaultWindow]) -> go.Figure:
    """Measured clock offset of each node (ms) over time."""
    fig = go.Figure()
    for node, group in offsets.groupby("node", sort=True):
        fig.add_trace(
            go.Scatter(x=group["time"], y=group["offset_ms"], mode="lines+markers", name=str(node))
        )
    shade_faults(fig, faults)
    _base_layout(fig, "Node clock offsets (ms)", 320)
    fig.update_yaxes(title_text="offset (ms)")
    fig.update_xaxes(title_text="seconds since start")
    return fig
