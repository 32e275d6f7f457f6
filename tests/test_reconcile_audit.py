"""Auditing Braze's own connector (no ledger): an outbox, and a Segment store written from it with
known loss, duplicates and a foreign event; one real reconcile run (dbt, GX) checked for exact
numbers, the HTML report (escaping, charts in headless Chromium), the webhook alert and the CLI."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest
from click.testing import CliRunner

from conftest import REPO
from currents_segment import receive, reconcile
from test_push_support import build_outbox, make_rows

EVIL_WORKSPACE = '<script>alert("ws")</script>'
EVIL_EVENT = "<img src=x onerror=alert(1)>"
ARTIFACTS = REPO / "test-artifacts"


class Hook(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length", 0))
        Hook.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    home = root / "home"
    Hook.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook_url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/secret-token"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CURRENTS_SEGMENT_HOME", str(home))
        for var in ("CURRENTS_SEGMENT_DB", "CURRENTS_SEGMENT_LEDGER", "CURRENTS_SEGMENT_REPORTS"):
            mp.delenv(var, raising=False)
        mp.setenv(reconcile.WEBHOOK_ENV, hook_url)
        rows = make_rows(400, seed=21, app_group_ids=("ag-1", "ag-2"), no_user=9, test_events=2)
        db = build_outbox(home / "warehouse.duckdb", rows)
        con = duckdb.connect(str(db))
        con.execute(
            "create schema intermediate; create table intermediate.int_currents__unsupported_events "
            "(app_group_id varchar, currents_event_type varchar, raw_table_name varchar, "
            "date_hour timestamp, event_count bigint, distinct_event_count bigint)"
        )
        con.close()
        sendable = sorted((r for r in rows if r[14]), key=lambda r: r[0])
        lost = {r[0] for r in sendable[::25]}  # every 25th: 4 %
        doubled = {r[0] for r in sendable[3::40]} - lost  # 10 of them, minus lost ones
        store = root / "store" / "braze_prod" / "tracks"
        store.mkdir(parents=True)
        out = duckdb.connect()
        out.execute(
            "create table t (id varchar, event_text varchar, timestamp timestamp, "
            "received_at timestamp, user_id varchar)"
        )
        for r in sendable:
            copies = 0 if r[0] in lost else 2 if r[0] in doubled else 1
            for _ in range(copies):
                out.execute("insert into t values (?, ?, ?, ?, ?)", [r[0], r[3], r[6], r[11], r[4]])
        out.execute("insert into t values ('foreign-1', ?, ?, ?, 'u')",
                    [EVIL_EVENT, sendable[0][6], sendable[0][11]])  # fmt: skip
        out.execute(f"copy t to '{store / 'part-0.parquet'}' (format parquet)")
        out.close()
        wh = receive.connect_warehouse(db)
        receive.receive_directory(wh, root / "store", {"braze_prod": EVIL_WORKSPACE})
        wh.close()
        as_of = max(r[6] for r in rows) + timedelta(hours=1)
        result = reconcile.reconcile(
            reconcile.Options(as_of=as_of, out_dir=root / "report", snapshot_ledger=False)
        )
        # The CLI on the same warehouse, reports already built.
        cli_out = CliRunner().invoke(
            reconcile.cli,
            ["--no-build", "--no-alert", "--out", str(root / "cli"), "--mode", "audit"],
        )
    server.shutdown()
    server.server_close()
    thread.join(5)
    return {"result": result, "rows": rows, "lost": lost, "doubled": doubled, "cli": cli_out,
            "root": root, "hook_url": hook_url, "hooks": list(Hook.bodies)}  # fmt: skip


def test_audit_numbers_equal_the_injected_ones(audited):
    doc = audited["result"].document
    rows = audited["rows"]
    assert audited["result"].exit_code == 1 and doc["status"] == "breached"
    assert doc["mode"] == "audit" and doc["time_basis"] == "event_time"
    t = doc["totals"]
    assert t["exported"] == len(rows)
    assert (t["skipped_no_external_id"], t["skipped_test_event"]) == (9, 2)
    assert t["sendable"] == 400 and t["sent"] is None
    assert t["missing"] == len(audited["lost"])
    assert t["duplicates"] == len(audited["doubled"])
    assert t["unexpected"] == 1
    assert t["received_distinct"] == 400 - len(audited["lost"]) + 1
    assert doc["gate_passed"], [e for e in doc["expectations"] if not e["success"]]
    with audited["result"].files["csv"].open(newline="") as fh:
        gaps = list(csv.DictReader(fh))
    assert {g["message_id"] for g in gaps if g["gap_kind"] == "missing"} == audited["lost"]
    assert {g["message_id"] for g in gaps if g["gap_kind"] == "duplicate"} == audited["doubled"]
    assert all(g["source_file"].startswith("s3://") for g in gaps if g["gap_kind"] != "unexpected")


def test_html_report_escapes_user_content_and_states_mode_and_basis(audited):
    text = audited["result"].files["html"].read_text()
    assert EVIL_WORKSPACE not in text and EVIL_EVENT not in text
    assert "&lt;script&gt;alert(&quot;ws&quot;)&lt;/script&gt;" in text
    assert "Auditing Braze&#x27;s own Segment connector" in text
    assert "event time (Currents `time`)" in text
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert text.index("THRESHOLD BREACHED") < text.index("<svg")  # summary first


def test_webhook_alert_is_slack_shaped_and_the_url_stays_secret(audited):
    hooks = audited["hooks"]
    assert len(hooks) == 1
    assert hooks[0]["text"].startswith(":warning: Currents -> Segment reconciliation: BREACHED")
    assert hooks[0]["blocks"][0]["type"] == "header"
    doc = audited["result"].document
    assert doc["alert"] == {"sent": True, "http_status": 200}
    saved = audited["result"].files["json"].read_text()
    assert "secret-token" not in saved and audited["hook_url"] not in saved


def test_cli_without_build_reads_the_same_result(audited):
    cli = audited["cli"]
    assert cli.exit_code == 1, cli.output
    doc = json.loads((audited["root"] / "cli" / "reconcile.json").read_text())
    assert doc["totals"] == audited["result"].document["totals"]
    assert "alert" not in doc


@pytest.mark.browser
def test_report_renders_its_charts_in_headless_chromium(audited, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        install = subprocess.run(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
            shell=True, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        chromium = shutil.which("chromium")
        if chromium is None:
            pytest.skip(f"chromium is not installed and apt-get failed: {install.stderr[-300:]}")
    html = audited["result"].files["html"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "reconcile-report.png"
    shot.unlink(missing_ok=True)
    base = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000",
    ]  # fmt: skip
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run([*base, "--dump-dom", html.as_uri()], capture_output=True, text=True,
                         timeout=120, env=env)  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-500:]
    assert dom.stdout.count('class="chart"') >= 2
    assert dom.stdout.count('class="bar"') >= 3  # exported, received, missing of one day
    assert 'class="line"' in dom.stdout
    subprocess.run([*base, f"--screenshot={shot}", html.as_uri()], capture_output=True,
                   timeout=120, env=env, check=True)  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
