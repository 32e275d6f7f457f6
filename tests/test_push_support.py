"""Helpers for the push tests: a small outbox of the contract's exact shape, configs, the store.

The outbox is built the way the dbt model lays it out (docs/architecture.md): real track-call JSON
payloads with ``messageId`` first, Segment event names from the catalogue. No tests here.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import yaml

from currents_segment import catalogue

OUTBOX_COLUMNS = (
    "message_id VARCHAR, currents_event_type VARCHAR, family VARCHAR, event VARCHAR, "
    "user_id VARCHAR, anonymous_id VARCHAR, event_timestamp TIMESTAMP, app_group_id VARCHAR, "
    "integration_id VARCHAR, source_file VARCHAR, date_hour TIMESTAMP, loaded_at TIMESTAMP, "
    "payload_json VARCHAR, payload_bytes BIGINT, is_sendable BOOLEAN, not_sendable_reason VARCHAR"
)
US_KEY = "test-key-us-0123456789"
EU_KEY = "test-key-eu-9876543210"


def track_call(
    message_id: str,
    event_type: catalogue.EventType,
    user_id: str | None,
    anonymous_id: str,
    when: datetime,
    padding: int = 0,
) -> str:
    call: dict[str, Any] = {
        "messageId": message_id,
        "type": "track",
        "event": event_type.segment_event,
        "userId": user_id,
        "anonymousId": anonymous_id,
        "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "context": {"traits": {"email": f"{anonymous_id[:8]}@example.com"}},
        "properties": {
            "campaign_id": "cmp-" + message_id[:8],
            "campaign_name": "Spring sale – été",  # non-ASCII on purpose: bytes, not chars
            "send_id": message_id[-12:],
        },
    }
    if padding:
        call["properties"]["body"] = "x" * padding
    return orjson.dumps(call).decode()


def make_rows(
    n_sendable: int,
    seed: int = 1,
    app_group_ids: tuple[str, ...] = ("ag-1",),
    no_user: int = 0,
    test_events: int = 0,
    oversize: int = 0,
    age_hours: float = 2.0,
    types: list[str] | None = None,
) -> list[tuple[Any, ...]]:
    """Outbox rows: sendable ones, then the non-sendable kinds the dbt model marks."""
    rng = random.Random(seed)
    chosen = [catalogue.resolve(t) for t in types] if types else catalogue.supported()
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    rows = []
    kinds = (
        [("ok", None)] * n_sendable
        + [("no_user", "no_external_user_id")] * no_user
        + [("test", "test_event")] * test_events
        + [("big", "oversize")] * oversize
    )
    for i, (kind, reason) in enumerate(kinds):
        mid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        et = chosen[i % len(chosen)]
        when = now - timedelta(hours=age_hours, minutes=rng.randint(0, 50))
        user = None if kind == "no_user" else f"user-{rng.randint(1, 10_000)}"
        anon = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        payload = track_call(mid, et, user, anon, when, padding=40_000 if kind == "big" else 0)
        rows.append(
            (
                mid,
                et.event_type,
                et.family,
                et.segment_event,
                user,
                anon,
                when,
                app_group_ids[i % len(app_group_ids)],
                "int-1",
                f"s3://bucket/dataexport.prod-01.S3.integration.int-1/event_type={et.event_type}/x.avro",
                when.replace(minute=0, second=0),
                now,
                payload,
                len(payload.encode()),
                reason is None,
                reason,
            )
        )
    return rows


def build_outbox(db_path: Path, rows: list[tuple[Any, ...]]) -> Path:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db_path))
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(f"CREATE TABLE IF NOT EXISTS marts.fct_segment_outbox ({OUTBOX_COLUMNS})")
        con.executemany(
            f"INSERT INTO marts.fct_segment_outbox VALUES ({', '.join('?' * 16)})", rows
        )
    finally:
        con.close()
    return db_path


def emulator_config(extra_sources: bool = True) -> dict[str, Any]:
    workspaces: list[dict[str, Any]] = [
        {
            "name": "acme-us",
            "region": "us",
            "sources": [{"name": "Braze US", "slug": "braze_us", "write_key": US_KEY}],
        }
    ]
    if extra_sources:
        workspaces.append(
            {
                "name": "acme-eu",
                "region": "eu",
                "sources": [{"name": "Braze EU", "slug": "braze_eu", "write_key": EU_KEY}],
            }
        )
    return {"dedupe_window_hours": 24, "flush_interval_seconds": 1, "workspaces": workspaces}


def connector(
    name: str,
    workspace: str = "acme-us",
    source: str = "braze_us",
    region: str = "us",
    key_env: str = "CS_TEST_KEY_US",
    event_types: list[str] | None = None,
    braze_workspaces: list[str] | None = None,
    message_id: str = "braze_id",
) -> dict[str, Any]:
    return {
        "name": name,
        "braze_workspaces": braze_workspaces or ["*"],
        "event_types": event_types or ["*"],
        "segment": {
            "workspace": workspace,
            "source": source,
            "region": region,
            "write_key_env": key_env,
        },
        "message_id": message_id,
    }


def write_connectors(
    path: Path, connectors: list[dict[str, Any]], push: dict[str, Any] | None = None
) -> Path:
    fast = {"retry_base_seconds": 0.01, "retry_max_seconds": 0.2, "timeout_seconds": 5}
    path.write_text(yaml.safe_dump({"push": {**fast, **(push or {})}, "connectors": connectors}))
    return path


def stored_ids(store_dir: Path, slug: str) -> list[str]:
    """Every id the emulator kept in one source's tracks table (duplicates included)."""
    from currents_segment.emulator import read_table

    return [r["id"] for r in read_table(store_dir, slug, "tracks")]
