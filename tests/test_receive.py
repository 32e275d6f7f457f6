"""receive: real Parquet/CSV parts, a real DuckDB warehouse file, the ledger's SQLite file, the
Public API over loopback (the emulator and a tiny server for 429/401)."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
import requests
from click.testing import CliRunner

from conftest import REPO
from currents_segment import catalogue, receive
from currents_segment.emulator import running_emulator


def write_tracks(path: Path, rows: list[tuple], fmt: str = "parquet", upper: bool = False) -> Path:
    """A Segment ``tracks`` part: (id, event_text, timestamp) rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(
        "create table t (id varchar, anonymous_id varchar, user_id varchar, event varchar, "
        "event_text varchar, received_at timestamp, timestamp timestamp)"
    )
    for mid, text, ts in rows:
        con.execute(
            "insert into t values (?, 'anon', 'user', ?, ?, ?, ?)",
            [mid, receive.snake_case(text) if text else None, text, ts, ts],
        )
    select = "select * from t"
    if upper:  # Snowflake exports upper-case the column names
        cols = [r[0] for r in con.execute("describe t").fetchall()]
        select = "select " + ", ".join(f'{c} as "{c.upper()}"' for c in cols) + " from t"
    options = "(format parquet)" if fmt == "parquet" else "(header, delimiter ',')"
    con.execute(f"copy ({select}) to '{path}' {options}")
    con.close()
    return path


TS = datetime(2026, 11, 1, 10, 30)


def held(con, **where) -> list[tuple]:
    clause = " and ".join(f"{k} = ?" for k in where) or "true"
    return con.execute(
        f"select message_id, event, event_text, currents_event_type from received.tracks "
        f"where {clause} order by message_id",
        list(where.values()),
    ).fetchall()


def test_store_parts_load_once_and_old_spellings_map_to_the_catalogue(tmp_path):
    store = tmp_path / "store"
    write_tracks(
        store / "braze_prod" / "tracks" / "part-1.parquet",
        [("a", "Email Sent", TS), ("b", "Email Unsubscribed", TS),
         ("c", "iOS Foreground Push Opened", TS), ("d", "SMS Short Link Clicks", TS),
         ("e", "Order Completed", TS)],
    )  # fmt: skip
    (store / "_emulator" / "dropped").mkdir(parents=True)  # not a source
    con = receive.connect_warehouse(tmp_path / "wh.duckdb")
    first = receive.receive_directory(con, store, {"braze_prod": "acme"})
    assert (first.rows_loaded, first.parts_loaded) == (5, 1)
    assert first.unknown_event_names == {"Order Completed": 1}
    assert held(con) == [
        ("a", "Email Sent", "Email Sent", "users.messages.email.Send"),
        ("b", "Unsubscribed", "Email Unsubscribed", "users.messages.email.Unsubscribe"),
        ("c", "Ios Foreground Push Opened", "iOS Foreground Push Opened",
         "users.messages.pushnotification.IosForeground"),
        ("d", "SMS Short Link Clicked", "SMS Short Link Clicks",
         "users.messages.sms.ShortLinkClick"),
        ("e", None, "Order Completed", None),
    ]  # fmt: skip
    # Again: nothing new, nothing doubled.
    again = receive.receive_directory(con, store, {"braze_prod": "acme"})
    assert (again.rows_loaded, again.parts_skipped) == (0, 1)
    # A new part: only it loads.
    write_tracks(store / "braze_prod" / "tracks" / "part-2.parquet", [("f", "Email Opened", TS)])
    third = receive.receive_directory(con, store, {"braze_prod": "acme"})
    assert (third.rows_loaded, third.parts_loaded, third.parts_skipped) == (1, 1, 1)
    # A part rewritten (compaction): the source reloads as a whole, still no double count.
    write_tracks(store / "braze_prod" / "tracks" / "part-1.parquet", [("a", "Email Sent", TS)])
    fourth = receive.receive_directory(con, store, {"braze_prod": "acme"})
    assert fourth.sources == {"acme/braze_prod": 2}
    assert [r[0] for r in held(con)] == ["a", "f"]
    ts = con.execute("select event_timestamp, origin from received.tracks limit 1").fetchone()
    assert ts == (TS, "emulator")
    con.close()


def test_csv_export_with_upper_case_columns_and_snake_case_names_only(tmp_path):
    export = tmp_path / "export"
    write_tracks(export / "BRAZE_PROD" / "tracks" / "0.csv", [("x", "WhatsApp Sent", TS)],
                 fmt="csv", upper=True)  # fmt: skip
    con = receive.connect_warehouse(tmp_path / "wh.duckdb")
    receive.receive_directory(con, export, {}, origin="file", default_workspace="acme")
    assert held(con, origin="file") == [
        ("x", "WhatsApp Sent", "WhatsApp Sent", "users.messages.whatsapp.Send")
    ]
    row = con.execute("select event_timestamp from received.tracks").fetchone()
    assert row == (TS,)
    con.close()


def test_unmapped_source_and_missing_columns_are_clear_errors(tmp_path):
    store = tmp_path / "store"
    write_tracks(store / "braze_prod" / "tracks" / "p.parquet", [("a", "Email Sent", TS)])
    con = receive.connect_warehouse(tmp_path / "wh.duckdb")
    with pytest.raises(
        receive.ReceiveError, match="source 'braze_prod' .* has no Segment workspace"
    ):
        receive.receive_directory(con, store, {})
    bad = tmp_path / "bad"
    (bad / "src" / "tracks").mkdir(parents=True)
    duckdb.connect().execute(
        f"copy (select 1 as nothing) to '{bad / 'src' / 'tracks' / 'p.parquet'}' (format parquet)"
    )
    with pytest.raises(receive.ReceiveError, match=r"acme/src .*p\.parquet.*no id column"):
        receive.receive_directory(con, bad, {}, default_workspace="acme")
    assert con.execute("select count(*) from received.tracks").fetchone() == (0,)
    with pytest.raises(receive.ReceiveError, match="no such directory"):
        receive.store_sources(tmp_path / "nowhere")
    con.close()


def test_duckdb_warehouse_file_replaces_each_source(tmp_path):
    seg = tmp_path / "segment.duckdb"
    src = duckdb.connect(str(seg))
    for schema, n in (("braze_us", 3), ("braze_eu", 2)):
        src.execute(f"create schema {schema}")
        src.execute(
            f"create table {schema}.tracks as select 'id-{schema}-' || i as id, "
            f"'Email Opened' as event_text, 'email_opened' as event, "
            f"timestamp '2026-11-01 10:00:00' as timestamp, now() as received_at from range({n}) t(i)"
        )
    src.close()
    con = receive.connect_warehouse(tmp_path / "wh.duckdb")
    summary = receive.receive_duckdb(con, seg, {"braze_eu": "acme-eu"}, default_workspace="acme-us")
    assert summary.sources == {"acme-us/braze_us": 3, "acme-eu/braze_eu": 2}
    receive.receive_duckdb(con, seg, {"braze_eu": "acme-eu"}, default_workspace="acme-us")
    assert con.execute("select count(*) from received.tracks").fetchone() == (5,)
    assert con.execute("select distinct event, origin from received.tracks").fetchall() == [
        ("Email Opened", "warehouse")
    ]
    con.close()


def test_ledger_snapshot_copies_the_sqlite_ledger(tmp_path):
    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "create table ledger (seq integer primary key, connector text, message_id text, "
        "currents_id text, currents_event_type text, app_group_id text, segment_workspace text, "
        "segment_source text, batch_id integer, status text, reason text, attempts integer, "
        "last_http_status integer, error text, queued_at text, sent_at text, acked_at text)"
    )
    db.executemany(
        "insert into ledger (connector, message_id, currents_id, status, reason, attempts, "
        "queued_at, acked_at) values (?, ?, ?, ?, ?, ?, ?, ?)",
        [("c1", "m1", "id1", "acknowledged", None, 1, "2026-11-01T10:00:00Z", "2026-11-01T10:00:02Z"),
         ("c1", "m2", "id2", "skipped", "no_external_user_id", 0, "2026-11-01T10:00:00Z", None)],
    )  # fmt: skip
    db.commit()
    db.close()
    con = receive.connect_warehouse(tmp_path / "wh.duckdb")
    assert receive.snapshot_ledger(con, path) == 2
    assert receive.snapshot_ledger(con, path) == 2  # replaced, not appended
    rows = con.execute(
        "select message_id, status, reason, attempts, acked_at from ledger.events order by 1"
    ).fetchall()
    assert rows == [
        ("m1", "acknowledged", None, 1, datetime(2026, 11, 1, 10, 0, 2)),
        ("m2", "skipped", "no_external_user_id", 0, None),
    ]
    # The pusher's own ledger: an acknowledgement lives on the batch row, read through the view.
    from currents_segment.ledger import Ledger

    real = Ledger(tmp_path / "real.sqlite")
    real.enqueue(
        [("c1", m, m, "users.messages.email.Send", "ag", "w", "s", None, None, 9, "pending", None,
          None, "2026-11-01 10:00:00.000000") for m in ("r1", "r2")]
    )  # fmt: skip
    seqs = [s for s, _, _ in real.open_rows("c1")]
    real.finish_batch(real.start_batch("run", "c1", seqs[:1], 9), seqs[:1], True, 2, 200, None)
    real.close()
    assert receive.snapshot_ledger(con, tmp_path / "real.sqlite") == 2
    assert con.execute(
        "select message_id, status, attempts, last_http_status, acked_at is not null"
        " from ledger.events order by 1"
    ).fetchall() == [("r1", "acknowledged", 2, 200, True), ("r2", "pending", 0, None, False)]
    assert receive.snapshot_ledger(con, tmp_path / "none.sqlite") == 0
    sqlite3.connect(tmp_path / "other.sqlite").execute("create table x (a)").connection.close()
    with pytest.raises(receive.ReceiveError, match="other.sqlite: no ledger table"):
        receive.snapshot_ledger(con, tmp_path / "other.sqlite")
    con.close()


def test_routes_from_yaml_and_connectors(tmp_path, monkeypatch):
    con = receive.connect_warehouse(tmp_path / "wh.duckdb")
    n = receive.load_routes(
        con,
        [{"segment_workspace": "acme", "segment_source": "braze", "app_group_id": "ag1",
          "event_types": ["users_messages_email_send", "users.messages.email.Open"]}],
    )  # fmt: skip
    assert n == 2
    assert con.execute("select currents_event_type from received.routes order by 1").fetchall() == [
        ("users.messages.email.Open",), ("users.messages.email.Send",)
    ]  # fmt: skip
    with pytest.raises(receive.ReceiveError, match=r"route #1: segment_source is required"):
        receive.load_routes(con, [{"segment_workspace": "acme"}])
    with pytest.raises(receive.ReceiveError, match="route #1: unknown key"):
        receive.load_routes(con, [{"segment_workspace": "a", "segment_source": "b", "x": 1}])
    path = tmp_path / "connectors.yml"
    path.write_text(
        "connectors:\n"
        "  - name: behaviors\n    braze_workspaces: ['*']\n    event_types: ['family:behaviors']\n"
        "    segment: {workspace: acme, source: braze, region: us, write_key_env: K}\n"
        "    message_id: braze_id\n"
    )
    routes = receive.routes_from_connectors(path)
    behaviors = [t.event_type for t in catalogue.supported() if t.family == "behaviors"]
    assert sorted(r["currents_event_type"] for r in routes) == sorted(behaviors)
    assert {r["connector_kind"] for r in routes} == {"customer_behavior"}
    con.close()


def test_macro_ddl_matches_python_tables():
    """macros/rpt_received_tables.sql must create exactly receive.TABLES."""
    text = (REPO / "macros" / "rpt_received_tables.sql").read_text()
    found = {}
    for table, body in re.findall(r"'([a-z_]+\.[a-z_]+)': \[(.*?)\]", text, flags=re.S):
        found[table] = re.findall(r"\('([a-z_]+)', '([A-Z]+)'\)", body)
    assert found == {t: list(cols) for t, cols in receive.TABLES.items()}


class VolumeAPI(BaseHTTPRequestHandler):
    calls: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        VolumeAPI.calls.append(self.path)
        if self.headers.get("Authorization") != "Bearer good-token":
            self._send(401, {"errors": [{"message": "unauthorized"}]})
        elif len(VolumeAPI.calls) == 1:
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.end_headers()
        else:
            series = [{"time": "2026-11-01T10:00:00Z", "count": 7}]
            self._send(200, {"data": {"result": [{"eventName": "Email Unsubscribed",
                                                  "source": {"id": "src-1"}, "series": series}],
                                      "pagination": {"current": "MA=="}}})  # fmt: skip

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def volume_server():
    VolumeAPI.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), VolumeAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_volume_api_retries_429_and_never_shows_the_token(volume_server, tmp_path):
    start, end = datetime(2026, 11, 1), datetime(2026, 11, 2)
    rows = receive.fetch_volumes(volume_server, "good-token", start, end, requests_per_minute=0)
    assert len(VolumeAPI.calls) == 2 and "groupBy=eventName" in VolumeAPI.calls[0]
    con = receive.connect_warehouse(tmp_path / "wh.duckdb")
    receive.receive_volumes(con, "acme", rows, start, end, source_names={"src-1": "braze"})
    receive.receive_volumes(con, "acme", rows, start, end, source_names={"src-1": "braze"})
    assert con.execute(
        "select segment_source, event, event_count from received.event_volumes"
    ).fetchall() == [("braze", "Unsubscribed", 7)]
    con.close()
    with pytest.raises(receive.ReceiveError, match="HTTP 401") as err:
        receive.fetch_volumes(volume_server, "bad-secret-token", start, end, requests_per_minute=0)
    assert "bad-secret-token" not in str(err.value)


def test_volume_api_of_the_emulator_pages_through_every_source(tmp_path):
    config = {
        "public_api_token": "tok",
        "workspaces": [{"name": "acme", "sources": [
            {"slug": "braze_a", "write_key": "key-a"}, {"slug": "braze_b", "write_key": "key-b"}]}],
    }  # fmt: skip
    batch = [
        {"type": "track", "event": name, "userId": "u", "messageId": f"m-{i}",
         "timestamp": "2026-11-01T10:15:00Z"}
        for i, name in enumerate(["Email Sent", "Email Sent", "Email Opened"])
    ]  # fmt: skip
    with running_emulator(config, tmp_path / "store") as emu:
        for key in ("key-a", "key-b"):
            resp = requests.post(emu.url + "/v1/batch", json={"batch": [
                {**e, "messageId": e["messageId"] + key} for e in batch]}, auth=(key, ""), timeout=10)  # fmt: skip
            assert resp.status_code == 200
        emu.flush()
        # Segment counts by arrival: a day around now covers every event.
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start, end = today - timedelta(days=1), today + timedelta(days=1)
        rows = receive.fetch_volumes(emu.url, "tok", start, end, page_size=1, requests_per_minute=0)
    con = receive.connect_warehouse(tmp_path / "wh.duckdb")
    receive.receive_volumes(con, "acme", rows, start, end, granularity="HOUR")
    got = con.execute(
        "select segment_source, event, sum(event_count) from received.event_volumes "
        "group by all order by all"
    ).fetchall()
    assert got == [("braze_a", "Email Opened", 1), ("braze_a", "Email Sent", 2),
                   ("braze_b", "Email Opened", 1), ("braze_b", "Email Sent", 2)]  # fmt: skip
    con.close()


def test_cli_receives_the_default_store_and_snapshots(cs_home, tmp_path):
    store = cs_home / "emulator"
    write_tracks(store / "braze_prod" / "tracks" / "p.parquet", [("a", "Email Sent", TS)])
    runner = CliRunner()
    from currents_segment.receive import cli

    result = runner.invoke(cli, ["--workspace", "acme"])
    assert result.exit_code == 0, result.output
    assert "1 rows loaded" in result.output and "ledger snapshot 0 rows" in result.output
    result = runner.invoke(cli, ["--source-workspace", "nope"])
    assert result.exit_code != 0 and "KEY=VALUE" in result.output
