"""``currents-segment generate``: a synthetic Currents export exactly as Braze writes it.

Avro object container files in Braze's key layout
(``<prefix>/dataexport.<cluster>.S3.integration.<id>/event_type=<type>/date=<YYYY-MM-DD-HH>/
<schema_id>/<zone>/dataexport.<cluster>.S3.integration.<id>+<partition>+<offset>.avro``), at most
``max_events_per_file`` records per file, never an empty file, deterministic for a seed, plus
``manifest.json``: the ground truth (exact counts per workspace, type, hour and category) that
tests and reconciliation compare against. See ``docs/generate.md``.

Speed: records are Avro-encoded by hand. Everything that does not change per event (message
context, workspace, user attributes) is encoded once into byte strings; an event is a
``b"".join`` of those pieces with its own id and time, through a join function compiled per
schema. Blocks are framed (and compressed) per file; the header follows the Avro 1.x spec.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from currents_segment import catalogue
from currents_segment.catalogue import EventField

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
CODECS = ("null", "deflate", "snappy")
FILE_KINDS = ("ok", "duplicate_file", "corrupt", "truncated", "unsupported")
CATEGORIES = (
    "records_written",
    "distinct_events",
    "duplicate_records",
    "anonymous",
    "test_events",
    "late",
    "sendable",
    "unsupported",
    "unreadable_records",
)
CONNECTION_TYPE = "S3"
ZONE = "us-01"
FIRST_SCHEMA_ID = 101
PARTITIONS = 3
# Avro's Java writer starts a new block every ~64 KB (its default sync interval).
BLOCK_BYTES = 64_000
DATE_HOUR_FORMAT = "%Y-%m-%d-%H"
# Braze's placeholder id (its samples and "Send Test Events" use it for every *_id).
PLACEHOLDER_UUID = "f47ac10b-58cc-4372-a567-0e02b2c3d479"

# Types outside the catalogue that reach real exports (fields as in Braze's published schemas):
# ingest must land and count them even though nothing sends them.
UNSUPPORTED_TYPES: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "users.behaviors.CustomEvent": (
        ("id", "string", False),
        ("user_id", "string", False),
        ("external_user_id", "string", True),
        ("app_id", "string", True),
        ("time", "int", False),
        ("timezone", "string", True),
        ("platform", "string", True),
        ("os_version", "string", True),
        ("device_model", "string", True),
        ("device_id", "string", True),
        ("name", "string", False),
        ("properties", "string", False),
        ("ad_id", "string", True),
        ("ad_id_type", "string", True),
        ("ad_tracking_enabled", "boolean", True),
        ("app_group_id", "string", True),
    ),
    "users.behaviors.app.SessionStart": (
        ("id", "string", False),
        ("user_id", "string", False),
        ("external_user_id", "string", True),
        ("app_id", "string", False),
        ("time", "int", False),
        ("session_id", "string", False),
        ("platform", "string", True),
        ("os_version", "string", True),
        ("device_model", "string", True),
        ("device_id", "string", True),
        ("app_group_id", "string", True),
    ),
}

# Fields that describe the user (or their device): encoded once per user, shared by every type.
USER_FIELDS: dict[str, str] = {
    "user_id": "string",
    "external_user_id": "string",
    "email_address": "string",
    "timezone": "string",
    "platform": "string",
    "os_version": "string",
    "device_model": "string",
    "device_id": "string",
    "to_phone_number": "string",
    "user_phone_number": "string",
    "phone_number": "string",
    "push_token": "string",
    "ad_id": "string",
    "ad_id_type": "string",
    "ad_tracking_enabled": "boolean",
}
_USER_INDEX = {name: i for i, name in enumerate(USER_FIELDS)}
_USER_FIELD_SPECS = tuple(EventField(n, t, True, 0, "current") for n, t in USER_FIELDS.items())
# Never dropped from an "older" schema: the marts and reconciliation key on them.
_CORE_FIELDS = {"id", "user_id", "external_user_id", "time", "timezone", "app_group_id"}


class GenerateError(ValueError):
    """Options that cannot produce an export; the message names the option at fault."""


@dataclass
class GenerateOptions:
    events: int = 10_000  # distinct events of supported types (before knobs add extras)
    seed: int = 0
    workspaces: int = 1  # Braze app_group_ids (24-hex ids, deterministic from seed)
    integrations: int = 1  # Currents integrations per workspace; types are split between them
    days: int = 1
    start: str = "2026-11-01"  # first date= day (UTC)
    event_types: list[str] | None = None  # default: every supported type in the catalogue
    cluster: str = "prod-01"
    prefix: str = "currents"
    codec: str = "null"  # null | deflate | snappy | mixed
    max_events_per_file: int = 15_000
    duplicate_record_rate: float = 0.0  # share of events written twice (at-least-once)
    duplicate_files: int = 0  # whole files written again under another offset
    anonymous_rate: float = 0.0  # share without external_user_id
    late_rate: float = 0.0  # share whose `time` is hours/days before its date= hour
    schema_versions: bool = False  # older files (no newer optional fields; removed dispatch_id)
    test_events: int = 0  # Braze "Send Test Events" placeholders (UUID-like timezone)
    unsupported_events: int = 0  # events of types outside the catalogue
    corrupt_files: int = 0
    truncated_files: int = 0
    zone: str = ZONE


def all_knobs_on(events: int = 5_000, seed: int = 0) -> GenerateOptions:
    """Every knob on, small: the export tests and end-to-end scenarios start from."""
    return GenerateOptions(
        events=events,
        seed=seed,
        workspaces=2,
        integrations=2,
        days=1,
        codec="mixed",
        duplicate_record_rate=0.02,
        duplicate_files=2,
        anonymous_rate=0.1,
        late_rate=0.05,
        schema_versions=True,
        test_events=12,
        unsupported_events=60,
        corrupt_files=1,
        truncated_files=1,
    )


# --- Avro binary encoding ------------------------------------------------------------------


def _varint(n: int) -> bytes:
    """Avro int/long: zig-zag, then base-128 little-endian."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return _varint(len(raw)) + raw


def _encode_value(ftype: str, value: Any) -> bytes:
    if ftype == "string":
        return _string(value)
    if ftype in ("int", "long"):
        return _varint(int(value))
    if ftype == "boolean":
        return b"\x01" if value else b"\x00"
    if ftype == "float":
        return struct.pack("<f", value)
    if ftype == "double":
        return struct.pack("<d", value)
    if ftype == "array<string>":
        if not value:
            return b"\x00"
        return _varint(len(value)) + b"".join(_string(v) for v in value) + b"\x00"
    raise GenerateError(f"no Avro encoding for field type {ftype!r}")


def _encode_field(f: EventField, value: Any) -> bytes:
    # Braze's optional fields are ["null", T]: branch 0 is null, branch 1 the value.
    if f.nullable:
        return b"\x00" if value is None else b"\x02" + _encode_value(f.type, value)
    if value is None:
        raise GenerateError(f"required field {f.name!r} has no value")
    return _encode_value(f.type, value)


def _avro_type(f: EventField) -> Any:
    base: Any = {"type": "array", "items": "string"} if f.type == "array<string>" else f.type
    return ["null", base] if f.nullable else base


def avro_schema(event_type: str, fields: Sequence[EventField]) -> dict[str, Any]:
    """Braze's writer schema shape: record named after the type's last segment."""
    namespace, _, name = event_type.rpartition(".")
    out_fields = []
    for f in fields:
        entry: dict[str, Any] = {"name": f.name, "type": _avro_type(f)}
        if f.nullable:
            entry["default"] = None
        out_fields.append(entry)
    return {
        "type": "record",
        "name": name,
        "namespace": f"dataexport.S3.inner.{namespace}",
        "fields": out_fields,
    }


def _compress(codec: str, data: bytes) -> bytes:
    if codec == "null":
        return data
    if codec == "deflate":
        c = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw deflate, as the Avro spec says
        return c.compress(data) + c.flush()
    if codec == "snappy":
        import cramjam

        # Avro's snappy framing: raw snappy, then the big-endian CRC32 of the uncompressed data.
        return bytes(cramjam.snappy.compress_raw(data)) + struct.pack(">I", zlib.crc32(data))
    raise GenerateError(f"unknown codec {codec!r}")


def _header(schema_json: bytes, codec: str, sync: bytes) -> bytes:
    meta = [(b"avro.schema", schema_json)]
    if codec != "null":  # Braze's null-codec files carry no avro.codec key; readers default it
        meta.append((b"avro.codec", codec.encode()))
    out = bytearray(b"Obj\x01")
    out += _varint(len(meta))
    for key, value in meta:
        out += _varint(len(key)) + key + _varint(len(value)) + value
    out += b"\x00"
    out += sync
    return bytes(out)


def _blocks(records: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    per_block = max(1, BLOCK_BYTES // max(1, len(records[0])))
    for start in range(0, len(records), per_block):
        yield records[start : start + per_block]


# Garbage that no Avro reader can decode: a string length of 2**31 - 1 at the block's first
# record (every Currents record starts with the string `id`), followed by noise.
_GARBAGE = b"\xfe\xff\xff\xff\x0f" + bytes(range(251, 256)) * 6


def encode_file(
    schema_json: bytes, records: Sequence[bytes], codec: str, sync: bytes, damage: str = "none"
) -> bytes:
    """A complete Avro container file; ``damage`` = ``corrupt`` or ``truncated`` breaks it."""
    out = [_header(schema_json, codec, sync)]
    last_data_start = last_data_len = 0
    size = len(out[0])
    for i, chunk in enumerate(_blocks(records)):
        data = b"".join(chunk)
        if damage == "corrupt" and i == 0:
            data = (_GARBAGE + data[len(_GARBAGE) :])[: max(len(data), len(_GARBAGE))]
        comp = _compress(codec, data)
        head = _varint(len(chunk)) + _varint(len(comp))
        last_data_start, last_data_len = size + len(head), len(comp)
        out.append(head + comp + sync)
        size += len(head) + len(comp) + len(sync)
    blob = b"".join(out)
    if damage == "truncated":
        # Cut strictly inside the last block's data: header intact, block incomplete.
        blob = blob[: last_data_start + max(1, last_data_len // 2)]
    return blob


# --- deterministic ids and plausible values ------------------------------------------------

_M64 = (1 << 64) - 1


def _hex(seed: int, *parts: object, n: int = 24) -> str:
    text = ":".join(str(p) for p in (seed, *parts))
    return hashlib.blake2b(text.encode(), digest_size=(n + 1) // 2).hexdigest()[:n]


def _uuid(seed: int, *parts: object) -> str:
    h = _hex(seed, *parts, n=32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


class _EventIds:
    """Unique UUID-shaped event ids: an odd-multiplier bijection of a counter, so no two events
    (in any file, of any type) share an id unless the generator copies it on purpose."""

    _MUL = 0x9E3779B97F4A7C15
    _MUL2 = 0xBF58476D1CE4E5B9
    _PREFIX = _varint(36)

    def __init__(self, seed: int) -> None:
        self.salt = int(_hex(seed, "event-ids", n=16), 16)
        self.next = 0

    def take(self) -> bytes:
        return self.take_many(1)[0]

    def take_many(self, n: int) -> list[bytes]:
        """The next ``n`` ids, Avro-encoded (length byte + 36 ASCII characters).

        Vectorised: the ids of a whole stream cost one numpy pass instead of per-id formatting.
        """
        import numpy as np

        if n == 0:
            return []
        hex_digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
        counter = np.arange(self.next, self.next + n, dtype=np.uint64)
        self.next += n
        with np.errstate(over="ignore"):  # uint64 products wrap: that is the bijection mod 2**64
            x = (counter ^ np.uint64(self.salt)) * np.uint64(self._MUL)
            y = (x ^ (x >> np.uint64(29))) * np.uint64(self._MUL2)
        shifts = np.arange(60, -4, -4, dtype=np.uint64)
        hx = hex_digits[((x[:, None] >> shifts) & np.uint64(15)).astype(np.uint8)]
        hy = hex_digits[((y[:, None] >> shifts) & np.uint64(15)).astype(np.uint8)]
        out = np.empty((n, 37), dtype=np.uint8)
        out[:, 0] = self._PREFIX[0]
        # 8-4-4-4-12: every nibble of x (so ids are unique), version 4, RFC 4122 variant.
        out[:, 1:9] = hx[:, 0:8]
        out[:, 9] = ord("-")
        out[:, 10:14] = hx[:, 8:12]
        out[:, 14] = ord("-")
        out[:, 15] = ord("4")
        out[:, 16:19] = hx[:, 12:15]
        out[:, 19] = ord("-")
        out[:, 20] = hex_digits[8 + (y >> np.uint64(62)).astype(np.uint8)]
        out[:, 21] = hx[:, 15]
        out[:, 22:24] = hy[:, 0:2]
        out[:, 24] = ord("-")
        out[:, 25:37] = hy[:, 2:14]
        buf = out.tobytes()
        return [buf[i : i + 37] for i in range(0, 37 * n, 37)]


_TIMEZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Madrid",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Africa/Lagos",
)
_FIRST = ("ana", "ben", "chloe", "diego", "emma", "farah", "gus", "hana", "ivan", "jade", "kofi")
_LAST = ("smith", "garcia", "nguyen", "kim", "muller", "rossi", "silva", "okafor", "dubois")
_DOMAINS = ("example.com", "example.org", "mail.example.net", "inbox.example.io")
_DEVICES = {
    "ios": (("iPhone15,2", "17.5.1"), ("iPhone14,5", "16.7.8"), ("iPad13,4", "17.4")),
    "android": (("Pixel 8", "14"), ("SM-S918B", "14"), ("moto g(60)", "12")),
    "web": (("Chrome", "124.0"), ("Safari", "17.4"), ("Firefox", "125.0")),
}
_AD_ID_TYPES = {"ios": "ios_idfa", "android": "google_ad_id", "web": "windows_ad_id"}


def _user_values(seed: int, k: int, anonymous: bool) -> dict[str, Any]:
    digest = hashlib.blake2b(f"{seed}:user:{k}".encode(), digest_size=32).digest()
    n = int.from_bytes(digest, "big")
    platform = ("ios", "android", "web")[n % 3]
    model, os_version = _DEVICES[platform][(n >> 4) % 3]
    first, last = _FIRST[(n >> 8) % len(_FIRST)], _LAST[(n >> 16) % len(_LAST)]
    phone = f"+1{2000000000 + (n >> 24) % 7999999999}"
    return {
        "user_id": digest[:12].hex(),
        "external_user_id": None if anonymous else f"user-{k}",
        "email_address": f"{first}.{last}{k}@{_DOMAINS[(n >> 32) % len(_DOMAINS)]}",
        "timezone": _TIMEZONES[(n >> 40) % len(_TIMEZONES)],
        "platform": platform,
        "os_version": os_version,
        "device_model": model,
        "device_id": _uuid(seed, "device", k),
        "to_phone_number": phone,
        "user_phone_number": phone,
        "phone_number": phone,
        "push_token": digest[12:32].hex() + digest[:12].hex(),
        "ad_id": _uuid(seed, "ad", k),
        "ad_id_type": _AD_ID_TYPES[platform],
        "ad_tracking_enabled": bool((n >> 48) & 1),
    }


def _encode_user(values: dict[str, Any]) -> tuple[bytes, ...]:
    """Each user field in its optional (union) form; required slots drop the 1-byte branch."""
    return tuple(_encode_field(f, values[f.name]) for f in _USER_FIELD_SPECS)


def _test_user(seed: int, k: int) -> tuple[bytes, ...]:
    # Braze's "Send Test Events" placeholders: a UUID-like timezone, field names as values.
    values = _user_values(seed, 9_000_000_000 + k, anonymous=False)
    values.update(
        user_id=_hex(seed, "test-user", k),
        external_user_id="external_user_id",
        email_address="example@braze.com",
        timezone=_uuid(seed, "test-timezone", k),
    )
    return _encode_user(values)


_CHOICES: dict[str, tuple[Any, ...]] = {
    "abort_type": ("rate_limit", "quiet_hours", "liquid_abort_message", "user_not_subscribed"),
    "abort_log": ("aborted by liquid abort_message", "user was rate limited", "no valid token"),
    "action": ("subscribed", "unsubscribed", "other"),
    "bounce_reason": ("550 5.1.1 mailbox unavailable", "552 mailbox full", "invalid address"),
    "browser": ("Chrome", "Safari", "Firefox", "Edge"),
    "button_action_type": ("URI", "NEWS_FEED", "CLOSE"),
    "carrier": ("Verizon", "T-Mobile", "Vodafone", "Orange"),
    "category": ("transactional", "marketing"),
    "channel": ("email", "sms", "whatsapp", "push"),
    "conversion_behavior": ('{"type":"perform_custom_event","event":"purchase"}',),
    "device_class": ("desktop", "mobile", "tablet"),
    "device_os": ("iOS", "Android", "Windows", "macOS"),
    "error": ("30003 unreachable handset", "30005 unknown destination", "30007 carrier filter"),
    "esp": ("sendgrid", "sparkpost", "amazon_ses"),
    "from_domain": ("mail.example.com", "news.example.com"),
    "ip_pool": ("pool-marketing", "pool-transactional"),
    "locale_key": ("en-us", "fr-fr", "de-de", "es-es"),
    "machine_open": ("true",),
    "mailbox_provider": ("Gmail", "Outlook", "Yahoo", "iCloud"),
    "provider_error_code": ("131026", "131047", "130472"),
    "provider_error_title": ("Message undeliverable", "Re-engagement message", "Experiment"),
    "resolution": ("1170x2532", "1080x2400", "1920x1080"),
    "state_change_source": ("SDK", "REST API", "CSV import", "Preference center"),
    "subscription_status": ("Subscribed", "Unsubscribed", "Opted In"),
    "ad_id_type": ("ios_idfa", "google_ad_id"),
    "version": ("1", "2"),
}
_WORDS = ("spring", "welcome", "winback", "loyalty", "flash", "onboarding", "cart", "vip", "daily")


def _field_value(name: str, ftype: str, rng: random.Random, seed: int) -> Any:
    """A plausible value for a field the message context does not set (name-aware)."""
    if ftype == "boolean":
        return rng.random() < 0.5
    if ftype in ("int", "long"):
        return rng.randrange(0, 4)
    if ftype in ("float", "double"):
        return round(rng.uniform(1, 200), 2)
    if ftype == "array<string>":
        if "url" in name:
            return [f"https://cdn.example.com/media/{rng.randrange(10**6)}.jpg"]
        return rng.sample(["user_agent", "ip_address", "click_timing"], rng.randint(1, 2))
    if name in _CHOICES:
        return rng.choice(_CHOICES[name])
    if name in ("dispatch_id", "send_id", "app_group_api_id"):
        return _hex(seed, name, rng.random())
    if name.endswith("_id"):
        return _uuid(seed, name, rng.random())
    if name.endswith("_name"):
        return f"{rng.choice(_WORDS).title()} {name.removesuffix('_name').replace('_', ' ')}"
    if "phone_number" in name:
        return f"+1{rng.randrange(2000000000, 9999999999)}"
    if name == "short_url":
        return f"https://brz.ai/{_hex(seed, 'short', rng.random(), n=8)}"
    if "url" in name:
        return f"https://www.example.com/{rng.choice(_WORDS)}?utm_source=braze"
    if name == "user_agent":
        return "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    if name == "sending_ip":
        return f"198.51.100.{rng.randrange(1, 255)}"
    if name in ("message_body", "quick_reply_text"):
        return rng.choice(("STOP", "YES", "Thanks!", "When does the sale end?"))
    if name in ("message_extras", "properties", "flow_response_json"):
        return json.dumps({"source": rng.choice(_WORDS), "n": rng.randrange(100)})
    return f"{name}-{rng.randrange(1000)}"


@dataclass
class _Workspace:
    index: int
    app_group_id: str
    integration_ids: list[str]
    campaigns: list[dict[str, Any]]
    canvases: list[dict[str, Any]]
    users: list[tuple[bytes, ...]] = field(default_factory=list)
    anonymous_users: list[tuple[bytes, ...]] = field(default_factory=list)
    test_users: list[tuple[bytes, ...]] = field(default_factory=list)


def _workspace(seed: int, w: int, integrations: int) -> _Workspace:
    rng = random.Random(f"{seed}:workspace:{w}")
    campaigns = []
    for c in range(12):
        variations = [(_uuid(seed, w, "mv", c, v), f"Variant {'ABC'[v]}") for v in range(2)]
        campaigns.append(
            {
                "campaign_id": _uuid(seed, w, "campaign", c),
                "campaign_name": f"{rng.choice(_WORDS).title()} campaign {c + 1}",
                "variations": variations,
            }
        )
    canvases = []
    for c in range(8):
        canvases.append(
            {
                "canvas_id": _uuid(seed, w, "canvas", c),
                "canvas_name": f"{rng.choice(_WORDS).title()} journey {c + 1}",
                "variations": [(_uuid(seed, w, "cv", c, v), f"Path {v + 1}") for v in range(2)],
                "steps": [
                    (_uuid(seed, w, "step", c, s), f"Step {s + 1}", _uuid(seed, w, "smv", c, s))
                    for s in range(4)
                ],
                "splits": [(_uuid(seed, w, "split", c, s), f"Split {'AB'[s]}") for s in range(2)],
            }
        )
    return _Workspace(
        index=w,
        app_group_id=_hex(seed, "app_group", w),
        integration_ids=[_hex(seed, "integration", w, i) for i in range(integrations)],
        campaigns=campaigns,
        canvases=canvases,
    )


def _message_context(ws: _Workspace, names: set[str], required: set[str], rng: random.Random):
    """Campaign or Canvas fields of one message, consistent with each other (ids with names)."""
    has_campaign, has_canvas = "campaign_id" in names, "canvas_id" in names
    use_canvas = has_canvas and (
        "canvas_id" in required
        or not has_campaign
        or ("campaign_id" not in required and rng.random() < 0.5)
    )
    ctx: dict[str, Any] = dict.fromkeys(
        (
            "campaign_id",
            "campaign_name",
            "message_variation_id",
            "message_variation_name",
            "canvas_id",
            "canvas_name",
            "canvas_variation_id",
            "canvas_variation_name",
            "canvas_step_id",
            "canvas_step_name",
            "canvas_step_message_variation_id",
            "canvas_api_id",
            "canvas_variation_api_id",
            "canvas_step_api_id",
            "experiment_step_id",
            "experiment_split_id",
            "experiment_split_name",
        )
    )
    if use_canvas:
        cv = rng.choice(ws.canvases)
        var_id, var_name = rng.choice(cv["variations"])
        step_id, step_name, smv = rng.choice(cv["steps"])
        split_id, split_name = rng.choice(cv["splits"])
        ctx.update(
            canvas_id=cv["canvas_id"],
            canvas_name=cv["canvas_name"],
            canvas_variation_id=var_id,
            canvas_variation_name=var_name,
            canvas_step_id=step_id,
            canvas_step_name=step_name,
            canvas_step_message_variation_id=smv,
            canvas_api_id=cv["canvas_id"],
            canvas_variation_api_id=var_id,
            canvas_step_api_id=step_id,
            experiment_step_id=cv["steps"][0][0],
            experiment_split_id=split_id,
            experiment_split_name=split_name,
        )
    elif has_campaign:
        cp = rng.choice(ws.campaigns)
        mv_id, mv_name = rng.choice(cp["variations"])
        ctx.update(
            campaign_id=cp["campaign_id"],
            campaign_name=cp["campaign_name"],
            message_variation_id=mv_id,
            message_variation_name=mv_name,
        )
    ctx["app_group_id"] = ws.app_group_id
    return ctx


# --- schemas and compiled record builders --------------------------------------------------


@dataclass
class _Plan:
    """One writer schema of one type, with the function that joins an event's pieces."""

    event_type: str
    schema_id: int
    version: str  # "current" | "old"
    fields: tuple[EventField, ...]
    schema_json: bytes
    runs: list[list[EventField]]  # consecutive fields that come from the message template
    build: Callable[[bytes, bytes, tuple[bytes, ...], tuple[bytes, ...]], bytes]
    has_timezone: bool


def _compile(event_type: str, schema_id: int, version: str, fields: Sequence[EventField]):
    parts: list[str] = []
    runs: list[list[EventField]] = []
    current: list[EventField] | None = None
    for f in fields:
        if f.name == "id":
            parts.append("i")
            current = None
        elif f.name == "time":
            parts.append("t")
            current = None
        elif USER_FIELDS.get(f.name) == f.type:
            idx = _USER_INDEX[f.name]
            parts.append(f"u[{idx}]" if f.nullable else f"u[{idx}][1:]")
            current = None
        else:
            if current is None:
                current = []
                runs.append(current)
                parts.append(f"p[{len(runs) - 1}]")
            current.append(f)
    # The source is built from field positions only (no data): a flat join per record.
    build = eval(f"lambda i, t, u, p: b''.join(({', '.join(parts)},))")  # noqa: S307
    schema = avro_schema(event_type, fields)
    return _Plan(
        event_type=event_type,
        schema_id=schema_id,
        version=version,
        fields=tuple(fields),
        schema_json=json.dumps(schema, separators=(",", ":")).encode(),
        runs=runs,
        build=build,
        has_timezone=any(f.name == "timezone" for f in fields),
    )


def _older_fields(event: catalogue.EventType, type_index: int) -> list[EventField]:
    """An older schema: 1-2 newest optional fields missing, removed fields (dispatch_id) present."""
    protected = (
        _CORE_FIELDS | set(event.context_traits.values()) | set(event.context_device.values())
    )
    droppable = [
        f
        for f in event.current_fields
        if f.nullable and f.name not in protected and not f.name.endswith("_id")
    ]
    drop = {f.name for f in droppable[-(1 + type_index % 2) :]} if droppable else set()
    return [f for f in event.fields if f.name not in drop]


def _unsupported_fields(event_type: str) -> list[EventField]:
    return [
        EventField(name, ftype, nullable, pos, "current")
        for pos, (name, ftype, nullable) in enumerate(UNSUPPORTED_TYPES[event_type], start=1)
    ]


def schema_plans() -> dict[tuple[str, str], _Plan]:
    """Every writer schema the generator uses, keyed by (event_type, version).

    Schema ids are global and rise with every change: all older schemas first, then the
    current schemas of the catalogue, then the unsupported types.
    """
    types = catalogue.supported()
    plans: dict[tuple[str, str], _Plan] = {}
    next_id = FIRST_SCHEMA_ID
    for idx, event in enumerate(types):
        plans[(event.event_type, "old")] = _compile(
            event.event_type, next_id, "old", _older_fields(event, idx)
        )
        next_id += 1
    for event in types:
        plans[(event.event_type, "current")] = _compile(
            event.event_type, next_id, "current", event.current_fields
        )
        next_id += 1
    for name in UNSUPPORTED_TYPES:
        plans[(name, "current")] = _compile(name, next_id, "current", _unsupported_fields(name))
        next_id += 1
    return plans


# --- the export ----------------------------------------------------------------------------

_TYPE_WEIGHTS = {"Send": 10, "Delivery": 8, "Open": 5, "Impression": 5, "Read": 4, "Entry": 4}


def _validate(options: GenerateOptions) -> tuple[list[str], datetime]:
    def bad(name: str, why: str) -> GenerateError:
        return GenerateError(f"option {name}={getattr(options, name)!r}: {why}")

    for name in ("events", "test_events", "unsupported_events", "duplicate_files"):
        if getattr(options, name) < 0:
            raise bad(name, "must be >= 0")
    for name in ("corrupt_files", "truncated_files"):
        if getattr(options, name) < 0:
            raise bad(name, "must be >= 0")
    for name in ("workspaces", "integrations", "days", "max_events_per_file"):
        if getattr(options, name) < 1:
            raise bad(name, "must be >= 1")
    for name in ("duplicate_record_rate", "anonymous_rate", "late_rate"):
        if not 0.0 <= getattr(options, name) <= 1.0:
            raise bad(name, "must be between 0 and 1")
    if options.codec not in (*CODECS, "mixed"):
        raise bad("codec", f"expected one of {', '.join((*CODECS, 'mixed'))}")
    try:
        start = datetime.strptime(options.start, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise bad("start", "expected YYYY-MM-DD") from exc
    for name in ("cluster", "zone", "prefix"):
        value = getattr(options, name)
        # A prefix may be nested (a/b); the other two are single key segments.
        if not value or "+" in value or (name != "prefix" and "/" in value):
            raise bad(name, "must be a non-empty key segment without '+' (or '/')")
    if options.event_types is None:
        types = [t.event_type for t in catalogue.supported()]
    else:
        try:
            wanted = {catalogue.resolve(t).event_type for t in options.event_types}
        except catalogue.CatalogueError as exc:
            raise bad("event_types", str(exc)) from exc
        types = [t.event_type for t in catalogue.supported() if t.event_type in wanted]
        if not types and options.events:
            raise bad("event_types", "names no supported type")
    if options.duplicate_files and not (
        options.events or options.test_events or options.unsupported_events
    ):
        raise bad("duplicate_files", "needs events to write files to duplicate")
    if (options.corrupt_files or options.truncated_files) and not types:
        raise bad("event_types", "broken files need at least one supported type")
    if options.test_events and not any(t not in _NO_TIMEZONE for t in types):
        raise bad("test_events", "needs a selected type with a timezone field")
    return types, start


_NO_TIMEZONE = {
    t.event_type for t in catalogue.supported() if not any(f.name == "timezone" for f in t.fields)
}


def _allocate(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` exactly by weight (largest remainder): deterministic, no sampling."""
    if total == 0 or not weights:
        return [0] * len(weights)
    scale = total / sum(weights)
    shares = [w * scale for w in weights]
    counts = [int(s) for s in shares]
    order = sorted(range(len(weights)), key=lambda i: (counts[i] - shares[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


class _Exporter:
    def __init__(self, out_dir: Path, options: GenerateOptions, progress: bool) -> None:
        self.out = out_dir
        self.o = options
        self.seed = options.seed
        self.types, self.start = _validate(options)
        self.hours = [self.start + timedelta(hours=h) for h in range(24 * options.days)]
        self.plans = schema_plans()
        self.ids = _EventIds(self.seed)
        self.rng = random.Random(f"{self.seed}:export")
        self.workspaces = [
            _workspace(self.seed, w, options.integrations) for w in range(options.workspaces)
        ]
        type_order = [t.event_type for t in catalogue.supported()] + list(UNSUPPORTED_TYPES)
        self.type_index = {t: i for i, t in enumerate(type_order)}
        self.files: list[dict[str, Any]] = []
        self.counts: Counter[tuple[str, str, str, str]] = Counter()
        self.offsets: Counter[tuple[str, str, int]] = Counter()
        self.dirs_made: set[Path] = set()
        self.templates: dict[tuple[int, str, str, bool], list[tuple[bytes, ...]]] = {}
        self.hour_times: dict[int, list[bytes]] = {}
        self.progress = progress

    # streams ---------------------------------------------------------------------------

    def _weights(self, types: list[str]) -> list[float]:
        rng = random.Random(f"{self.seed}:weights")
        n_hours = len(self.hours)
        out = []
        for w in range(self.o.workspaces):
            for t in types:
                tw = _TYPE_WEIGHTS.get(t.rsplit(".", 1)[1], 1.5)
                for h in range(n_hours):
                    hour_of_day = self.hours[h].hour
                    diurnal = 1.0 + 0.7 * (1 - abs(hour_of_day - 15) / 12)
                    out.append(tw * diurnal * (1 / (w + 1) ** 0.5) * rng.uniform(0.8, 1.2))
        return out

    def _streams(self, types: list[str], total: int) -> dict[tuple[int, str, int], int]:
        counts = _allocate(total, self._weights(types))
        out: dict[tuple[int, str, int], int] = {}
        i = 0
        for w in range(self.o.workspaces):
            for t in types:
                for h in range(len(self.hours)):
                    if counts[i]:
                        out[(w, t, h)] = counts[i]
                    i += 1
        return out

    def _random_streams(self, types: list[str], n: int, label: str) -> Counter:
        rng = random.Random(f"{self.seed}:{label}")
        picks: Counter[tuple[int, str, int]] = Counter()
        for _ in range(n):
            picks[
                (
                    rng.randrange(self.o.workspaces),
                    rng.choice(types),
                    rng.randrange(len(self.hours)),
                )
            ] += 1
        return picks

    # pieces ----------------------------------------------------------------------------

    def _users(self, ws: _Workspace, expected_events: int) -> None:
        pool = min(50_000, max(20, expected_events // 4))
        base = ws.index * 10_000_000
        ws.users = [_encode_user(_user_values(self.seed, base + k, False)) for k in range(pool)]
        if self.o.anonymous_rate:
            anon = min(10_000, max(5, pool // 5))
            ws.anonymous_users = [
                _encode_user(_user_values(self.seed, base + 5_000_000 + k, True))
                for k in range(anon)
            ]
        ws.test_users = [_test_user(self.seed, ws.index * 10 + k) for k in range(3)]

    def _templates(self, ws: _Workspace, plan: _Plan, placeholder: bool) -> list[tuple[bytes, ...]]:
        key = (ws.index, plan.event_type, plan.version, placeholder)
        if key in self.templates:
            return self.templates[key]
        rng = random.Random(f"{self.seed}:tpl:{key}")
        names = {f.name for f in plan.fields}
        required = {f.name for f in plan.fields if not f.nullable}
        out = []
        for _ in range(1 if placeholder else 64):
            ctx = _message_context(ws, names, required, rng)
            segments = []
            for run in plan.runs:
                pieces = []
                for f in run:
                    if placeholder:
                        value = self._placeholder(f, ws)
                    elif f.name in ctx and (ctx[f.name] is not None or f.nullable):
                        value = ctx[f.name]
                    elif f.nullable and rng.random() < 0.08:
                        value = None
                    else:
                        value = _field_value(f.name, f.type, rng, self.seed)
                    pieces.append(_encode_field(f, value))
                segments.append(b"".join(pieces))
            out.append(tuple(segments))
        self.templates[key] = out
        return out

    def _placeholder(self, f: EventField, ws: _Workspace) -> Any:
        # "Send Test Events": values of the right type, not real data (Braze's own description).
        if f.name == "app_group_id":
            return ws.app_group_id
        if f.type != "string":
            return _field_value(f.name, f.type, random.Random(0), self.seed)
        if f.name.endswith("_id"):
            return PLACEHOLDER_UUID
        return f.name

    def _times(self, hour: int) -> list[bytes]:
        if hour not in self.hour_times:
            base = int(self.hours[hour].timestamp())
            self.hour_times[hour] = [_varint(base + s) for s in range(3600)]
        return self.hour_times[hour]

    def _plan_for(self, event_type: str, hour: int, ws: _Workspace) -> _Plan:
        if event_type in UNSUPPORTED_TYPES or not self.o.schema_versions:
            return self.plans[(event_type, "current")]
        # Each workspace's export switches schema at its own hour of the range.
        cutover = (len(self.hours) // 2 + ws.index) % len(self.hours) or 1
        return self.plans[(event_type, "old" if hour < cutover else "current")]

    # one (workspace, type, hour) stream -------------------------------------------------

    def _stream(
        self, w: int, event_type: str, hour: int, normal: int, tests: int, unsupported: bool
    ) -> None:
        ws = self.workspaces[w]
        plan = self._plan_for(event_type, hour, ws)
        templates = self._templates(ws, plan, False)
        n_templates = len(templates)
        build = plan.build
        times = self._times(hour)
        hour_start = int(self.hours[hour].timestamp())
        rng = random.Random(f"{self.seed}:stream:{w}:{event_type}:{hour}")
        bits = rng.getrandbits
        ids = self.ids.take_many(normal)
        users = ws.users
        n_users = len(users)
        anon_users = ws.anonymous_users
        anon_rate = 0.0 if unsupported else self.o.anonymous_rate
        late_rate = 0.0 if unsupported else self.o.late_rate
        anonymous = late = 0
        records: list[bytes] = []
        append = records.append
        if not anon_rate and not late_rate:
            for eid in ids:
                r = bits(64)
                append(
                    build(
                        eid,
                        times[(r & 0xFFFF) * 3600 >> 16],
                        users[((r >> 16) & 0xFFFFFF) * n_users >> 24],
                        templates[(r >> 40) % n_templates],
                    )
                )
        else:
            chance = rng.random
            for eid in ids:
                r = bits(64)
                if anon_rate and chance() < anon_rate:
                    user = anon_users[((r >> 16) & 0xFFFFFF) * len(anon_users) >> 24]
                    anonymous += 1
                else:
                    user = users[((r >> 16) & 0xFFFFFF) * n_users >> 24]
                if late_rate and chance() < late_rate:
                    # Queued late by the SDK: between one hour and three days before date=.
                    t = _varint(hour_start - rng.randint(3600, 3 * 86400))
                    late += 1
                else:
                    t = times[(r & 0xFFFF) * 3600 >> 16]
                append(build(eid, t, user, templates[(r >> 40) % n_templates]))
        if tests:
            placeholder = self._templates(ws, plan, True)[0]
            for k in range(tests):
                rec = build(
                    self.ids.take(),
                    times[rng.randrange(3600)],
                    ws.test_users[k % len(ws.test_users)],
                    placeholder,
                )
                records.insert(rng.randrange(len(records) + 1), rec)
        distinct = len(records)
        if self.o.duplicate_record_rate:
            records = self._redeliver(records, rng)
        key = (ws.app_group_id, event_type, self.hours[hour].strftime(DATE_HOUR_FORMAT))
        c = self.counts
        c[(*key, "distinct_events")] += distinct
        c[(*key, "records_written")] += len(records)
        c[(*key, "duplicate_records")] += len(records) - distinct
        if unsupported:
            c[(*key, "unsupported")] += distinct
        else:
            c[(*key, "anonymous")] += anonymous
            c[(*key, "test_events")] += tests
            c[(*key, "late")] += late
            c[(*key, "sendable")] += normal - anonymous
        kind = "unsupported" if unsupported else "ok"
        step = self.o.max_events_per_file
        for start in range(0, len(records), step):
            self._write(ws, plan, hour, records[start : start + step], kind, rng)

    def _redeliver(self, records: list[bytes], rng: random.Random) -> list[bytes]:
        """At-least-once: some events are written again, later in the same stream."""
        rate = self.o.duplicate_record_rate
        n = len(records)
        keyed = [(float(i), rec) for i, rec in enumerate(records)]
        for i, rec in enumerate(records):
            if rng.random() < rate:
                keyed.append((i + 0.5 + rng.randrange(n - i), rec))
        keyed.sort(key=lambda item: item[0])
        return [rec for _, rec in keyed]

    # files -----------------------------------------------------------------------------

    def _path(self, ws: _Workspace, plan: _Plan, hour: int, records: int, rng: random.Random):
        integration = ws.integration_ids[self.type_index[plan.event_type] % len(ws.integration_ids)]
        partition = rng.randrange(PARTITIONS)
        offset_key = (integration, plan.event_type, partition)
        offset = self.offsets[offset_key]
        self.offsets[offset_key] += records
        stem = f"dataexport.{self.o.cluster}.{CONNECTION_TYPE}.integration.{integration}"
        rel = (
            Path(self.o.prefix)
            / stem
            / f"event_type={plan.event_type}"
            / f"date={self.hours[hour].strftime(DATE_HOUR_FORMAT)}"
            / str(plan.schema_id)
            / self.o.zone
            / f"{stem}+{partition}+{offset}.avro"
        )
        return rel, integration

    def _codec(self, rng: random.Random) -> str:
        return rng.choice(CODECS) if self.o.codec == "mixed" else self.o.codec

    def _write(
        self,
        ws: _Workspace,
        plan: _Plan,
        hour: int,
        records: Sequence[bytes],
        kind: str,
        rng: random.Random,
    ) -> None:
        rel, integration = self._path(ws, plan, hour, len(records), rng)
        codec = self._codec(rng)
        damage = kind if kind in ("corrupt", "truncated") else "none"
        blob = encode_file(plan.schema_json, records, codec, rng.randbytes(16), damage)
        self._put(rel, blob)
        self.files.append(
            {
                "path": rel.as_posix(),
                "event_type": plan.event_type,
                "app_group_id": ws.app_group_id,
                "integration_id": integration,
                "date_hour": self.hours[hour].strftime(DATE_HOUR_FORMAT),
                "schema_id": plan.schema_id,
                "codec": codec,
                "records": len(records),
                "kind": kind,
                "bytes": len(blob),
            }
        )

    def _put(self, rel: Path, blob: bytes) -> None:
        path = self.out / rel
        if path.parent not in self.dirs_made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.dirs_made.add(path.parent)
        path.write_bytes(blob)

    def _broken_files(self) -> None:
        """Corrupt and truncated files hold events of their own that no reader can land."""
        rng = random.Random(f"{self.seed}:broken")
        jobs = ["corrupt"] * self.o.corrupt_files + ["truncated"] * self.o.truncated_files
        for kind in jobs:
            w = rng.randrange(self.o.workspaces)
            ws = self.workspaces[w]
            event_type = rng.choice(self.types)
            hour = rng.randrange(len(self.hours))
            plan = self._plan_for(event_type, hour, ws)
            templates = self._templates(ws, plan, False)
            times = self._times(hour)
            n = rng.randint(1, min(200, self.o.max_events_per_file))
            records = [
                plan.build(
                    self.ids.take(),
                    times[rng.randrange(3600)],
                    rng.choice(ws.users),
                    rng.choice(templates),
                )
                for _ in range(n)
            ]
            self._write(ws, plan, hour, records, kind, rng)
            key = (ws.app_group_id, event_type, self.hours[hour].strftime(DATE_HOUR_FORMAT))
            self.counts[(*key, "unreadable_records")] += n

    def _duplicate_files(self) -> None:
        """Braze reprocessing its queue: a whole file again, same bytes, a new offset."""
        rng = random.Random(f"{self.seed}:duplicate-files")
        readable = [f for f in self.files if f["kind"] in ("ok", "unsupported")]
        if not readable:
            return
        if self.o.duplicate_files <= len(readable):
            chosen = rng.sample(readable, self.o.duplicate_files)
        else:
            chosen = [rng.choice(readable) for _ in range(self.o.duplicate_files)]
        for original in chosen:
            rel = Path(original["path"])
            stem, partition, _ = rel.stem.rsplit("+", 2)
            offset_key = (original["integration_id"], original["event_type"], int(partition))
            offset = self.offsets[offset_key]
            self.offsets[offset_key] += original["records"]
            new_rel = rel.with_name(f"{stem}+{partition}+{offset}.avro")
            self._put(new_rel, (self.out / rel).read_bytes())
            self.files.append({**original, "path": new_rel.as_posix(), "kind": "duplicate_file"})
            key = (original["app_group_id"], original["event_type"], original["date_hour"])
            self.counts[(*key, "records_written")] += original["records"]
            self.counts[(*key, "duplicate_records")] += original["records"]

    # run -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        o = self.o
        streams = self._streams(self.types, o.events)
        test_types = [t for t in self.types if t not in _NO_TIMEZONE]
        tests = self._random_streams(test_types, o.test_events, "test-events")
        unsupported = self._random_streams(
            list(UNSUPPORTED_TYPES), o.unsupported_events, "unsupported"
        )
        per_ws: Counter[int] = Counter()
        for (w, _, _), n in streams.items():
            per_ws[w] += n
        for ws in self.workspaces:
            self._users(ws, per_ws[ws.index])
        jobs = []
        for w in range(o.workspaces):
            for t in [*self.types, *UNSUPPORTED_TYPES]:
                for h in range(len(self.hours)):
                    key = (w, t, h)
                    if t in UNSUPPORTED_TYPES:
                        if unsupported[key]:
                            jobs.append((w, t, h, unsupported[key], 0, True))
                    elif streams.get(key) or tests[key]:
                        jobs.append((w, t, h, streams.get(key, 0), tests[key], False))
        total = o.events + o.test_events + o.unsupported_events
        with _Progress(self.progress, total) as advance:
            for job in jobs:
                self._stream(*job)
                advance(job[3] + job[4])
        self._broken_files()
        self._duplicate_files()
        return self._manifest()

    def _manifest(self) -> dict[str, Any]:
        rows = [
            {
                "app_group_id": ws_id,
                "event_type": t,
                "date_hour": dh,
                "category": cat,
                "records": n,
            }
            for (ws_id, t, dh, cat), n in sorted(self.counts.items())
            if n
        ]
        totals = dict.fromkeys(CATEGORIES, 0)
        for row in rows:
            totals[row["category"]] += row["records"]
        schemas = sorted(
            {p.schema_id: p for p in self.plans.values()}.values(), key=lambda p: p.schema_id
        )
        manifest = {
            "version": MANIFEST_VERSION,
            "options": asdict(self.o),
            "layout": {
                "cluster": self.o.cluster,
                "connection_type": CONNECTION_TYPE,
                "zone": self.o.zone,
                "prefix": self.o.prefix,
            },
            "workspaces": [
                {"app_group_id": ws.app_group_id, "integration_ids": ws.integration_ids}
                for ws in self.workspaces
            ],
            "schemas": [
                {
                    "schema_id": p.schema_id,
                    "event_type": p.event_type,
                    "version": p.version,
                    "fields": [f.name for f in p.fields],
                }
                for p in schemas
            ],
            "files": self.files,
            "counts": rows,
            "totals": totals,
        }
        (self.out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
        return manifest


class _Progress:
    """A rich progress bar when asked for, else a no-op (tests, library use)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import Progress

        self.bar = Progress()
        self.bar.__enter__()
        task = self.bar.add_task("generating events", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)


def generate_export(out_dir: Path, options: GenerateOptions, progress: bool = False) -> dict:
    """Write the export under ``out_dir`` and ``out_dir/manifest.json``; return the manifest.

    ``out_dir`` must be absent or empty: leftovers of an earlier export would make the
    manifest's ground truth wrong.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise GenerateError(f"output directory {out_dir} is not empty")
    exporter = _Exporter(out_dir, options, progress)  # validates before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    return exporter.run()


def load_manifest(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / MANIFEST_NAME).read_text())


# --- CLI -----------------------------------------------------------------------------------


@click.command(name="generate")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--events", type=int, help="Distinct supported events.  [default: 10000]")
@click.option("--seed", type=int, help="[default: 0]")
@click.option("--workspaces", type=int, help="Braze workspaces.  [default: 1]")
@click.option("--integrations", type=int, help="Integrations per workspace.  [default: 1]")
@click.option("--days", type=int, help="[default: 1]")
@click.option("--start", help="First date= day (UTC).  [default: 2026-11-01]")
@click.option("--event-type", "event_types", multiple=True, help="Limit to these types.")
@click.option("--cluster", help="[default: prod-01]")
@click.option("--prefix", help="[default: currents]")
@click.option("--codec", type=click.Choice([*CODECS, "mixed"]), help="[default: null]")
@click.option("--zone", help=f"The <zone> key segment.  [default: {ZONE}]")
@click.option("--max-events-per-file", type=int, help="[default: 15000]")
@click.option(
    "--all-knobs",
    is_flag=True,
    help="Start from all_knobs_on() (every knob on, 2 workspaces, 2 integrations, codec "
    "mixed, 5,000 events); other options override it.",
)
@click.option("--duplicate-record-rate", type=float)
@click.option("--duplicate-files", type=int)
@click.option("--anonymous-rate", type=float)
@click.option("--late-rate", type=float)
@click.option("--schema-versions/--no-schema-versions", default=None)
@click.option("--test-events", type=int)
@click.option("--unsupported-events", type=int)
@click.option("--corrupt-files", type=int)
@click.option("--truncated-files", type=int)
@click.option("--progress/--no-progress", default=True, show_default=True)
def cli(out_dir: Path, all_knobs: bool, progress: bool, event_types: tuple[str, ...], **kw) -> None:
    """Write a synthetic Currents export in Braze's layout into OUT_DIR, plus manifest.json."""
    import time

    from rich.console import Console
    from rich.table import Table

    base = all_knobs_on() if all_knobs else GenerateOptions()
    values = asdict(base)
    knobs = {k: v for k, v in kw.items() if v is not None}
    values.update(knobs)
    values["event_types"] = list(event_types) or None
    options = GenerateOptions(**values)
    began = time.perf_counter()
    try:
        manifest = generate_export(out_dir, options, progress=progress)
    except GenerateError as exc:
        raise click.ClickException(str(exc)) from exc
    seconds = time.perf_counter() - began
    console = Console()
    table = Table(title=f"Currents export in {out_dir}")
    table.add_column("category")
    table.add_column("records", justify="right")
    for category, n in manifest["totals"].items():
        table.add_row(category, f"{n:,}")
    kinds = Counter(f["kind"] for f in manifest["files"])
    for kind in FILE_KINDS:
        table.add_row(f"files: {kind}", f"{kinds[kind]:,}")
    console.print(table)
    written = manifest["totals"]["records_written"] + manifest["totals"]["unreadable_records"]
    console.print(
        f"{len(manifest['files']):,} files, {written:,} records in {seconds:.1f} s "
        f"({written / max(seconds, 1e-9):,.0f} records/s); manifest: {out_dir / MANIFEST_NAME}"
    )
