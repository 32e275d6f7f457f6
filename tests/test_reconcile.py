"""reconcile without dbt: thresholds, breaches, the JSON document, exit codes, failures."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from currents_segment import reconcile, report


def row(ws="acme", event="Email Sent", **counts):
    base = {c: 0 for c in reconcile.COUNT_COLUMNS}
    base.update(segment_workspace=ws, event=event, **counts)
    return reconcile._with_rates(base)


def data(*rows, outages=(), cross=()):
    totals = {c: sum(r[c] for r in rows) for c in reconcile.COUNT_COLUMNS}
    return {
        "settings": {"mode": "push", "time_basis": "event_time", "as_of": None},
        "totals": reconcile._with_rates(totals),
        "by_workspace_event": list(rows),
        "outages": list(outages),
        "cross_workspace": list(cross),
        "gap_counts": {"missing": totals["missing"], "unexpected": 0, "duplicate": 0},
    }


def test_default_thresholds_tolerate_nothing():
    t = reconcile.load_thresholds()
    assert t.defaults == reconcile.Limits()
    clean = data(row(sendable=100, received=100, received_distinct=100))
    assert reconcile.evaluate(clean, t) == []
    lossy = data(row(sendable=100, missing=1, received_distinct=99, received=99))
    assert reconcile.evaluate(lossy, t) == [
        {"scope": {"segment_workspace": "acme", "event": "Email Sent"}, "metric": "loss_rate",
         "value": 0.01, "threshold": 0.0}
    ]  # fmt: skip


def test_rules_apply_in_order_per_workspace_and_event(tmp_path):
    path = tmp_path / "t.yml"
    path.write_text(
        "defaults: {max_loss_rate: 0.001}\n"
        "rules:\n"
        "  - {segment_workspace: 'acme-*', max_loss_rate: 0.05}\n"
        "  - {segment_workspace: 'acme-eu', event: 'Email *', max_loss_rate: 0.0,"
        " max_duplicate_rate: 0.5}\n"
    )
    t = reconcile.load_thresholds(path)
    assert t.limits_for("acme-us", "Email Sent").max_loss_rate == 0.05
    assert t.limits_for("acme-eu", "Email Sent").max_loss_rate == 0.0
    assert t.limits_for("acme-eu", "SMS Sent").max_loss_rate == 0.05
    assert t.limits_for("other", "Email Sent").max_loss_rate == 0.001
    rows = [
        row("acme-us", sendable=100, missing=2, received_distinct=98, received=98),
        row("acme-eu", sendable=100, missing=1, received_distinct=99, received=129, duplicates=30),
    ]
    breaches = reconcile.evaluate(data(*rows), t)
    assert [(b["scope"]["segment_workspace"], b["metric"]) for b in breaches] == [
        ("acme-eu", "loss_rate")
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("defaults: {max_loss_rate: -1}", "defaults.max_loss_rate: expected a non-negative number"),
        ("defaults: {max_los_rate: 0.1}", "defaults.max_los_rate: unknown setting"),
        ("rules: [{event: 3}]", r"rules\[0\].event: expected a pattern string"),
        ("rules: {a: 1}", "rules must be a list"),
        ("other: 1", "expected the keys 'defaults' and 'rules' only"),
        ("defaults: {outages_breach: 'no'}", "outages_breach: expected true or false"),
    ],
)
def test_bad_thresholds_name_the_file_and_setting(tmp_path, text, message):
    path = tmp_path / "thresholds.yml"
    path.write_text(text)
    with pytest.raises(reconcile.ReconcileError, match=message) as err:
        reconcile.load_thresholds(path)
    assert str(path) in str(err.value)


def test_outages_and_risky_cross_workspace_findings_breach_fan_out_does_not():
    t = reconcile.Thresholds()
    outage = {"segment_workspace": "acme", "segment_source": "braze", "hours": 2, "missing": 40,
              "outage_start": __import__("datetime").datetime(2026, 11, 1, 5)}  # fmt: skip
    fan_out = {"finding": "same_id_in_many_workspaces", "same_message_id": False, "events": 9,
               "segment_workspaces": "a, b", "segment_sources": "x, y", "event": "Email Sent"}  # fmt: skip
    collision = {**fan_out, "same_message_id": True}
    two = {"finding": "connectors_of_one_kind_in_one_workspace", "same_message_id": None,
           "events": None, "segment_workspaces": "a", "segment_sources": "x, y", "event": None}  # fmt: skip
    metrics = [b["metric"] for b in reconcile.evaluate(data(outages=[outage], cross=[fan_out]), t)]
    assert metrics == ["outage"]
    metrics = [b["metric"] for b in reconcile.evaluate(data(cross=[collision, two]), t)]
    assert metrics == ["same_id_in_many_workspaces", "connectors_of_one_kind_in_one_workspace"]
    relaxed = reconcile.Thresholds(
        reconcile.Limits(outages_breach=False, cross_workspace_breach=False)
    )
    assert reconcile.evaluate(data(outages=[outage], cross=[collision, two]), relaxed) == []


def test_document_status_and_exit_codes():
    t = reconcile.Thresholds()
    ok = [{"success": True}]
    clean = reconcile.build_document(data(row(sendable=5)), ok, [], t, 0)
    assert (clean["status"], clean["exit_code"], clean["clean"]) == ("clean", 0, True)
    assert clean["reasons"] == ["no gaps, duplicates, outages or cross-workspace findings"]
    breached = reconcile.build_document(data(row(sendable=5)), ok, [{"metric": "x"}], t, 0)
    assert (breached["status"], breached["exit_code"]) == ("breached", 1)
    gate = reconcile.build_document(data(row(sendable=5)), [{"success": False}], [], t, 0)
    assert (gate["status"], gate["exit_code"]) == ("failed", 2)
    assert gate["reasons"][0].startswith("the Great Expectations gate failed")
    audit = data(row(sendable=5))
    audit["settings"]["mode"] = "audit"
    assert reconcile.build_document(audit, ok, [], t, 0)["totals"]["sent"] is None


class Hook(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        Hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_failed_run_exits_2_writes_its_reports_and_alerts(cs_home, tmp_path, monkeypatch):
    Hook.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/very-secret"
        monkeypatch.setenv(reconcile.WEBHOOK_ENV, url)
        bad = tmp_path / "bad.yml"
        bad.write_text("defaults: {max_loss_rate: lots}")
        result = reconcile.reconcile(reconcile.Options(thresholds=bad, out_dir=tmp_path / "r"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result.exit_code == 2 and result.status == "failed"
    assert "bad.yml: defaults.max_loss_rate" in result.document["reasons"][0]
    assert result.document["alert"] == {"sent": True, "http_status": 204}
    assert Hook.bodies[0]["text"].startswith(":x: Currents -> Segment reconciliation: FAILED")
    saved = json.loads(result.files["json"].read_text())
    assert saved["status"] == "failed" and "very-secret" not in result.files["json"].read_text()
    assert "RUN FAILED" in result.files["html"].read_text()


def test_cli_rejects_a_bad_time_basis_and_fails_with_2_on_a_missing_warehouse(cs_home, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(reconcile.cli, ["--time-basis", "arrival"])
    assert bad.exit_code == 2 and "arrival" in bad.output
    options = reconcile.Options(outage_ratio=2.0, out_dir=tmp_path / "x")
    result = reconcile.reconcile(options)
    assert result.exit_code == 2
    assert "outage ratio in [0, 1]" in result.document["reasons"][0]


def test_html_escapes_and_charts_are_inline_svg():
    doc = reconcile.build_document(
        data(row("<b>ws</b>", "Email Sent", exported=3, sendable=3, missing=1)), [], [],
        reconcile.Thresholds(), 1,
    )  # fmt: skip
    doc["daily"] = [{"period_day": "2026-11-01", "segment_workspace": "<b>ws</b>", "exported": 3,
                     "sent": 3, "received": 2, "received_distinct": 2, "missing": 1}]  # fmt: skip
    gaps = [{"gap_kind": "missing", "segment_workspace": "<b>ws</b>", "segment_source": "s",
             "event": "Email Sent", "message_id": "m'1\"<x>", "currents_id": "c",
             "source_file": "f.avro"}]  # fmt: skip
    text = report.render_html(doc, gaps)
    assert "<b>ws</b>" not in text and "&lt;b&gt;ws&lt;/b&gt;" in text
    assert "m&#x27;1&quot;&lt;x&gt;" in text
    assert text.count('<rect class="bar"') == 4  # exported, sent, received, missing
    assert "<details" in text
