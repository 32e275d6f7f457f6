"""The local Segment emulator, over real HTTP against a real subprocess, store read back.

Each rule of the Tracking API contract, the de-duplication window, fault injection (exact,
seeded counts checked against the emulator's own records), the warehouse-shaped store and the
Public API's /events/volume.
"""

from __future__ import annotations

import base64
import gzip
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from currents_segment import catalogue
from currents_segment.emulator import (
    EmulatorError,
    open_store,
    read_table,
    running_emulator,
    snakecase,
    store_tables,
)
from currents_segment.emulator_config import EmulatorConfigError, fingerprint, load_config

KEY_PROD = "wk-prod-0123456789"
KEY_REVOKED = "wk-revoked-0123456789"
KEY_WINDOW = "wk-window-0123456789"
KEY_OTHER_WS = "wk-other-0123456789"
KEY_VOLUME = "wk-volume-0123456789"
KEY_EU = "wk-eu-0123456789"
TOKEN = "papi-all-workspaces"
TOKEN_EU = "papi-eu-only"
TOKEN_RATE = "papi-rate-test"

CONFIG: dict[str, Any] = {
    "dedupe_window_hours": 24,
    "public_api_token": TOKEN,
    "flush_interval_seconds": 60,
    "workspaces": [
        {
            "name": "acme-us",
            "region": "us",
            "public_api_token": TOKEN_RATE,
            "sources": [
                {"name": "Braze prod", "slug": "braze_prod", "write_key": KEY_PROD},
                {
                    "name": "Revoked",
                    "slug": "braze_revoked",
                    "write_key": KEY_REVOKED,
                    "revoked": True,
                },
                {
                    "name": "Revoked for six hours",
                    "slug": "braze_window",
                    "write_key": KEY_WINDOW,
                    "revoked_windows": [
                        {"from": "2034-06-14T00:00:00Z", "to": "2034-06-14T06:00:00Z"}
                    ],
                },
            ],
        },
        {
            "name": "acme-us-2",
            "region": "us",
            "sources": [
                {"slug": "braze_other", "write_key": KEY_OTHER_WS},
                {"slug": "braze_volume", "id": "src_volume", "write_key": KEY_VOLUME},
            ],
        },
        {
            "name": "acme-eu",
            "region": "eu",
            "public_api_token": TOKEN_EU,
            "sources": [{"name": "Braze EU", "slug": "braze_eu", "write_key": KEY_EU}],
        },
    ],
}


def new_id(tag: str = "m") -> str:
    return f"{tag}-{uuid.uuid4()}"


def track(mid: str | None = None, event: str = "Email Link Clicked", **extra: Any) -> dict:
    call: dict[str, Any] = {
        "type": "track",
        "messageId": mid or new_id(),
        "event": event,
        "userId": "ext-1",
        "anonymousId": "braze-1",
        "timestamp": "2034-06-14T09:48:24Z",
        "context": {"traits": {"email": "a@example.com"}, "device": {"model": "Pixel 8"}},
        "properties": {"campaignId": "c-1", "link_url": "https://x.example/a"},
    }
    call.update(extra)
    return call


def post(
    url: str,
    events: list[dict] | None = None,
    key: str | None = KEY_PROD,
    path: str = "/v1/batch",
    body: bytes | None = None,
    in_body: bool = False,
    gzipped: bool = False,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    if body is None:
        payload: dict[str, Any] = {"batch": events or [], "sentAt": "2034-06-14T09:50:00Z"}
        if path.endswith("/track"):
            payload = dict((events or [{}])[0])
        if in_body and key:
            payload["writeKey"] = key
        body = orjson.dumps(payload)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if gzipped:
        body = gzip.compress(body)
        hdrs["Content-Encoding"] = "gzip"
    if key and not in_body:
        hdrs["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return requests.post(url + path, data=body, headers=hdrs, timeout=30)


def dropped(store: Path, **where: Any) -> list[dict]:
    rows = read_table(store, "_emulator", "dropped")
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def kept_ids(store: Path, schema: str, table: str = "tracks") -> list[str]:
    return [r["id"] for r in read_table(store, schema, table)]


def rows_by_id(store: Path, table: str, *ids: str) -> dict[str, dict]:
    """The stored rows of ``braze_prod.<table>`` with these ids, by id."""
    return {r["id"]: r for r in read_table(store, "braze_prod", table) if r["id"] in ids}


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    store = tmp_path_factory.mktemp("emulator") / "store"
    with running_emulator(CONFIG, store) as handle:
        yield handle


# -- snake_case ------------------------------------------------------------------------------

SNAKE_CASES = {
    "Application Uninstalled": "application_uninstalled",
    "Global Subscription State Changed": "global_subscription_state_changed",
    "Subscription Group State Changed": "subscription_group_state_changed",
    "Campaign Aborted": "campaign_aborted",
    "Campaign Converted": "campaign_converted",
    "Campaign Control Group Entered": "campaign_control_group_entered",
    "Canvas Aborted": "canvas_aborted",
    "Canvas Converted": "canvas_converted",
    "Canvas Entered": "canvas_entered",
    "Exit Matched Audience": "exit_matched_audience",
    "Exit Performed Event": "exit_performed_event",
    "Experiment Step Converted": "experiment_step_converted",
    "Experiment Split Entered": "experiment_split_entered",
    "Content Card Aborted": "content_card_aborted",
    "Content Card Clicked": "content_card_clicked",
    "Content Card Dismissed": "content_card_dismissed",
    "Content Card Viewed": "content_card_viewed",
    "Content Card Sent": "content_card_sent",
    "Email Aborted": "email_aborted",
    "Email Bounced": "email_bounced",
    "Email Link Clicked": "email_link_clicked",
    "Email Delivered": "email_delivered",
    "Email Marked as Spam": "email_marked_as_spam",
    "Email Marked As Spam": "email_marked_as_spam",
    "Email Opened": "email_opened",
    "Email Sent": "email_sent",
    "Email Soft Bounced": "email_soft_bounced",
    "Unsubscribed": "unsubscribed",
    "Email Unsubscribed": "email_unsubscribed",
    "In-App Message Aborted": "in_app_message_aborted",
    "In-App Message Clicked": "in_app_message_clicked",
    "In-App Message Viewed": "in_app_message_viewed",
    "Push Notification Aborted": "push_notification_aborted",
    "Push Notification Bounced": "push_notification_bounced",
    "Ios Foreground Push Opened": "ios_foreground_push_opened",
    "iOS Foreground Push Opened": "i_os_foreground_push_opened",
    "Push Notification Tapped": "push_notification_tapped",
    "Push Notification Sent": "push_notification_sent",
    "SMS Aborted": "sms_aborted",
    "SMS Sent to Carrier": "sms_sent_to_carrier",
    "SMS Delivered": "sms_delivered",
    "SMS Delivery Failed": "sms_delivery_failed",
    "SMS Inbound Received": "sms_inbound_received",
    "SMS Rejected": "sms_rejected",
    "SMS Sent": "sms_sent",
    "SMS Short Link Clicked": "sms_short_link_clicked",
    "SMS Short Link Clicks": "sms_short_link_clicks",
    "Webhook Aborted": "webhook_aborted",
    "Webhook Sent": "webhook_sent",
    "WhatsApp Aborted": "whats_app_aborted",
    "WhatsApp Delivered": "whats_app_delivered",
    "WhatsApp Failed": "whats_app_failed",
    "WhatsApp Inbound Received": "whats_app_inbound_received",
    "WhatsApp Read": "whats_app_read",
    "WhatsApp Sent": "whats_app_sent",
}


def test_snakecase_every_catalogue_name():
    names = [n for t in catalogue.supported() for n in (t.segment_event, *t.segment_event_aliases)]
    assert set(names) <= set(SNAKE_CASES), set(names) - set(SNAKE_CASES)
    for name in names:
        assert snakecase(name) == SNAKE_CASES[name], name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("messageId", "message_id"),
        ("userID", "user_id"),
        ("already_snake", "already_snake"),
        ("  Padded  Name ", "padded_name"),
        ("link_url", "link_url"),
        ("HTTPStatus", "httpstatus"),  # go-snakecase keeps an upper-case run with what follows
        ("v2Field", "v_2field"),  # a digit before an upper-case letter starts a word
        ("", ""),
    ],
)
def test_snakecase_follows_go_snakecase(text, expected):
    assert snakecase(text) == expected


# -- config ----------------------------------------------------------------------------------


def test_config_errors_name_the_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("CS_TEST_MISSING_KEY", raising=False)
    bad = {"workspaces": [{"name": "w", "region": "us", "sources": [{"slug": "s"}]}]}
    with pytest.raises(EmulatorConfigError, match=r"workspaces\[0\]\.sources\[0\].*write_key"):
        load_config(bad)
    bad["workspaces"][0]["sources"][0]["write_key_env"] = "CS_TEST_MISSING_KEY"
    with pytest.raises(EmulatorConfigError, match="CS_TEST_MISSING_KEY"):
        load_config(bad)
    with pytest.raises(EmulatorConfigError, match=r"region"):
        load_config({"workspaces": [{"name": "w", "region": "ap", "sources": []}]})
    dup = {
        "workspaces": [
            {"name": "a", "sources": [{"slug": "x", "write_key": "same-key-1"}]},
            {"name": "b", "sources": [{"slug": "y", "write_key": "same-key-1"}]},
        ]
    }
    with pytest.raises(EmulatorConfigError, match="also") as info:
        load_config(dup)
    assert "same-key-1" not in str(info.value)  # only the fingerprint
    path = tmp_path / "emulator.yml"
    path.write_text(
        "workspaces: [{name: w, sources: [{slug: s, write_key: k}]}]\nfaults: {bogus: 1}\n"
    )
    with pytest.raises(EmulatorConfigError, match=rf"{path}.*bogus"):
        load_config(path)
    with pytest.raises(EmulatorConfigError, match=r"error_5xx_rate"):
        load_config({**CONFIG, "faults": {"error_5xx_rate": 2}})


def test_write_key_from_env(monkeypatch):
    monkeypatch.setenv("CS_TEST_WRITE_KEY", "from-env-key")
    cfg = load_config(
        {
            "workspaces": [
                {"name": "w", "sources": [{"slug": "s", "write_key_env": "CS_TEST_WRITE_KEY"}]}
            ]
        }
    )
    assert cfg.sources[0].write_key == "from-env-key"
    assert "from-env-key" not in repr(cfg)


def test_running_emulator_reports_bad_config(tmp_path):
    with (
        pytest.raises(EmulatorConfigError, match="region"),
        running_emulator(
            {"workspaces": [{"name": "w", "region": "mars", "sources": []}]}, tmp_path / "s"
        ),
    ):
        pass


# -- Tracking API: auth, encodings, endpoints --------------------------------------------------


def test_basic_auth_body_key_gzip_and_endpoints(emu):
    store = emu.store_dir
    by_basic, by_body, by_gzip, by_track, by_import, by_chunks = (new_id() for _ in range(6))
    assert post(emu.url, [track(by_basic)]).status_code == 200
    assert post(emu.url, [track(by_body)], in_body=True).status_code == 200
    assert post(emu.url, [track(by_gzip)], gzipped=True).status_code == 200
    assert post(emu.url, [track(by_track)], path="/v1/track").status_code == 200
    assert post(emu.url, [track(by_import)], path="/v1/import").status_code == 200
    chunked = requests.post(
        emu.url + "/v1/batch",
        data=iter([orjson.dumps({"writeKey": KEY_PROD, "batch": [track(by_chunks)]})]),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert chunked.status_code == 200
    assert chunked.json() == {"success": True}
    emu.flush()
    kept = kept_ids(store, "braze_prod")
    for mid in (by_basic, by_body, by_gzip, by_track, by_import, by_chunks):
        assert kept.count(mid) == 1, mid


def test_store_content_equals_what_was_sent(emu):
    mid = new_id()
    call = track(
        mid,
        event="WhatsApp Sent",
        context={"traits": {"phone": "+15550100"}, "library": {"name": "cs", "version": "1"}},
        properties={
            "campaignId": "camp-9",
            "message_variation_id": "mv-1",
            "nested": {"innerKey": 3},
            "tags": ["a", "b"],
            "is_control": True,
            "id": "collides-with-a-column",
        },
        originalTimestamp="2034-06-14T09:48:20Z",
    )
    assert post(emu.url, [call]).status_code == 200
    emu.flush()
    tables = store_tables(emu.store_dir)
    assert "whats_app_sent" in tables["braze_prod"] and "tracks" in tables["braze_prod"]
    con = open_store(emu.store_dir)
    track_row = con.execute("SELECT * FROM braze_prod.tracks WHERE id = ?", [mid]).fetchall()
    assert len(track_row) == 1
    cols = [d[0] for d in con.description]
    row = dict(zip(cols, track_row[0], strict=True))
    assert cols[:10] == [
        "id",
        "anonymous_id",
        "user_id",
        "event",
        "event_text",
        "received_at",
        "sent_at",
        "timestamp",
        "original_timestamp",
        "uuid_ts",
    ]
    assert row["event"] == "whats_app_sent"
    assert row["event_text"] == "WhatsApp Sent"
    assert row["user_id"] == "ext-1" and row["anonymous_id"] == "braze-1"
    assert str(row["timestamp"]) == "2034-06-14 09:48:24"
    assert str(row["original_timestamp"]) == "2034-06-14 09:48:20"
    assert str(row["sent_at"]) == "2034-06-14 09:50:00"
    assert row["received_at"] is not None and row["uuid_ts"] is not None
    assert row["context_traits_phone"] == "+15550100"
    assert row["context_library_name"] == "cs" and row["context_library_version"] == "1"
    assert "campaign_id" not in cols  # properties only in the per-event table
    event_row = con.execute(
        "SELECT * FROM braze_prod.whats_app_sent WHERE id = ?", [mid]
    ).fetchall()
    ecols = [d[0] for d in con.description]
    erow = dict(zip(ecols, event_row[0], strict=True))
    assert erow["campaign_id"] == "camp-9"
    assert erow["message_variation_id"] == "mv-1"
    assert erow["nested_inner_key"] == 3
    assert orjson.loads(erow["tags"]) == ["a", "b"]
    assert erow["is_control"] is True
    assert erow["id"] == mid and erow["property_id"] == "collides-with-a-column"
    assert erow["context_traits_phone"] == "+15550100"


def test_top_level_context_applies_to_every_item(emu):
    mid = new_id()
    item = track(mid)
    del item["context"]
    body = orjson.dumps({"batch": [item], "context": {"library": {"name": "top"}}})
    assert post(emu.url, body=body).status_code == 200
    emu.flush()
    rows = [r for r in read_table(emu.store_dir, "braze_prod", "tracks") if r["id"] == mid]
    assert rows[0]["context_library_name"] == "top"


# -- limits ------------------------------------------------------------------------------------


def test_event_over_32kb_rejects_the_request(emu):
    small, big = new_id(), new_id()
    huge = track(big, properties={"blob": "x" * (32 * 1024)})
    response = post(emu.url, [track(small), huge])
    assert response.status_code == 400
    assert "32 KB" in response.json()["message"]
    emu.flush()
    kept = kept_ids(emu.store_dir, "braze_prod")
    assert small not in kept and big not in kept
    assert emu.stats()["requests_rejected"]["event_too_large"] >= 1


def test_request_over_500kb_is_400(emu):
    events = [track(properties={"pad": "y" * 20_000}) for _ in range(26)]  # ~520 KB, each < 32 KB
    response = post(emu.url, events)
    assert response.status_code == 400
    assert "500 KB" in response.json()["message"]
    # The limit is on the JSON, so a gzip body that inflates beyond it is refused as well,
    # without inflating all of it (20 MB of blanks compress to about 20 KB).
    assert post(emu.url, events, gzipped=True).status_code == 400
    bomb = gzip.compress(b'{"batch": [' + b" " * (20 * 1024 * 1024) + b"]}", 9)
    response = post(emu.url, body=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400 and response.json()["code"] == "request_too_large"
    emu.flush()
    kept = set(kept_ids(emu.store_dir, "braze_prod"))
    assert not kept & {e["messageId"] for e in events}


def test_invalid_json_and_bad_gzip_are_400(emu):
    before = emu.stats()["requests_rejected"]
    assert post(emu.url, body=b'{"batch": [').status_code == 400
    assert post(emu.url, body=b"not gzip", headers={"Content-Encoding": "gzip"}).status_code == 400
    after = emu.stats()["requests_rejected"]
    assert after.get("invalid_json", 0) == before.get("invalid_json", 0) + 1
    assert after.get("invalid_gzip", 0) == before.get("invalid_gzip", 0) + 1


def test_over_2500_events_is_200_and_all_dropped(emu):
    # Small events: 2,501 of them must fit in 500 KB to reach the count rule.
    events = [
        {"type": "track", "messageId": new_id("big"), "event": "Email Sent", "userId": "u"}
        for _ in range(2501)
    ]
    response = post(emu.url, events, gzipped=True)
    assert response.status_code == 200
    emu.flush()
    ids = {e["messageId"] for e in events}
    rows = [r for r in dropped(emu.store_dir, reason="over_batch_limit") if r["message_id"] in ids]
    assert len(rows) == 2501
    assert {r["workspace"] for r in rows} == {"acme-us"}
    assert not ids & set(kept_ids(emu.store_dir, "braze_prod"))
    # Exactly 2,500 is within the limit.
    ok = [{**e, "messageId": new_id("ok")} for e in events[:2500]]
    assert post(emu.url, ok, gzipped=True).status_code == 200
    emu.flush()
    assert {e["messageId"] for e in ok} <= set(kept_ids(emu.store_dir, "braze_prod"))


def test_per_event_rules_drop_and_record(emu):
    long_id = "x" * 101
    ok_id_100 = "y" * 99 + str(uuid.uuid4().int % 10)
    no_identity = track(new_id())
    del no_identity["userId"], no_identity["anonymousId"]
    no_name = track(new_id())
    del no_name["event"]
    identify = {"type": "identify", "messageId": new_id(), "userId": "u"}
    response = post(emu.url, [track(long_id), track(ok_id_100), no_identity, no_name, identify])
    assert response.status_code == 200
    emu.flush()
    assert dropped(emu.store_dir, message_id=long_id)[0]["reason"] == "message_id_too_long"
    assert ok_id_100 in kept_ids(emu.store_dir, "braze_prod")
    reasons = {
        no_identity["messageId"]: "missing_identity",
        no_name["messageId"]: "missing_event_name",
        identify["messageId"]: "not_track_call",
    }
    for mid, reason in reasons.items():
        rows = dropped(emu.store_dir, message_id=mid)
        assert [r["reason"] for r in rows] == [reason], mid


# -- keys and regions ----------------------------------------------------------------------------


def test_unknown_and_revoked_keys_get_200_and_are_dropped(emu):
    unknown, revoked = new_id(), new_id()
    assert post(emu.url, [track(unknown)], key="wk-nobody-knows-this").status_code == 200
    assert post(emu.url, [track(revoked)], key=KEY_REVOKED).status_code == 200
    emu.flush()
    (u,) = dropped(emu.store_dir, message_id=unknown)
    assert u["reason"] == "unknown_write_key" and u["workspace"] is None
    assert u["write_key_fingerprint"] == fingerprint("wk-nobody-knows-this")
    (r,) = dropped(emu.store_dir, message_id=revoked)
    assert (r["reason"], r["workspace"], r["source"]) == (
        "revoked_write_key",
        "acme-us",
        "braze_revoked",
    )
    assert "braze_revoked" not in store_tables(emu.store_dir)


def test_revoked_window_uses_event_timestamp(emu):
    inside, before, after = new_id(), new_id(), new_id()
    events = [
        track(inside, timestamp="2034-06-14T03:00:00Z"),
        track(before, timestamp="2034-06-13T23:59:59Z"),
        track(after, timestamp="2034-06-14T06:00:00Z"),  # the window's end is exclusive
    ]
    assert post(emu.url, events, key=KEY_WINDOW).status_code == 200
    emu.flush()
    assert [r["reason"] for r in dropped(emu.store_dir, message_id=inside)] == ["revoked_write_key"]
    assert sorted(kept_ids(emu.store_dir, "braze_window")) == sorted([before, after])


def test_wrong_region_both_ways(emu):
    us_at_eu, eu_at_us, eu_at_eu = new_id(), new_id(), new_id()
    response = post(emu.eu_url, [track(us_at_eu)], key=KEY_PROD)
    assert response.status_code == 401
    assert post(emu.url, [track(eu_at_us)], key=KEY_EU).status_code == 200
    assert post(emu.eu_url, [track(eu_at_eu)], key=KEY_EU).status_code == 200
    emu.flush()
    assert us_at_eu not in kept_ids(emu.store_dir, "braze_prod")
    assert dropped(emu.store_dir, message_id=us_at_eu) == []  # rejected, so not "dropped"
    (row,) = dropped(emu.store_dir, message_id=eu_at_us)
    assert (row["reason"], row["workspace"]) == ("wrong_region", "acme-eu")
    assert kept_ids(emu.store_dir, "braze_eu").count(eu_at_eu) == 1
    assert eu_at_us not in kept_ids(emu.store_dir, "braze_eu")
    assert emu.stats()["requests_rejected"]["us_key_at_eu_host"] >= 1


def test_dedupe_is_across_workspaces(emu):
    mid = new_id("dup")
    assert post(emu.url, [track(mid)], key=KEY_PROD).status_code == 200
    assert post(emu.url, [track(mid)], key=KEY_OTHER_WS).status_code == 200
    assert post(emu.url, [track(mid)], key=KEY_PROD).status_code == 200
    emu.flush()
    assert kept_ids(emu.store_dir, "braze_prod").count(mid) == 1
    assert mid not in kept_ids(emu.store_dir, "braze_other")
    rows = dropped(emu.store_dir, message_id=mid)
    assert sorted((r["reason"], r["workspace"], r["source"]) for r in rows) == [
        ("deduplicated", "acme-us", "braze_prod"),
        ("deduplicated", "acme-us-2", "braze_other"),
    ]


def test_secrets_never_in_stats_or_log(emu):
    document = orjson.dumps(emu.stats()).decode()
    log_text = emu.log_path.read_text()
    for secret in (KEY_PROD, KEY_EU, KEY_REVOKED, TOKEN, TOKEN_EU):
        assert secret not in document and secret not in log_text
    assert fingerprint(KEY_PROD) in document


# -- /events/volume ------------------------------------------------------------------------------


def volume(emu, token: str = TOKEN, **params: Any) -> requests.Response:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    base = {
        "granularity": "DAY",
        "startTime": (today - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "endTime": (today + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return requests.get(
        emu.url + "/events/volume",
        params={**base, **params},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_events_volume_counts_grouping_and_paging(emu):
    sent = {"Email Sent": 5, "Email Opened": 3, "SMS Sent": 2}
    events = [track(event=name) for name, n in sent.items() for _ in range(n)]
    assert post(emu.url, events, key=KEY_VOLUME).status_code == 200
    # Counts are by received day: one bucket per day of the range, the total in today's.
    response = volume(emu, groupBy="eventName", sourceId="src_volume")
    assert response.status_code == 200
    data = response.json()["data"]
    totals = {r["eventName"]: r["total"] for r in data["result"]}
    assert totals == sent
    assert [r["eventName"] for r in data["result"]] == ["Email Sent", "Email Opened", "SMS Sent"]
    assert data["pagination"]["totalEntries"] == 3
    first = data["result"][0]
    assert sum(p["count"] for p in first["series"]) == 5

    # Paging: two per page, the cursor walks the rest.
    page1 = volume(
        emu, groupBy=["eventName", "source"], sourceId="src_volume", **{"pagination.count": 2}
    ).json()["data"]
    assert len(page1["result"]) == 2 and "next" in page1["pagination"]
    assert page1["result"][0]["source"]["id"] == "src_volume"
    page2 = volume(
        emu,
        groupBy=["eventName", "source"],
        sourceId="src_volume",
        **{"pagination.count": 2, "pagination.cursor": page1["pagination"]["next"]},
    ).json()["data"]
    assert [r["eventName"] for r in page2["result"]] == ["SMS Sent"]
    assert "next" not in page2["pagination"]

    # Filters and types.
    only = volume(emu, sourceId="src_volume", eventName="SMS Sent").json()["data"]["result"]
    assert [r["total"] for r in only] == [2]
    by_type = volume(emu, groupBy="eventType", sourceId="src_volume").json()["data"]["result"]
    assert by_type == [{"eventType": "track", "total": 10, "series": by_type[0]["series"]}]


def test_events_volume_auth_scope_and_validation(emu):
    eu_id = new_id()
    post(emu.eu_url, [track(eu_id, event="Canvas Entered")], key=KEY_EU)
    assert volume(emu, token="wrong").status_code == 401
    eu = volume(emu, token=TOKEN_EU, groupBy="source").json()["data"]["result"]
    assert {r["source"]["slug"] for r in eu} == {"braze_eu"}
    assert volume(emu, granularity="WEEK").status_code == 422
    assert volume(emu, startTime="2020-01-01T00:30:00Z", granularity="HOUR").status_code == 422
    hourly = volume(
        emu,
        token=TOKEN_EU,
        granularity="HOUR",
        startTime="2030-01-01T00:00:00Z",
        endTime="2030-01-01T03:00:00Z",
    ).json()["data"]["result"]
    assert [p["count"] for p in hourly[0]["series"]] == [0, 0, 0]  # nothing received then


def test_public_api_rate_limit_60_per_minute(emu):
    statuses = [volume(emu, token=TOKEN_RATE).status_code for _ in range(61)]
    assert statuses[:60] == [200] * 60
    assert statuses[60] == 429
    limited = volume(emu, token=TOKEN_RATE)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert "X-RateLimit-Reset" in limited.headers
    assert volume(emu, token=TOKEN).status_code == 200  # limits are per token


# -- faults --------------------------------------------------------------------------------------

FAULTS = {
    "rate_limit_every": 4,
    "error_5xx_rate": 0.2,
    "drop_connection_before_processing_rate": 0.1,
    "drop_connection_rate": 0.1,
    "silent_loss_rate": 0.2,
    "duplicate_delivery_rate": 0.15,
    "seed": 11,
}


def _run_fault_script(url: str, tag: str) -> tuple[list[str], dict[str, list[str]]]:
    """40 sequential requests of 5 events; the outcome of each and the ids per outcome."""
    outcomes: list[str] = []
    ids: dict[str, list[str]] = {}
    for i in range(40):
        events = [track(f"{tag}-{i}-{j}") for j in range(5)]
        try:
            response = post(url, events, headers={"Connection": "close"})
            outcome = str(response.status_code)
            if response.status_code == 429:
                assert response.headers["Retry-After"] == "1"
                assert int(response.headers["X-RateLimit-Reset"]) > 0
        except requests.ConnectionError:
            outcome = "dropped"
        outcomes.append(outcome)
        ids.setdefault(outcome, []).extend(e["messageId"] for e in events)
    return outcomes, ids


def test_faults_are_exact_and_deterministic(tmp_path):
    runs = []
    for run in range(2):
        store = tmp_path / f"store{run}"
        with running_emulator(CONFIG, store, faults=FAULTS) as emu:
            outcomes, ids = _run_fault_script(emu.url, "f")
            emu.flush()
            stats = emu.stats()
        runs.append(outcomes)
        injected = stats["faults_injected"]
        assert outcomes.count("429") == 10 == injected["rate_limited"]  # every 4th of 40
        for status in ("500", "502", "503"):
            assert outcomes.count(status) == injected.get(f"error_{status}", 0)
        assert outcomes.count("dropped") == injected.get(
            "dropped_connection_before_processing", 0
        ) + injected.get("dropped_connection_after_processing", 0)
        assert injected.get("dropped_connection_before_processing", 0) > 0
        assert injected.get("dropped_connection_after_processing", 0) > 0
        # What the store holds is exactly what the emulator says it kept, lost and duplicated.
        tracks = kept_ids(store, "braze_prod")
        lost = [r["message_id"] for r in dropped(store, reason="injected_loss")]
        duplicated = read_table(store, "_emulator", "duplicated")
        assert len(lost) == injected["silent_loss"] > 0
        assert len(duplicated) == injected["duplicate_delivery"] > 0
        assert len(tracks) == stats["events_kept"] + len(duplicated)
        assert len(set(tracks)) == stats["events_kept"]
        assert {d["message_id"] for d in duplicated} <= set(tracks)
        assert all(tracks.count(d["message_id"]) == 2 for d in duplicated)
        # 200s were answered after processing; a drop after processing still kept its events.
        processed = set(ids.get("200", []))
        after_drops = injected["dropped_connection_after_processing"]
        assert processed <= set(tracks) | set(lost)
        assert len(set(tracks) | set(lost)) == len(processed) + 5 * after_drops
        assert not set(tracks) & set(ids.get("429", []) + ids.get("500", []))
    assert runs[0] == runs[1]  # same seed, same answers


def test_slow_shutdown_flush_restart_and_window_expiry(tmp_path):
    store = tmp_path / "store"
    config = {**CONFIG, "dedupe_window_hours": 1}
    mid = new_id("restart")
    with running_emulator(config, store, faults={"slow_ms": 150}) as emu:
        response = post(emu.url, [track(mid)])
        assert response.status_code == 200
        assert response.elapsed.total_seconds() >= 0.15
        assert emu.stats()["buffered_rows"] == 1
    # No flush was asked: the shutdown wrote it.
    assert kept_ids(store, "braze_prod") == [mid]
    with running_emulator(config, store) as emu:
        assert emu.stats()["restored_message_ids"] == 1
        assert post(emu.url, [track(mid)]).status_code == 200
        # Volumes survive the restart too (counted once, by received day).
        today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
        window = {"granularity": "DAY", "startTime": today, "endTime": tomorrow}
        assert [r["total"] for r in emu.events_volume(TOKEN, **window)["data"]["result"]] == [1]
        emu.advance_clock(3601)
        assert post(emu.url, [track(mid)]).status_code == 200
        emu.flush()
        stats = emu.stats()
    assert stats["events_dropped"] == {"deduplicated": 1}
    assert kept_ids(store, "braze_prod") == [mid, mid]  # kept again after the window
    assert [r["reason"] for r in dropped(store, message_id=mid)] == ["deduplicated"]


def test_official_segment_client_is_accepted(emu):
    from segment.analytics import Client

    errors: list[Exception] = []
    client = Client(
        KEY_VOLUME,
        host=emu.url,
        gzip=True,
        sync_mode=True,
        on_error=lambda exc, batch: errors.append(exc),
    )
    ids = [new_id("sdk") for _ in range(5)]
    for mid in ids:
        client.track(
            user_id="ext-sdk",
            event="Canvas Entered",
            properties={"canvasId": "cv-1"},
            message_id=mid,
            timestamp=datetime(2034, 6, 14, 9, 48, 24, tzinfo=UTC),
        )
    # sync_mode sent each call already (and 2.4.0's shutdown() fails in sync_mode).
    assert errors == []
    emu.flush()
    rows = [
        r for r in read_table(emu.store_dir, "braze_volume", "canvas_entered") if r["id"] in ids
    ]
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert {r["canvas_id"] for r in rows} == {"cv-1"}
    assert {str(r["timestamp"]) for r in rows} == {"2034-06-14 09:48:24"}
    assert {r["context_library_name"] for r in rows} == {"analytics-python"}


def test_error_bodies_carry_code_and_message(emu):
    body = post(emu.url, body=b"{").json()
    assert body == {"success": False, "code": "invalid_json", "message": "invalid JSON"}


def test_mixed_and_null_values_in_one_flush(emu):
    a, b = new_id(), new_id()
    first = track(
        a, event="Email Bounced", anonymousId=None, properties={"mixed": 5, "empty": None}
    )
    second = track(b, event="Email Bounced", properties={"mixed": "text", "empty": None})
    assert post(emu.url, [first, second]).status_code == 200
    emu.flush()
    rows = rows_by_id(emu.store_dir, "email_bounced", a, b)
    assert rows[a]["mixed"] == "5" and rows[b]["mixed"] == "text"
    assert rows[a]["empty"] is None and rows[a]["anonymous_id"] is None
    assert rows[b]["anonymous_id"] == "braze-1"
    tracks = {r["id"] for r in read_table(emu.store_dir, "braze_prod", "tracks")}
    assert {a, b} <= tracks


def test_timer_flush_and_fault_flags_override_config(tmp_path):
    config = {**CONFIG, "flush_interval_seconds": 0.2, "faults": {"slow_ms": 5, "seed": 1}}
    mid = new_id("timer")
    with running_emulator(config, tmp_path / "store", faults={"slow_ms": 0}) as emu:
        assert emu.stats()["faults"]["slow_ms"] == 0  # the flag wins over the file
        assert emu.stats()["faults"]["seed"] == 1  # the rest of the file's faults stay
        assert post(emu.url, [track(mid)]).status_code == 200
        for _ in range(100):  # no flush asked: the timer writes it
            # Wait for `tracks` itself: another table of the source may land first.
            if "tracks" in store_tables(emu.store_dir).get("braze_prod", []):
                break
            time.sleep(0.1)
        assert kept_ids(emu.store_dir, "braze_prod") == [mid]


def test_keys_that_flatten_to_one_name_keep_the_last_value(emu):
    a, b = new_id(), new_id()
    # "sendId" and "send_id" are both send_id once snake_cased; a row of another shape shares
    # the table, so the colliding shape is padded and aligned with it.
    first = track(a, event="Email Bounced", properties={"sendId": "x", "send_id": "y", "n": 1})
    second = track(b, event="Email Bounced", properties={"n": 2, "other": "z"})
    assert post(emu.url, [first, second]).status_code == 200
    emu.flush()
    rows = rows_by_id(emu.store_dir, "email_bounced", a, b)
    assert (rows[a]["send_id"], rows[a]["n"], rows[a]["other"]) == ("y", 1, None)
    assert (rows[b]["send_id"], rows[b]["n"], rows[b]["other"]) == (None, 2, "z")


def test_a_failed_flush_puts_rows_back_in_order_and_rescue_writes_them_whole(tmp_path):
    from currents_segment.emulator_store import PendingWrites, StoreWriter

    def keep(pending: PendingWrites, mid: str, event: str = "Email Sent", **props: Any) -> None:
        call = track(mid, event=event, properties=props)
        pending.keep("braze_prod", event, orjson.dumps(call), mid, 1, None)

    failed = PendingWrites()
    keep(failed, "m1", a=1)
    failed.dropped.append({"message_id": "d1", "reason": "deduplicated"})
    meanwhile = PendingWrites()
    keep(meanwhile, "m2", a=2)
    keep(meanwhile, "m3", "Email Bounced", b="x")
    meanwhile.put_back(failed)
    assert len(meanwhile) == 4 and meanwhile.kept_rows == 3
    # The failed flush's rows come first.
    assert {key: group.mids for key, group in meanwhile.kept.items()} == {
        ("braze_prod", "Email Sent"): ["m1", "m2"],
        ("braze_prod", "Email Bounced"): ["m3"],
    }
    path = StoreWriter(tmp_path / "store").rescue(meanwhile)
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    event_us = int(datetime(2034, 6, 14, 9, 48, 24, tzinfo=UTC).timestamp() * 1_000_000)
    assert lines[0] == {
        "table": "kept",
        "source": "braze_prod",
        "row": {
            "id": "m1",
            "anonymous_id": "braze-1",
            "user_id": "ext-1",
            "event": "email_sent",
            "event_text": "Email Sent",
            "received_at": 1,
            "sent_at": None,
            "timestamp": event_us,
            "original_timestamp": event_us,
            "context_traits_email": "a@example.com",
            "context_device_model": "Pixel 8",
        },
        "properties": {"a": 1},
    }
    assert [line.get("row", {}).get("id") for line in lines[:3]] == ["m1", "m2", "m3"]
    assert lines[3] == {"table": "dropped", "row": {"message_id": "d1", "reason": "deduplicated"}}
    # The next flush writes them all.
    assert StoreWriter(tmp_path / "store").write(meanwhile) == {
        "braze_prod.email_sent": 2,
        "braze_prod.email_bounced": 1,
        "braze_prod.tracks": 3,
        "_emulator.dropped": 1,
    }


def _stored(store: Path) -> dict[str, list[dict]]:
    """Every stored table's rows by id order, without the columns that depend on the clock."""
    out = {}
    for schema, tables in store_tables(store).items():
        for table in tables:
            rows = read_table(store, schema, table)
            for row in rows:
                for column in ("received_at", "uuid_ts"):
                    row.pop(column, None)
            out[f"{schema}.{table}"] = sorted(rows, key=lambda r: str(r.get("id")))
    return out


def test_forked_and_threaded_flushes_store_the_same_rows(tmp_path):
    calls = [
        track("same-1", event="Email Sent"),
        track(
            "same-2",
            event="WhatsApp Sent",
            context={"traits": {}, "device": {"model": "Pixel 8"}, "ip": "10.0.0.1"},
            properties={"nested": {"innerKey": 3}, "tags": ["a"], "id": "x", "n": 1.5},
        ),
        track("same-3", event="Email Sent", properties={"campaignId": 7, "extra": None}),
        track("same-4", event="Email Sent", context={}, properties={}),
    ]
    stored = {}
    for in_child in (True, False):
        store = tmp_path / f"store-{in_child}"
        with running_emulator({**CONFIG, "flush_in_child_process": in_child}, store) as emu:
            assert post(emu.url, calls).status_code == 200
            written = emu.flush()
            assert written == {
                "braze_prod.email_sent": 3,
                "braze_prod.whats_app_sent": 1,
                "braze_prod.tracks": 4,
            }
            assert emu.stats()["rows_written"] == 8
        stored[in_child] = _stored(store)
    assert stored[True] == stored[False]
    assert [r["id"] for r in stored[True]["braze_prod.tracks"]] == [
        "same-1",
        "same-2",
        "same-3",
        "same-4",
    ]


def test_a_failed_forked_flush_keeps_the_rows_for_the_next_one(tmp_path):
    store = tmp_path / "store"
    with running_emulator(CONFIG, store) as emu:
        ids = [new_id() for _ in range(3)]
        assert post(emu.url, [track(mid) for mid in ids]).status_code == 200
        # A file where the child must create the table's folder: its write fails.
        blocker = store / "braze_prod" / "email_link_clicked"
        blocker.parent.mkdir(parents=True)
        blocker.write_text("not a folder")
        with pytest.raises(EmulatorError, match="HTTP 500"):
            emu.flush()
        stats = emu.stats()
        assert stats["flush_errors"] == 1 and stats["buffered_rows"] == 3
        assert "child process" in emu.log_path.read_text()
        blocker.unlink()
        assert emu.flush() == {"braze_prod.email_link_clicked": 3, "braze_prod.tracks": 3}
    assert sorted(kept_ids(store, "braze_prod")) == sorted(ids)
    assert sorted(kept_ids(store, "braze_prod", "email_link_clicked")) == sorted(ids)


def test_a_stop_during_a_timer_flush_waits_for_its_writer(tmp_path):
    # A 20 ms timer: some flush is writing whenever the stop comes. The stopped emulator must
    # have stored everything (the timer's forked writer is waited for, not left running).
    store = tmp_path / "store"
    config = {**CONFIG, "flush_interval_seconds": 0.02}
    ids: list[str] = []
    with running_emulator(config, store) as emu:
        for _ in range(20):
            batch = [track(new_id()) for _ in range(500)]
            ids += [call["messageId"] for call in batch]
            assert post(emu.url, batch).status_code == 200
    assert emu.process.returncode == 0
    assert sorted(kept_ids(store, "braze_prod")) == sorted(ids)
    assert len(kept_ids(store, "braze_prod", "email_link_clicked")) == len(ids)


# -- the store's two ways to type a group of calls ------------------------------------------


def _columns_both_ways(calls: list[dict[str, Any]], event: str = "Email Sent") -> tuple:
    """(bulk, row by row) columns of one group of calls; bulk is None where it declines."""
    from currents_segment import emulator_store as store

    group = store.KeptEvents()
    for i, call in enumerate(calls):
        call = {**call, "event": event}  # a group holds the calls of one event name
        group.add(orjson.dumps(call), f"m-{i}", 1_700_000_000_000_000 + i, None if i % 3 else 7)
    bulk = store._json_columns(event, group)
    shapes: dict = {}
    rows = zip(group.events(), group.mids, group.received, group.sent, strict=True)
    for call, mid, now, sent_at in rows:
        shape, values = store.kept_row("src", mid, snakecase(event), call, now, sent_at, None)
        shapes.setdefault(shape, []).append(values)
    by_rows = store._event_columns(list(shapes.items()), all_none_typed=False)[0]

    def table(columns: dict) -> dict:
        columns = store._null_as_text(columns)
        return {name: (str(a.type), a.to_pylist()) for name, a in sorted(columns.items())}

    return (None if bulk is None else table(bulk)), table(by_rows)


def _rows_in_id_order(table: dict) -> dict:
    """Row-by-row columns come grouped by shape: put them back in call order (by id)."""
    order = sorted(range(len(table["id"][1])), key=lambda i: int(table["id"][1][i][2:]))
    return {name: (kind, [values[i] for i in order]) for name, (kind, values) in table.items()}


def test_bulk_typing_of_braze_shaped_calls_equals_the_row_by_row_rules():
    import random

    rng = random.Random(4)
    calls = []
    for i in range(300):
        props: dict[str, Any] = {"campaign_id": f"c-{i % 7}", "send_id": f"s{i}"}
        if i % 2:
            props["conversion_behavior_index"] = i % 5
        if i % 5 == 0:
            props["media_urls"] = [f"https://x.example/{i}", "https://y.example"]
        if i % 11 == 0:
            props["ratio"] = 0.5 if i % 2 else 3  # int and float: DOUBLE
        if i % 13 == 0:
            props["in_control_group"] = bool(i % 2)
        if i % 17 == 0:
            props["nothing"] = None
        device = {"model": "Pixel 8", "type": "android"} if rng.random() < 0.6 else {}
        call = track(
            new_id(),
            context={"device": device, "traits": {"email": f"u{i}@example.com"} if i % 4 else {}},
            properties=props,
            timestamp=f"2026-11-01T{i % 24:02d}:{i % 60:02d}:0{i % 10}.{i:03d}Z",
        )
        if i % 9 == 0:
            call["userId"] = None
        calls.append(call)
    bulk, by_rows = _columns_both_ways(calls)
    assert bulk is not None, "Braze-shaped calls take the bulk path"
    assert bulk == _rows_in_id_order(by_rows)


@pytest.mark.parametrize(
    ("properties", "bulk"),
    [
        ([{"a": 1}, {"a": "x"}], False),  # int and text: text, value by value
        ([{"a": True}, {"a": 1}], False),  # bool and int: text
        ([{"a": {"b": 1}}, {"a": "x"}], False),  # object and text
        ([{"a": None}, {"a": {"b": 1}}], False),  # a null object makes a column of its own
        ([{"a": {"b": 1}}, {}], False),  # an object missing in a call makes none
        ([{"sendId": "x", "send_id": "y"}], False),  # two keys, one column: the last wins
        ([{"a": [1, "x"]}], False),  # an array of mixed types
        ([{"a": 2**63}, {"a": 1}], False),  # an integer beyond int64: text
        ([{"a": "2026-11-01T00:00:00Z"}], False),  # an ISO time the reader would type
        ([{"a": "2026-11-01"}], False),
        ([{"a": [1, 2.5]}, {"a": [{"x": 1}, {"y": "z"}]}], False),
        ([{"a": [1, 2.5]}, {"a": []}], True),  # arrays: their own JSON text
        ([{"reason": 5, "source": True, "id": 1, "context_x": 2, "uuid_ts": 3}], True),
        ([{"a": 1.5}, {"a": 7}], True),  # int and float: DOUBLE
        ([{"e": {}}, {"e": {}}], True),  # empty objects: no column
        ([{}, {"x": None}], True),  # a key with null only: a text column
        ([{"n": {"k": 1, "m": {"z": "a"}}}, {"n": {"k": 2, "m": {}}}], True),
        (["not an object", {"a": 1}], False),  # object and text
        (["not an object", "nor this"], True),  # no object: no column
    ],
)
def test_bulk_typing_declines_or_equals_the_row_by_row_rules(properties, bulk):
    calls = [track(new_id(), properties=p) for p in properties]
    from_json, by_rows = _columns_both_ways(calls)
    assert (from_json is not None) == bulk
    if from_json is not None:
        assert from_json == _rows_in_id_order(by_rows)


def test_bulk_typing_reads_odd_contexts_and_ids_as_the_row_by_row_rules():
    calls = [
        track(new_id(), context=["not", "an", "object"]),
        track(new_id(), context=None, userId=None),
        track(new_id(), context={"library": {"name": "x", "version": "1"}}, anonymousId=None),
    ]
    from_json, by_rows = _columns_both_ways(calls)
    assert from_json is None  # a list and objects: row by row
    from_json, by_rows = _columns_both_ways(calls[1:])
    assert from_json == _rows_in_id_order(by_rows)
    numeric_ids = [track(new_id(), userId=5), track(new_id(), userId="u")]
    assert _columns_both_ways(numeric_ids)[0] is None  # str(5), row by row


def test_bulk_times_equal_the_row_by_row_rules():
    calls = [
        track(new_id(), timestamp="2026-11-01T17:31:48Z"),
        track(new_id(), timestamp="2026-11-01T17:31:48.5Z"),
        track(new_id(), timestamp="2026-11-01 17:31:48+02:00"),
        track(new_id(), timestamp=None, originalTimestamp="2026-11-01T17:00:00Z"),
        track(new_id(), timestamp="2026-02-30T00:00:00Z"),  # no such day: the receive time
        track(new_id(), timestamp=None),
    ]
    for group in (calls[:2], calls):
        bulk, by_rows = _columns_both_ways(group)
        assert bulk is not None
        assert bulk == _rows_in_id_order(by_rows)
