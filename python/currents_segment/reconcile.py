"""``currents-segment reconcile``: compare exported, sent and received; write the reports.

Steps: snapshot the send ledger into the warehouse, build the ``rpt_`` models with dbt, read
them, gate the result with Great Expectations, apply the thresholds, write JSON (schema below),
CSV of the gap rows and a self-contained HTML report, and alert a webhook when not clean.

Exit codes: 0 clean, 1 a threshold breached, 2 the run failed (dbt, the gate, bad settings).
The JSON document is described in ``docs/reconcile.md`` (``schema_version`` 1; fields are only
ever added).
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from currents_segment import settings

SCHEMA_VERSION = 1
EXIT_CLEAN = 0
EXIT_BREACHED = 1
EXIT_FAILED = 2
WEBHOOK_ENV = "CURRENTS_SEGMENT_ALERT_WEBHOOK"
DEFAULT_THRESHOLDS = Path(__file__).parent / "defaults" / "thresholds.yml"
# dbt selection: the received/ledger staging models and the reports.
DBT_SELECT = "path:models/staging/segment path:models/reports"
REPORT_SCHEMA = "reports"
GAP_ROWS_IN_HTML = 2000  # per gap kind; the CSV always has every row

COUNT_COLUMNS = (
    "exported",
    "skipped_no_external_id",
    "skipped_test_event",
    "skipped_oversize",
    "skipped_not_routed",
    "skipped_unsupported",
    "sendable",
    "sent",
    "received",
    "received_distinct",
    "missing",
    "missing_after_ack",
    "missing_not_sent",
    "missing_unrouted",
    "unexpected",
    "duplicates",
)
MODE_DESCRIPTIONS = {
    "audit": (
        "Auditing Braze's own Segment connector: no send ledger, so exported (Currents, "
        "de-duplicated) is compared with what Segment holds; received id = Currents id."
    ),
    "push": (
        "Checking this toolkit's own pushes: exported (Currents) versus sent (ledger "
        "acknowledged) versus what Segment holds."
    ),
}
TIME_BASIS_DESCRIPTIONS = {
    "event_time": "event time (Currents `time`)",
    "date_hour": "the hour Braze queued the events (Currents `date=` folder)",
}
UNROUTED = "(unrouted)"


class ReconcileError(RuntimeError):
    """The reconciliation could not run; the message says which setting or step failed."""


# ---------------------------------------------------------------------------------------------
# Thresholds


@dataclass(frozen=True)
class Limits:
    max_loss_rate: float = 0.0
    max_duplicate_rate: float = 0.0
    max_unexpected: int = 0
    outages_breach: bool = True
    cross_workspace_breach: bool = True


@dataclass
class Thresholds:
    defaults: Limits = field(default_factory=Limits)
    rules: list[dict[str, Any]] = field(default_factory=list)
    origin: str = str(DEFAULT_THRESHOLDS)

    def limits_for(self, segment_workspace: str, event: str) -> Limits:
        values = dict(self.defaults.__dict__)
        for rule in self.rules:
            if fnmatch.fnmatchcase(segment_workspace, rule.get("segment_workspace", "*")) and (
                fnmatch.fnmatchcase(event, rule.get("event", "*"))
            ):
                values.update({k: v for k, v in rule.items() if k in values})
        return Limits(**values)


_LIMIT_TYPES = {
    "max_loss_rate": float,
    "max_duplicate_rate": float,
    "max_unexpected": int,
    "outages_breach": bool,
    "cross_workspace_breach": bool,
}


def _check_limits(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ReconcileError(f"{where}: expected a mapping")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("segment_workspace", "event"):
            if not isinstance(value, str):
                raise ReconcileError(f"{where}.{key}: expected a pattern string")
            out[key] = value
            continue
        if key not in _LIMIT_TYPES:
            raise ReconcileError(f"{where}.{key}: unknown setting (one of {sorted(_LIMIT_TYPES)})")
        kind = _LIMIT_TYPES[key]
        if kind is bool:
            if not isinstance(value, bool):
                raise ReconcileError(f"{where}.{key}: expected true or false, not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ReconcileError(f"{where}.{key}: expected a non-negative number, not {value!r}")
        out[key] = kind(value)
    return out


def load_thresholds(path: Path | None = None) -> Thresholds:
    import yaml

    path = Path(path or DEFAULT_THRESHOLDS)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ReconcileError(f"{path}: cannot read thresholds: {exc}") from exc
    if not isinstance(raw, dict) or set(raw) - {"defaults", "rules"}:
        raise ReconcileError(f"{path}: expected the keys 'defaults' and 'rules' only")
    defaults = _check_limits(raw.get("defaults") or {}, f"{path}: defaults")
    defaults = {k: v for k, v in defaults.items() if k in _LIMIT_TYPES}
    rules_raw = raw.get("rules") or []
    if not isinstance(rules_raw, list):
        raise ReconcileError(f"{path}: rules must be a list")
    rules = [_check_limits(r, f"{path}: rules[{i}]") for i, r in enumerate(rules_raw)]
    return Thresholds(Limits(**defaults), rules, str(path))


# ---------------------------------------------------------------------------------------------
# Running the models and reading them


@dataclass
class Options:
    mode: str = "auto"  # auto | audit | push
    time_basis: str = "event_time"  # event_time | date_hour
    retention_hours: float = 48.0
    outage_ratio: float = 0.1
    as_of: datetime | None = None
    thresholds: Path | None = None
    out_dir: Path | None = None
    build: bool = True
    snapshot_ledger: bool = True
    ledger_path: Path | None = None
    db_path: Path | None = None
    gate: bool = True
    alert: bool = True

    def dbt_vars(self) -> dict[str, object]:
        if self.mode not in ("auto", "audit", "push"):
            raise ReconcileError(f"mode must be auto, audit or push, not {self.mode!r}")
        if self.time_basis not in TIME_BASIS_DESCRIPTIONS:
            raise ReconcileError(
                f"time basis must be event_time or date_hour, not {self.time_basis!r}"
            )
        if self.retention_hours < 0 or not 0 <= self.outage_ratio <= 1:
            raise ReconcileError("retention hours must be >= 0 and the outage ratio in [0, 1]")
        out: dict[str, object] = {
            "reconcile_mode": self.mode,
            "reconcile_time_basis": self.time_basis,
            "braze_retention_hours": self.retention_hours,
            "reconcile_outage_ratio": self.outage_ratio,
        }
        if self.as_of:
            out["reconcile_as_of"] = _naive_utc(self.as_of).isoformat(sep=" ")
        return out


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def build_models(options: Options) -> None:
    """Snapshot the ledger, then dbt-build the rpt_ models; raises ReconcileError on failure."""
    from currents_segment import receive, transform

    db = Path(options.db_path or settings.warehouse_path())
    con = receive.connect_warehouse(db)
    try:
        if options.snapshot_ledger:
            receive.snapshot_ledger(con, options.ledger_path)
    finally:
        con.close()
    if not options.build:
        return
    result = transform.build(select=DBT_SELECT, vars=options.dbt_vars(), db_path=db, quiet=True)
    if result.exit_code != 0:
        problems = [f"{n.unique_id}: {n.message.splitlines()[0] if n.message else n.status}"
                    for n in result.failing_nodes if n.status != "warn"]  # fmt: skip
        if result.exception:
            problems.append(result.exception)
        raise ReconcileError("dbt build of the reports failed: " + "; ".join(problems or ["?"]))


def _records(con: Any, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _rate(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 8) if denominator else 0.0


def _with_rates(row: dict[str, Any]) -> dict[str, Any]:
    row["loss_rate"] = _rate(row["missing"], row["sendable"])
    row["duplicate_rate"] = _rate(row["duplicates"], row["received_distinct"])
    return row


def _sums(columns: tuple[str, ...] = COUNT_COLUMNS) -> str:
    return ", ".join(f"cast(coalesce(sum({c}), 0) as bigint) as {c}" for c in columns)


def read_results(con: Any) -> dict[str, Any]:
    """Everything the reports need from the rpt_ tables (JSON-ready values)."""
    r = REPORT_SCHEMA
    settings_row = _records(con, f"select * from {r}.rpt_reconcile_settings")[0]
    totals = _with_rates(_records(con, f"select {_sums()} from {r}.rpt_reconcile_hourly")[0])
    window = _records(
        con,
        f"select min(period_hour) as first_hour, max(period_hour) as last_hour "
        f"from {r}.rpt_reconcile_hourly",
    )[0]
    by_destination = [
        _with_rates(x)
        for x in _records(
            con,
            f"select coalesce(segment_workspace, '{UNROUTED}') as segment_workspace, "
            f"coalesce(segment_source, '{UNROUTED}') as segment_source, {_sums()} "
            f"from {r}.rpt_reconcile_hourly group by all order by 1, 2",
        )
    ]
    by_workspace_event = [
        _with_rates(x)
        for x in _records(
            con,
            f"select coalesce(segment_workspace, '{UNROUTED}') as segment_workspace, "
            f"coalesce(event, currents_event_type, '(unknown)') as event, {_sums()} "
            f"from {r}.rpt_reconcile_hourly group by all order by 1, 2",
        )
    ]
    daily = _records(
        con,
        f"select period_day, coalesce(segment_workspace, '{UNROUTED}') as segment_workspace, "
        f"{_sums()} from {r}.rpt_reconcile_daily group by all order by 2, 1",
    )
    hourly_by_source = _records(
        con,
        f"select period_hour, coalesce(segment_workspace, '{UNROUTED}') as segment_workspace, "
        f"coalesce(segment_source, '{UNROUTED}') as segment_source, {_sums()} "
        f"from {r}.rpt_reconcile_hourly group by all order by 2, 3, 1",
    )
    outages = _records(
        con, f"select * from {r}.rpt_reconcile_outages order by segment_workspace, outage_start"
    )
    cross = _records(
        con,
        f"select * from {r}.rpt_reconcile_cross_workspace order by finding, segment_workspaces",
    )
    volumes = _records(
        con,
        f"select * from {r}.rpt_reconcile_volumes order by segment_workspace, segment_source, event",
    )
    gap_counts = dict(
        con.execute(f"select gap_kind, count(*) from {r}.rpt_reconcile_gaps group by 1").fetchall()
    )
    return {
        "settings": settings_row,
        "totals": totals,
        "window": window,
        "by_destination": by_destination,
        "by_workspace_event": by_workspace_event,
        "daily": daily,
        "hourly_by_source": hourly_by_source,
        "outages": outages,
        "cross_workspace": cross,
        "volumes": volumes,
        "gap_counts": {k: gap_counts.get(k, 0) for k in ("missing", "unexpected", "duplicate")},
    }


def read_gap_rows(con: Any, limit_per_kind: int = GAP_ROWS_IN_HTML) -> list[dict[str, Any]]:
    return _records(
        con,
        f"select * from {REPORT_SCHEMA}.rpt_reconcile_gaps "
        f"qualify row_number() over (partition by gap_kind "
        f"order by segment_workspace, segment_source, event, message_id) <= {int(limit_per_kind)} "
        f"order by gap_kind, segment_workspace, segment_source, event, message_id",
    )


def write_gaps_csv(con: Any, path: Path) -> int:
    from currents_segment import duck

    path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(
        f"copy (select * exclude (period_hour), period_hour "
        f"from {REPORT_SCHEMA}.rpt_reconcile_gaps "
        f"order by gap_kind, segment_workspace, segment_source, event, message_id) "
        f"to {duck.sql_text(str(path))} (header, delimiter ',')"
    )
    return con.execute(f"select count(*) from {REPORT_SCHEMA}.rpt_reconcile_gaps").fetchone()[0]


# ---------------------------------------------------------------------------------------------
# The gate and the thresholds


def gate_expectations(data: dict[str, Any], con: Any) -> list[dict[str, Any]]:
    """Great Expectations on the reconciliation result; one entry per expectation."""
    import pandas as pd

    from currents_segment.gate import ExpectationSpec, validate_frame

    hourly = con.execute(f"select * from {REPORT_SCHEMA}.rpt_reconcile_hourly").df()
    if hourly.empty:
        hourly = pd.DataFrame([{c: 0 for c in COUNT_COLUMNS}])
    hourly["received_balance"] = (
        hourly["received"] - hourly["received_distinct"] - hourly["duplicates"]
    )
    hourly["sendable_minus_missing"] = hourly["sendable"] - hourly["missing"]
    hourly["missing_minus_parts"] = hourly["missing"] - (
        hourly["missing_after_ack"] + hourly["missing_not_sent"] + hourly["missing_unrouted"]
    )
    counts = [c for c in COUNT_COLUMNS if c in hourly]
    specs = [
        ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": c, "min_value": 0})
        for c in counts
    ]
    specs += [
        ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "received_balance", "value_set": [0]}),
        ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": "sendable_minus_missing", "min_value": 0}),
        ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": "missing_minus_parts", "min_value": 0}),
    ]  # fmt: skip
    totals = data["totals"]
    gaps = data["gap_counts"]
    checks = pd.DataFrame(
        [
            {
                "mode": data["settings"]["mode"],
                "time_basis": data["settings"]["time_basis"],
                "missing_rows_minus_missing": gaps["missing"] - totals["missing"],
                "unexpected_rows_minus_unexpected": gaps["unexpected"] - totals["unexpected"],
                "sent_minus_after_ack": totals["sent"] - totals["missing_after_ack"],
            }
        ]
    )
    check_specs = [
        ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "mode", "value_set": ["audit", "push"]}),
        ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "time_basis", "value_set": list(TIME_BASIS_DESCRIPTIONS)}),
        ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "missing_rows_minus_missing", "value_set": [0]}),
        ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "unexpected_rows_minus_unexpected", "value_set": [0]}),
        ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": "sent_minus_after_ack", "min_value": 0}),
    ]  # fmt: skip
    gap_rows = con.execute(
        f"select gap_kind, coalesce(message_id, currents_id) as gap_id "
        f"from {REPORT_SCHEMA}.rpt_reconcile_gaps"
    ).df()
    gap_specs = [
        ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "gap_id"}),
        ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "gap_kind", "value_set": ["missing", "unexpected", "duplicate"]}),
    ]  # fmt: skip
    outcomes: list[dict[str, Any]] = []
    for frame_name, frame, frame_specs in (
        ("rpt_reconcile_hourly", hourly, specs),
        ("totals", checks, check_specs),
        ("rpt_reconcile_gaps", gap_rows, gap_specs),
    ):
        if frame.empty:
            frame = pd.DataFrame([{c: None for c in frame.columns}])
            frame_specs = [s for s in frame_specs if s.name != "ExpectColumnValuesToNotBeNull"]
        result = validate_frame(frame, frame_specs, suite_name=f"reconcile_{frame_name}")
        for item in result.result.get("results", []):
            config = item.get("expectation_config", {})
            details = item.get("result", {}) or {}
            kwargs = config.get("kwargs", {})
            outcomes.append(
                {
                    "frame": frame_name,
                    "expectation": config.get("type"),
                    "column": kwargs.get("column"),
                    "success": bool(item.get("success")),
                    "unexpected_count": details.get("unexpected_count"),
                    "examples": [_jsonable(x) for x in (details.get("partial_unexpected_list") or [])[:5]],
                }
            )  # fmt: skip
    return outcomes


def evaluate(data: dict[str, Any], thresholds: Thresholds) -> list[dict[str, Any]]:
    """Every threshold the result breaches (empty = clean)."""
    breaches: list[dict[str, Any]] = []
    for row in data["by_workspace_event"]:
        limits = thresholds.limits_for(row["segment_workspace"], row["event"])
        scope = {"segment_workspace": row["segment_workspace"], "event": row["event"]}
        for metric, value, limit in (
            ("loss_rate", row["loss_rate"], limits.max_loss_rate),
            ("duplicate_rate", row["duplicate_rate"], limits.max_duplicate_rate),
            ("unexpected", row["unexpected"], limits.max_unexpected),
        ):
            if value > limit:
                breaches.append(
                    {"scope": scope, "metric": metric, "value": value, "threshold": limit}
                )
    for o in data["outages"]:
        if thresholds.limits_for(o["segment_workspace"], "*").outages_breach:
            breaches.append(
                {
                    "scope": {"segment_workspace": o["segment_workspace"], "segment_source": o["segment_source"]},
                    "metric": "outage",
                    "value": f"{o['hours']} h from {o['outage_start']:%Y-%m-%d %H:%M}, {o['missing']} missing",
                    "threshold": None,
                }
            )  # fmt: skip
    for f in data["cross_workspace"]:
        risky = f["finding"] != "same_id_in_many_workspaces" or f["same_message_id"]
        workspace = str(f["segment_workspaces"]).split(", ")[0]
        if risky and thresholds.limits_for(workspace, f["event"] or "*").cross_workspace_breach:
            breaches.append(
                {
                    "scope": {"segment_workspace": f["segment_workspaces"], "segment_source": f["segment_sources"]},
                    "metric": f["finding"],
                    "value": f["events"],
                    "threshold": None,
                }
            )  # fmt: skip
    return breaches


def _reasons(data: dict[str, Any], breaches: list[dict[str, Any]]) -> list[str]:
    t = data["totals"]
    out = []
    if t["missing"]:
        out.append(f"{t['missing']} message(s) missing (loss rate {t['loss_rate']:.4%})")
    if t["duplicates"]:
        out.append(f"{t['duplicates']} duplicate copies (duplicate rate {t['duplicate_rate']:.4%})")
    if t["unexpected"]:
        out.append(f"{t['unexpected']} unexpected message(s) received")
    if data["outages"]:
        out.append(f"{len(data['outages'])} outage window(s)")
    risky = [
        f for f in data["cross_workspace"]
        if f["finding"] != "same_id_in_many_workspaces" or f["same_message_id"]
    ]  # fmt: skip
    if risky:
        out.append(f"{len(risky)} cross-workspace finding(s)")
    if breaches:
        out.append(f"{len(breaches)} threshold(s) breached")
    return out


# ---------------------------------------------------------------------------------------------
# Output


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


@dataclass
class ReconcileResult:
    exit_code: int
    document: dict[str, Any]
    files: dict[str, Path]

    @property
    def status(self) -> str:
        return str(self.document["status"])


def build_document(
    data: dict[str, Any],
    expectations: list[dict[str, Any]],
    breaches: list[dict[str, Any]],
    thresholds: Thresholds,
    gap_rows_total: int,
    error: str | None = None,
) -> dict[str, Any]:
    gate_ok = all(e["success"] for e in expectations)
    if error or not gate_ok:
        status, exit_code = "failed", EXIT_FAILED
    elif breaches:
        status, exit_code = "breached", EXIT_BREACHED
    else:
        status, exit_code = "clean", EXIT_CLEAN
    reasons = _reasons(data, breaches) if data else []
    if not gate_ok:
        reasons.insert(0, "the Great Expectations gate failed: the result is not consistent")
    if error:
        reasons.insert(0, error)
    s = data.get("settings", {})
    mode = s.get("mode")
    totals = dict(data.get("totals", {}))
    if mode == "audit":
        totals["sent"] = None  # nothing is sent in audit mode: say so, not 0
    return _jsonable(
        {
            "schema_version": SCHEMA_VERSION,
            "generated_at": datetime.now(UTC).replace(tzinfo=None),
            "status": status,
            "exit_code": exit_code,
            "clean": status == "clean",
            "reasons": reasons or ["no gaps, duplicates, outages or cross-workspace findings"],
            "mode": mode,
            "mode_description": MODE_DESCRIPTIONS.get(mode or "", ""),
            "time_basis": s.get("time_basis"),
            "time_basis_description": TIME_BASIS_DESCRIPTIONS.get(s.get("time_basis") or "", ""),
            "as_of": s.get("as_of"),
            "retention_hours": s.get("retention_hours"),
            "outage_ratio": s.get("outage_ratio"),
            "window": data.get("window", {}),
            "totals": totals,
            "by_destination": data.get("by_destination", []),
            "by_workspace_event": data.get("by_workspace_event", []),
            "daily": data.get("daily", []),
            "outages": data.get("outages", []),
            "cross_workspace": data.get("cross_workspace", []),
            "volumes": data.get("volumes", []),
            "gaps": {"counts": data.get("gap_counts", {}), "rows": gap_rows_total},
            "expectations": expectations,
            "gate_passed": gate_ok,
            "thresholds": {
                "file": thresholds.origin,
                "defaults": thresholds.defaults.__dict__,
                "rules": thresholds.rules,
            },  # fmt: skip
            "breaches": breaches,
        }
    )


def send_alert(
    document: dict[str, Any], url: str, report_path: Path | None = None
) -> dict[str, Any]:
    """POST a Slack-compatible message; returns what happened (never the URL: it is a secret)."""
    import requests

    icon = {"breached": ":warning:", "failed": ":x:"}.get(document["status"], ":white_check_mark:")
    t = document["totals"]
    headline = f"{icon} Currents -> Segment reconciliation: {document['status'].upper()}"
    lines = [f"- {r}" for r in document["reasons"][:10]]
    counts = (
        f"exported {t.get('exported')}, sent {t.get('sent')}, received {t.get('received')}, "
        f"missing {t.get('missing')}, duplicates {t.get('duplicates')}, "
        f"unexpected {t.get('unexpected')}"
    )
    text = "\n".join(
        [
            headline,
            f"mode: {document['mode']}, time basis: {document['time_basis']}",
            counts,
            *lines,
        ]
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines) or "-"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": counts}]},
    ]  # fmt: skip
    if report_path:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"report: {report_path}"}]}
        )
    try:
        resp = requests.post(url, json={"text": text, "blocks": blocks}, timeout=10)
    except requests.RequestException as exc:
        return {"sent": False, "error": type(exc).__name__}
    return {"sent": 200 <= resp.status_code < 300, "http_status": resp.status_code}


def reconcile(options: Options | None = None) -> ReconcileResult:
    """Run the whole reconciliation; never raises for a failed run (exit code 2 instead)."""
    from currents_segment import duck, report

    options = options or Options()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(options.out_dir or settings.reports_dir() / f"reconcile-{stamp}")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out_dir / "reconcile.json",
        "html": out_dir / "reconcile.html",
        "csv": out_dir / "gaps.csv",
    }
    data: dict[str, Any] = {}
    expectations: list[dict[str, Any]] = []
    breaches: list[dict[str, Any]] = []
    gap_rows: list[dict[str, Any]] = []
    gap_total = 0
    error: str | None = None
    thresholds = Thresholds()
    try:
        thresholds = load_thresholds(options.thresholds)
        options.dbt_vars()  # validate before any work
        build_models(options)
        db = Path(options.db_path or settings.warehouse_path())
        con = duck.connect(db, read_only=True)
        try:
            data = read_results(con)
            if options.gate:
                expectations = gate_expectations(data, con)
            gap_total = write_gaps_csv(con, files["csv"])
            gap_rows = read_gap_rows(con)
        finally:
            con.close()
        breaches = evaluate(data, thresholds)
    except Exception as exc:  # noqa: BLE001 - any failure is reported as exit code 2
        error = f"reconciliation failed: {type(exc).__name__}: {exc}"
    document = build_document(data, expectations, breaches, thresholds, gap_total, error)
    document["files"] = {k: str(v) for k, v in files.items()}
    url = os.environ.get(WEBHOOK_ENV)
    if options.alert and url and document["status"] != "clean":
        document["alert"] = send_alert(document, url, files["html"])
    files["json"].write_text(json.dumps(document, indent=2, default=str))
    files["html"].write_text(
        report.render_html(
            document, _jsonable(gap_rows), _jsonable(data.get("hourly_by_source", []))
        )
    )
    return ReconcileResult(document["exit_code"], document, files)


@click.command()
@click.option("--mode", type=click.Choice(["auto", "audit", "push"]), default="auto",
              show_default=True, help="audit: Braze's connector (no ledger); push: this toolkit's.")  # fmt: skip
@click.option("--time-basis", type=click.Choice(list(TIME_BASIS_DESCRIPTIONS)),
              default="event_time", show_default=True)  # fmt: skip
@click.option("--retention-hours", type=float, default=48.0, show_default=True,
              help="Braze's deletion window for held events.")  # fmt: skip
@click.option("--outage-ratio", type=float, default=0.1, show_default=True,
              help="An hour is an outage when what arrived <= ratio x what was expected.")  # fmt: skip
@click.option("--as-of", type=click.DateTime(), help="Report time (UTC) for deletion deadlines.")
@click.option("--thresholds", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--build/--no-build", default=True, show_default=True,
              help="Build the rpt_ models first (--no-build: they are already built).")  # fmt: skip
@click.option("--ledger", "ledger_path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--no-ledger-snapshot", is_flag=True, help="Keep the ledger snapshot as it is.")
@click.option("--alert/--no-alert", default=True, show_default=True,
              help=f"POST to ${WEBHOOK_ENV} when not clean.")  # fmt: skip
@click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False))
def cli(
    mode: str,
    time_basis: str,
    retention_hours: float,
    outage_ratio: float,
    as_of: datetime | None,
    thresholds: Path | None,
    out_dir: Path | None,
    build: bool,
    ledger_path: Path | None,
    no_ledger_snapshot: bool,
    alert: bool,
    db_path: Path | None,
) -> None:
    """Compare exported, sent and received; write HTML, JSON and CSV reports.

    Exit code 0 clean, 1 a threshold breached, 2 the run failed.
    """
    from rich.console import Console

    console = Console(stderr=True)
    options = Options(
        mode=mode, time_basis=time_basis, retention_hours=retention_hours,
        outage_ratio=outage_ratio, as_of=as_of, thresholds=thresholds, out_dir=out_dir,
        build=build, snapshot_ledger=not no_ledger_snapshot, ledger_path=ledger_path,
        db_path=db_path, alert=alert,
    )  # fmt: skip
    with console.status("reconciling (dbt build of the reports, gate, thresholds)..."):
        result = reconcile(options)
    doc = result.document
    colour = {"clean": "green", "breached": "yellow"}.get(result.status, "red")
    console.print(
        f"[{colour}]{result.status.upper()}[/] mode={doc['mode']} basis={doc['time_basis']}"
    )
    for reason in doc["reasons"]:
        console.print(f"  {reason}")
    for kind, path in result.files.items():
        console.print(f"  {kind}: {path}")
    if "alert" in doc:
        console.print(f"  alert: {doc['alert']}")
    sys.exit(result.exit_code)
