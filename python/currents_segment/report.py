"""The self-contained HTML reconciliation report: inline CSS, charts as inline SVG, no network.

Every value that comes from data (workspace, event and file names, ids) goes through
``html.escape``: a Braze campaign or a Segment source can be named anything.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

COLOURS = {"exported": "#4e79a7", "sent": "#f28e2b", "received": "#59a14f", "missing": "#e15759"}
STATUS_STYLE = {
    "clean": ("#1b7f3b", "CLEAN"),
    "breached": ("#b26b00", "THRESHOLD BREACHED"),
    "failed": ("#b00020", "RUN FAILED"),
}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.banner{color:#fff;padding:16px 20px;border-radius:8px;margin-bottom:16px}
.banner .status{font-size:24px;font-weight:700;letter-spacing:.5px}
.banner ul{margin:8px 0 0 18px;padding:0}
.meta{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 16px;margin-bottom:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:120px}
.card .n{font-size:20px;font-weight:700}.card .l{font-size:12px;color:#555}
.card.bad .n{color:#b00020}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px;margin:6px 0}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#fdecea}.ok{color:#1b7f3b;font-weight:600}.fail{color:#b00020;font-weight:600}
details{background:#fff;border:1px solid #ddd;border-radius:6px;margin:4px 0;padding:4px 8px}
summary{cursor:pointer}code{font-size:12px}.muted{color:#666;font-size:12px}
svg{background:#fff;border:1px solid #ddd;border-radius:8px;margin:6px 0}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4%}" if value < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return esc(value)


def _nice_max(value: float) -> float:
    if value <= 4:
        return 4.0  # whole-number ticks on small charts
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * exp:
            return m * exp
    return 10 * exp


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    width: int = 1100,
    height: int = 280,
) -> str:
    """Grouped bars: one group per category, one bar per series (name, colour, values)."""
    left, right, top, bottom = 70, 20, 36, 70
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max((v for _, _, vals in series for v in vals), default=0))
    n = max(len(categories), 1)
    group_w = plot_w / n
    bar_w = max(group_w * 0.8 / max(len(series), 1), 1)
    parts = [
        f'<svg class="chart" role="img" aria-label="{esc(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<text x="{left}" y="20" font-size="14" font-weight="600">{esc(title)}</text>',
    ]
    for i in range(5):
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{value:,.0f}</text>'
        )
    for gi, category in enumerate(categories):
        x0 = left + gi * group_w + group_w * 0.1
        for si, (name, colour, values) in enumerate(series):
            v = values[gi] if gi < len(values) else 0
            h = plot_h * (v / peak) if peak else 0
            x = x0 + si * bar_w
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{esc(category)} {esc(name)}: {v:,.0f}</title></rect>'
            )
        if n <= 40 or gi % math.ceil(n / 40) == 0:
            lx = left + gi * group_w + group_w / 2
            parts.append(
                f'<text x="{lx:.1f}" y="{top + plot_h + 14}" font-size="11" text-anchor="end" '
                f'transform="rotate(-35 {lx:.1f} {top + plot_h + 14})">{esc(category)}</text>'
            )
    for si, (name, colour, _) in enumerate(series):
        lx = width - right - 120 * (len(series) - si)
        parts.append(f'<rect x="{lx}" y="10" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 16}" y="20" font-size="12">{esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    shaded: Iterable[int] = (),
    width: int = 1100,
    height: int = 220,
) -> str:
    """Lines over hours; ``shaded`` marks indexes (outage hours) with a red band."""
    left, right, top, bottom = 70, 20, 36, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max((v for _, _, vals in series for v in vals), default=0))
    n = max(len(labels), 1)
    step = plot_w / max(n - 1, 1)
    parts = [
        f'<svg class="chart" role="img" aria-label="{esc(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<text x="{left}" y="20" font-size="14" font-weight="600">{esc(title)}</text>',
    ]
    for i in shaded:
        x = left + i * step - step / 2
        parts.append(
            f'<rect class="outage" x="{max(x, left):.1f}" y="{top}" width="{max(step, 2):.1f}" '
            f'height="{plot_h}" fill="#e15759" opacity="0.18"/>'
        )
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{peak * i / 4:,.0f}</text>'
        )
    for name, colour, values in series:
        points = " ".join(
            f"{left + i * step:.1f},{top + plot_h - plot_h * (v / peak):.1f}"
            for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline class="line" fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
            f"<title>{esc(name)}</title></polyline>"
        )
        if n <= 48:  # markers: a window of one hour has no line to draw, only points
            parts.extend(
                f'<circle class="point" cx="{left + i * step:.1f}" '
                f'cy="{top + plot_h - plot_h * (v / peak):.1f}" r="3" fill="{colour}">'
                f"<title>{esc(name)} {esc(labels[i]) if i < len(labels) else ''}: {_num(v)}</title>"
                "</circle>"
                for i, v in enumerate(values)
            )
    for i, label in enumerate(labels):
        if n <= 12 or i % math.ceil(n / 12) == 0:
            x = left + i * step
            # The last label ends at the plot's edge instead of running past it.
            anchor = "end" if n > 1 and i == n - 1 else "middle"
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 16}" font-size="11" text-anchor="{anchor}">{esc(label)}</text>'
            )
    for si, (name, colour, _) in enumerate(series):
        lx = width - right - 130 * (len(series) - si)
        parts.append(f'<rect x="{lx}" y="10" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 16}" y="20" font-size="12">{esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], bad: Any = None) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cls = ' class="bad"' if bad and bad(r) else ""
        cells = "".join(
            f'<td class="num">{_num(r.get(c))}</td>'
            if isinstance(r.get(c), int | float) and not isinstance(r.get(c), bool)
            else f"<td>{esc(', '.join(map(str, r[c])) if isinstance(r.get(c), list) else r.get(c))}</td>"
            for c in columns
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _charts(document: dict[str, Any]) -> str:
    audit = document.get("mode") == "audit"
    by_ws: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in document.get("daily", []):
        by_ws[row["segment_workspace"]].append(row)
    out = []
    for ws, rows in sorted(by_ws.items()):
        if not any(r["exported"] or r["received"] or r["sent"] for r in rows):
            continue  # e.g. only unsupported types, which are never sent
        days = [str(r["period_day"]) for r in rows]
        series = [("exported", COLOURS["exported"], [r["exported"] for r in rows])]
        if not audit:
            series.append(("sent", COLOURS["sent"], [r["sent"] for r in rows]))
        series.append(("received", COLOURS["received"], [r["received_distinct"] for r in rows]))
        series.append(("missing", COLOURS["missing"], [r["missing"] for r in rows]))
        out.append(bar_chart(f"Segment workspace {ws}: per day", days, series))
    return "".join(out) or '<p class="muted">no data</p>'


def _hourly_charts(document: dict[str, Any], hourly: Sequence[dict[str, Any]]) -> str:
    outage_hours = defaultdict(set)
    for o in document.get("outages", []):
        outage_hours[(o["segment_workspace"], o["segment_source"])].add(str(o["outage_start"]))
    by_source: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in hourly:
        by_source[(row["segment_workspace"], row["segment_source"])].append(row)
    out = []
    windows = document.get("outages", [])
    for (ws, src), rows in sorted(by_source.items()):
        if not any(r["sendable"] for r in rows):
            continue
        labels = [str(r["period_hour"])[5:16].replace("T", " ") for r in rows]
        shaded = [
            i for i, r in enumerate(rows)
            if any(
                w["segment_workspace"] == ws and w["segment_source"] == src
                and str(w["outage_start"]) <= str(r["period_hour"]) < str(w["outage_end"])
                for w in windows
            )
        ]  # fmt: skip
        series = [
            ("expected", COLOURS["exported"], [r["sendable"] for r in rows]),
            ("arrived", COLOURS["received"], [r["sendable"] - r["missing"] for r in rows]),
        ]
        out.append(line_chart(f"{ws} / {src}: per hour (outages shaded)", labels, series, shaded))
    return "".join(out)


def _gap_drilldown(gap_rows: Sequence[dict[str, Any]], counts: dict[str, int]) -> str:
    if not gap_rows:
        return '<p class="muted">no missing, unexpected or duplicated messages</p>'
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in gap_rows:
        key = (
            r["gap_kind"],
            str(r["segment_workspace"]),
            str(r["segment_source"]),
            str(r["event"]),
        )
        groups[key].append(r)
    out = []
    for kind in ("missing", "unexpected", "duplicate"):
        shown = sum(len(v) for k, v in groups.items() if k[0] == kind)
        total = counts.get(kind, 0)
        if not total:
            continue
        note = "" if shown >= total else f" (first {shown:,} here; all {total:,} in gaps.csv)"
        out.append(f"<h3>{esc(kind)}: {total:,}{esc(note)}</h3>")
        for key, rows in sorted(groups.items()):
            if key[0] != kind:
                continue
            cols = ["message_id", "currents_id", "source_file", "event_timestamp", "missing_reason",
                    "ledger_status", "received_copies", "extra_copies"]  # fmt: skip
            out.append(
                f'<details class="gap"><summary>{esc(key[1])} / {esc(key[2])} / {esc(key[3])}: '
                f"{len(rows):,} message(s)</summary>{table(rows, cols)}</details>"
            )
    return "".join(out)


def render_html(
    document: dict[str, Any],
    gap_rows: Sequence[dict[str, Any]],
    hourly: Sequence[dict[str, Any]] | None = None,
) -> str:
    colour, label = STATUS_STYLE.get(document.get("status", "failed"), STATUS_STYLE["failed"])
    t = document.get("totals", {})
    reasons = "".join(f"<li>{esc(r)}</li>" for r in document.get("reasons", []))
    window = document.get("window") or {}
    cards = []
    for key, name in (
        ("exported", "exported"), ("sendable", "sendable"), ("sent", "sent (acknowledged)"),
        ("received", "received"), ("received_distinct", "received distinct"),
        ("missing", "missing"), ("duplicates", "duplicates"), ("unexpected", "unexpected"),
        ("loss_rate", "loss rate"), ("duplicate_rate", "duplicate rate"),
    ):  # fmt: skip
        value = t.get(key)
        bad = (
            key in ("missing", "duplicates", "unexpected", "loss_rate", "duplicate_rate") and value
        )
        cards.append(
            f'<div class="card{" bad" if bad else ""}"><div class="n">{_num(value)}</div>'
            f'<div class="l">{esc(name)}</div></div>'
        )
    skipped = (
        f"skipped: no external id {_num(t.get('skipped_no_external_id'))}, test events "
        f"{_num(t.get('skipped_test_event'))}, oversize {_num(t.get('skipped_oversize'))}, "
        f"not routed to this destination {_num(t.get('skipped_not_routed'))}, "
        f"unsupported types {_num(t.get('skipped_unsupported'))} (skipped is not lost)"
    )
    count_cols = ["exported", "sendable", "sent", "received", "received_distinct", "missing",
                  "duplicates", "unexpected", "loss_rate", "duplicate_rate"]  # fmt: skip
    if document.get("mode") == "audit":
        count_cols.remove("sent")
    breaches = document.get("breaches", [])
    breach_rows = [
        {"scope": ", ".join(f"{k}={v}" for k, v in b["scope"].items()), "metric": b["metric"],
         "value": b["value"], "threshold": b["threshold"]}
        for b in breaches
    ]  # fmt: skip
    expectations = [
        {**e, "outcome": "passed" if e["success"] else "FAILED"}
        for e in document.get("expectations", [])
    ]
    sections = [
        f'<div class="banner" style="background:{colour}"><div class="status">{esc(label)}</div>'
        f"<ul>{reasons}</ul></div>",
        '<div class="meta">'
        f"<div><b>Mode:</b> {esc(document.get('mode'))}: {esc(document.get('mode_description'))}</div>"
        f"<div><b>Time basis:</b> {esc(document.get('time_basis'))}: "
        f"{esc(document.get('time_basis_description'))}</div>"
        f"<div><b>Window:</b> {esc(window.get('first_hour'))} to {esc(window.get('last_hour'))} "
        f"&middot; <b>as of</b> {esc(document.get('as_of'))} &middot; Braze deletion window "
        f"{_num(document.get('retention_hours'))} h</div>"
        f'<div class="muted">generated {esc(document.get("generated_at"))} &middot; schema '
        f"{esc(document.get('schema_version'))}</div></div>",
        f'<div class="cards">{"".join(cards)}</div><p class="muted">{esc(skipped)}</p>',
        "<h2>Thresholds breached</h2>"
        + table(breach_rows, ["scope", "metric", "value", "threshold"]),
        "<h2>Exported, sent and received per day</h2>" + _charts(document),
    ]
    if hourly:
        sections.append("<h2>Per hour and source</h2>" + _hourly_charts(document, hourly))
    sections += [
        "<h2>By Segment workspace and source</h2>"
        + table(
            document.get("by_destination", []),
            ["segment_workspace", "segment_source", *count_cols],
            bad=lambda r: r["missing"] or r["duplicates"] or r["unexpected"],
        ),  # fmt: skip
        "<h2>By Segment workspace and event</h2>"
        + table(
            document.get("by_workspace_event", []),
            ["segment_workspace", "event", *count_cols],
            bad=lambda r: r["missing"] or r["duplicates"] or r["unexpected"],
        ),  # fmt: skip
        "<h2>Outages</h2>"
        + table(
            document.get("outages", []),
            [
                "segment_workspace",
                "segment_source",
                "outage_start",
                "outage_end",
                "hours",
                "sendable",
                "arrived",
                "missing",
                "first_deletion_at",
                "hours_left",
                "recovery_status",
            ],
            bad=lambda r: True,
        ),  # fmt: skip
        "<h2>Across workspaces</h2>"
        + table(
            document.get("cross_workspace", []),
            [
                "finding",
                "segment_workspaces",
                "segment_sources",
                "app_group_id",
                "event",
                "connector_kind",
                "connectors",
                "same_message_id",
                "events",
                "example_ids",
            ],
            bad=lambda r: r["finding"] != "same_id_in_many_workspaces" or r["same_message_id"],
        ),  # fmt: skip
        "<h2>Public API volumes (counts, no ids)</h2>"
        + table(
            document.get("volumes", []),
            [
                "segment_workspace",
                "segment_source",
                "event",
                "api_events",
                "sendable",
                "sent",
                "held_events",
                "api_minus_sendable",
                "api_first_period",
                "api_last_period",
            ],
            bad=lambda r: r["api_minus_sendable"] != 0,
        ),  # fmt: skip
        "<h2>Gaps and duplicates (drill down to ids)</h2>"
        + _gap_drilldown(gap_rows, (document.get("gaps") or {}).get("counts", {})),
        "<h2>Great Expectations gate</h2>"
        + table(
            expectations,
            ["frame", "expectation", "column", "outcome", "unexpected_count", "examples"],
            bad=lambda r: not r["success"],
        ),  # fmt: skip
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Currents to Segment reconciliation</title>"
        f"<style>{CSS}</style></head><body><main>"
        "<h1>Braze Currents &rarr; Segment reconciliation</h1>"
        + "".join(sections)
        + "</main></body></html>"
    )
