"""The catalogue agrees with Braze's published schemas, so a drift is caught."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import REPO, SCHEMAS
from currents_segment import catalogue

DOMAIN_TYPES = 50  # the supported list in shared/domain/currents.md
EXTRA_TYPES = {"users.messages.sms.CarrierSend"}


def test_catalogue_lists_the_supported_types():
    types = catalogue.load()
    assert len(types) == DOMAIN_TYPES + len(EXTRA_TYPES)
    assert set(types) >= EXTRA_TYPES
    families = {t.family for t in types.values()}
    assert families == {
        "behaviors", "campaigns", "canvas", "content_cards", "email", "in_app_messages",
        "push", "sms", "webhook", "whatsapp",
    }  # fmt: skip
    names = [t.segment_event for t in types.values()]
    assert len(set(names)) == len(names), "two types share a Segment event name"


@pytest.mark.parametrize("event_type", sorted(catalogue.load()))
def test_fields_match_the_published_schema(event_type):
    schema_file = SCHEMAS / f"{event_type}.avsc"
    if not schema_file.exists():
        pytest.skip(f"{schema_file} is not there (shared/ missing)")
    schema = json.loads(schema_file.read_text())
    published = {}
    for f in schema["fields"]:
        published[f["name"]] = catalogue.avro_field_type(f["type"])
    event = catalogue.load()[event_type]
    ours = {f.name: (f.type, f.nullable) for f in event.current_fields}
    assert ours == published
    # A removed field must really be gone from the newest schema.
    for f in event.fields:
        if f.lifecycle == "removed":
            assert f.name not in published
            assert f.nullable


def test_mapping_sources_are_fields_of_the_type():
    for event in catalogue.supported():
        names = {f.name for f in event.fields}
        for source in [*event.context_traits.values(), *event.context_device.values()]:
            assert source in names, f"{event.event_type}: mapping names unknown field {source}"
        for source in [*event.property_renames, *event.excluded_properties]:
            assert source in names, f"{event.event_type}: unknown field {source}"


def test_seed_spellings_resolve():
    assert catalogue.resolve("users_campaigns_abort").event_type == "users.campaigns.Abort"
    assert catalogue.resolve("users_canvas_abort").event_type == "users.canvas.Abort"
    assert catalogue.resolve("USERS.MESSAGES.EMAIL.SEND").event_type == "users.messages.email.Send"
    with pytest.raises(catalogue.CatalogueError, match="not a supported"):
        catalogue.resolve("users.behaviors.CustomEvent")


def test_older_segment_spellings_resolve():
    assert catalogue.by_segment_name("Email Unsubscribed").event_type == (
        "users.messages.email.Unsubscribe"
    )
    assert catalogue.by_segment_name("iOS Foreground Push Opened").event_type == (
        "users.messages.pushnotification.IosForeground"
    )
    assert catalogue.by_segment_name("SMS Short Link Clicks").family == "sms"


def test_removed_dispatch_id_is_recorded_for_the_2025_change():
    changed = {
        "users.campaigns.Conversion", "users.campaigns.EnrollInControl",
        "users.messages.contentcard.Click", "users.messages.contentcard.Dismiss",
        "users.messages.contentcard.Impression", "users.messages.contentcard.Send",
        "users.messages.inappmessage.Click", "users.messages.inappmessage.Impression",
    }  # fmt: skip
    with (REPO / "seeds" / "currents_event_fields.csv").open() as fh:
        removed = {r["event_type"] for r in csv.DictReader(fh) if r["lifecycle"] == "removed"}
    assert removed == changed


def test_engagement_metrics_are_known_and_cover_each_messaging_channel():
    metrics = {t.event_type: t.engagement_metric for t in catalogue.supported()}
    allowed = {"", "send", "delivery", "open", "click", "bounce", "unsubscribe", "conversion"}
    assert set(metrics.values()) <= allowed
    assert metrics["users.messages.email.Send"] == "send"
    assert metrics["users.campaigns.Conversion"] == "conversion"
    sends = {t.family for t in catalogue.supported() if t.engagement_metric == "send"}
    assert sends == {"content_cards", "email", "push", "sms", "webhook", "whatsapp"}
