"""Dry runs (batch files, ledger untouched), batching limits, and the Great Expectations gate."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from click.testing import CliRunner

from currents_segment import connectors, push, settings
from currents_segment.connectors import PushSettings
from currents_segment.gate import ExpectationSpec, validate_frame
from test_push_support import build_outbox, connector, make_rows, write_connectors


def test_batches_respect_count_and_serialized_bytes():
    import pyarrow as pa

    policy = PushSettings(max_batch_events=3, max_batch_bytes=2000)
    # 700+1+700+1+10 fits; the 4th event breaks the count; 1000+1+1000 breaks the bytes.
    sizes = [700, 700, 10, 10, 10, 10, 1000, 1000, 1900, 5]
    payloads = [chr(ord("a") + i) * n for i, n in enumerate(sizes)]
    cuts = push._cut_batches(sizes, policy)
    assert cuts == [(0, 3), (3, 6), (6, 7), (7, 8), (8, 10)]
    # Each batch's items are its events joined with commas, from an Arrow array slice.
    items = push._batch_items(pa.array(payloads), cuts)
    assert items == [",".join(payloads[a:b]).encode() for a, b in cuts]
    for (a, b), joined in zip(cuts, items, strict=True):
        body = b'{"batch":[' + joined + b'],"sentAt":"2026-11-23T14:45:00.123456Z"}'
        assert b - a <= 3
        assert len(body) <= 2000
    assert push._batch_items(pa.array(payloads), cuts[2:4]) == [b"g" * 1000, b"h" * 1000]


def test_dry_run_writes_batches_and_leaves_the_ledger_untouched(cs_home, monkeypatch):
    monkeypatch.delenv("CS_TEST_KEY_US", raising=False)  # a dry run needs no write key
    rows = make_rows(450, seed=7, no_user=4, oversize=1)
    build_outbox(settings.warehouse_path(), rows)
    path = write_connectors(cs_home / "c.yml", [connector("us")], {"max_batch_events": 100})
    # An existing ledger with one acknowledged event: still acknowledged, file unchanged.
    config = connectors.load(path)
    first = rows[0][0]
    from currents_segment.ledger import Ledger

    ledger = Ledger()
    ledger.enqueue(
        [("us", first, first, rows[0][1], "ag-1", "acme-us", "braze_us", None, None, 1, "pending", None, None, "t")]
    )  # fmt: skip
    seq = ledger.open_rows("us")[0][0]
    ledger.finish_batch(ledger.start_batch("r0", "us", [seq], 1), [seq], True, 1, 200, None)
    ledger.close()
    digest = hashlib.sha256(settings.ledger_path().read_bytes()).hexdigest()

    out = cs_home / "dry"
    result = CliRunner().invoke(
        push.cli, ["--connectors", str(path), "--dry-run", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    files = sorted((out / "us").glob("batch-*.json"))
    assert [f.name for f in files] == [f"batch-{i:06d}.json" for i in range(1, 6)]
    sent = []
    for f in files:
        body = orjson.loads(f.read_bytes())
        assert len(body["batch"]) <= 100 and body["sentAt"].endswith("Z")
        assert len(f.read_bytes()) <= config.push.max_batch_bytes
        sent.extend(item["messageId"] for item in body["batch"])
    assert sorted(sent) == sorted(r[0] for r in rows[1:450])
    assert hashlib.sha256(settings.ledger_path().read_bytes()).hexdigest() == digest


def test_gate_failure_blocks_the_send_and_writes_the_result(cs_home, monkeypatch):
    monkeypatch.setenv("CS_TEST_KEY_US", "k")
    rows = make_rows(20, seed=8)
    future = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=2)
    rows[3] = rows[3][:6] + (future,) + rows[3][7:]
    rows[5] = rows[5][:3] + ("Email Sentt",) + rows[5][4:]
    build_outbox(settings.warehouse_path(), rows)
    config = connectors.load(write_connectors(cs_home / "c.yml", [connector("us")]))
    # Nothing listens on port 9: the gate must stop the run before any request is made.
    result = push.run_push(config, push.PushOptions(api_base="http://127.0.0.1:9", progress=False))
    summary = result.connectors[0]
    assert result.exit_code == 1
    assert summary.sent == 0 and summary.pending == 20
    assert summary.stopped.startswith("gate failed (20 rows): ")
    assert "expect_column_values_to_be_between(event_epoch_s): 1 unexpected" in summary.stopped
    assert "expect_column_values_to_be_in_set(event): 1 unexpected, e.g. ['Email Sentt']" in (
        summary.stopped
    )
    [report] = summary.gate_reports
    assert report.startswith(str(result.run_dir))
    assert json.loads(Path(report).read_text())["success"] is False
    with sqlite3.connect(settings.ledger_path()) as con:
        assert con.execute("SELECT status, count(*) FROM ledger GROUP BY 1").fetchall() == [
            ("pending", 20)
        ]


def test_gate_catches_a_payload_whose_message_id_does_not_match(cs_home, monkeypatch):
    monkeypatch.setenv("CS_TEST_KEY_US", "k")
    rows = make_rows(5, seed=9)
    call = orjson.loads(rows[2][12])
    reordered = orjson.dumps({"type": "track", **call}).decode()  # messageId no longer first
    rows[2] = rows[2][:12] + (reordered,) + rows[2][13:]
    build_outbox(settings.warehouse_path(), rows)
    config = connectors.load(write_connectors(cs_home / "c.yml", [connector("us")]))
    result = push.run_push(config, push.PushOptions(api_base="http://127.0.0.1:9", progress=False))
    assert result.exit_code == 1
    assert "expect_column_values_to_be_in_set(payload_matches_id): 1 unexpected" in (
        result.connectors[0].stopped
    )


def test_validate_frame_is_generic():
    import pandas as pd

    df = pd.DataFrame({"id": ["a", "b", "b", None], "n": [1, 2, 3, 4]})
    result = validate_frame(
        df,
        [
            ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "id"}),
            ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": "n", "max_value": 10}),
        ],
    )
    assert not result.success and result.rows == 4
    assert [(f.expectation, f.column, f.unexpected_count) for f in result.failures] == [
        ("expect_column_values_to_be_unique", "id", 2)
    ]


def test_time_range_filter_selects_by_event_time(cs_home):
    recent = make_rows(12, seed=31, age_hours=2)
    old = make_rows(8, seed=32, age_hours=60)
    build_outbox(settings.warehouse_path(), recent + old)
    path = write_connectors(cs_home / "c.yml", [connector("us")])
    since = (datetime.now(UTC) - timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def dry_run(out: str, *window: str) -> set[str]:
        result = CliRunner().invoke(
            push.cli, ["--connectors", str(path), "--dry-run", str(cs_home / out), *window]
        )
        assert result.exit_code == 0, result.output
        return {
            item["messageId"]
            for f in (cs_home / out / "us").glob("batch-*.json")
            for item in orjson.loads(f.read_bytes())["batch"]
        }

    assert dry_run("new", "--since", since) == {r[0] for r in recent}
    assert dry_run("old", "--until", since) == {r[0] for r in old}
    bad = CliRunner().invoke(push.cli, ["--connectors", str(path), "--since", "yesterday"])
    assert bad.exit_code == 2 and "'yesterday' is not an ISO-8601 time" in bad.output


def test_the_gate_starts_warming_up_with_the_run_and_is_done_when_it_returns(cs_home, monkeypatch):
    import threading

    from currents_segment import gate

    monkeypatch.delenv("CS_TEST_KEY_US", raising=False)
    rows = make_rows(30, seed=11)
    build_outbox(settings.warehouse_path(), rows)
    config = connectors.load(write_connectors(cs_home / "c.yml", [connector("us")]))
    calls: list[str] = []
    warm_up = gate.warm_up

    def recorded() -> None:
        calls.append(threading.current_thread().name)
        warm_up()

    monkeypatch.setattr(gate, "warm_up", recorded)
    result = push.run_push(config, push.PushOptions(dry_run_dir=cs_home / "dry", progress=False))
    assert result.exit_code == 0
    # Started in its own thread as the run began (not by the first chunk), and joined.
    assert calls == ["gate-warm-up"]
    assert not [t for t in threading.enumerate() if t.name == "gate-warm-up"]
    log = (result.run_dir / "push.log").read_text()
    assert "connector us: first batch leaves" in log
