"""Connectors: which Braze events go to which Segment source, and how.

A connectors file (YAML) lists connectors and the push settings they share::

    push:                       # every key optional (defaults below)
      max_in_flight: 4
      at_risk_hours: 48
    connectors:
      - name: engagement-us
        braze_workspaces: ["*"]          # Braze app_group_ids, or "*"
        event_types: ["*"]               # dotted types, seed spellings, "family:email", or "*"
        segment:
          workspace: acme-us
          source: braze_us
          region: us                     # us | eu
          write_key_env: SEGMENT_WRITE_KEY_US   # or write_key_file: /etc/currents-segment/us.key
        message_id: braze_id             # braze_id | workspace_scoped

Validation refuses what Braze and Segment document as causes of loss: two connectors of the same
kind (message engagement, customer behavior) into one Segment workspace, and one event fanned out
to two workspaces under the same messageId (Segment de-duplicates messageIds across workspaces).
Errors name the file, the connectors and the variables at fault, never a key's value.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from currents_segment import catalogue

MESSAGE_ID_STRATEGIES = ("braze_id", "workspace_scoped")
REGIONS = ("us", "eu")

# Segment's hosts (segment.md); a local emulator replaces them via api_base.
SEGMENT_ENDPOINTS = {
    "us": "https://api.segment.io/v1/batch",
    "eu": "https://events.eu1.segmentapis.com/v1/batch",
}
# Paths of the two regions under one base URL (the emulator serves both).
API_BASE_PATHS = {"us": "/v1/batch", "eu": "/eu1/v1/batch"}
API_BASE_ENV = "CURRENTS_SEGMENT_API_BASE"
CONNECTORS_ENV = "CURRENTS_SEGMENT_CONNECTORS"

# Braze's two Currents connector kinds; "two identical connectors" means two of one kind.
KIND_CUSTOMER_BEHAVIOR = "customer_behavior"
KIND_MESSAGE_ENGAGEMENT = "message_engagement"

MAX_MESSAGE_ID_CHARS = 100  # Segment's limit


class ConfigError(ValueError):
    """The connectors file is invalid; the message lists every problem found."""


@dataclass(frozen=True)
class PushSettings:
    max_in_flight: int = 4
    gzip: bool = False
    at_risk_hours: float = 48.0
    timeout_seconds: float = 30.0
    max_attempts: int = 10
    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 60.0
    max_retry_after_seconds: float = 300.0  # a 429's Retry-After is honoured up to this
    max_batch_events: int = 2500
    max_batch_bytes: int = 500_000
    max_event_bytes: int = 32 * 1024
    gate_chunk_events: int = 200_000
    future_tolerance_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_events <= 2500:
            raise ConfigError("push.max_batch_events must be between 1 and 2500 (Segment's limit)")
        if not 1024 < self.max_batch_bytes <= 500_000:
            raise ConfigError("push.max_batch_bytes must be above 1024 and at most 500000")
        if not 0 < self.max_event_bytes <= 32 * 1024:
            raise ConfigError("push.max_event_bytes must be above 0 and at most 32768")
        if self.max_in_flight < 1 or self.max_attempts < 1 or self.gate_chunk_events < 1:
            raise ConfigError(
                "push.max_in_flight, push.max_attempts and push.gate_chunk_events must be >= 1"
            )


@dataclass(frozen=True)
class Connector:
    name: str
    braze_workspaces: tuple[str, ...]  # ("*",) = every app_group_id
    event_types: tuple[str, ...]  # dotted Currents types, resolved through the catalogue
    segment_workspace: str
    segment_source: str
    region: str
    message_id: str
    write_key_env: str | None = None
    write_key_file: Path | None = None
    source_file: Path | None = field(default=None, compare=False)

    @property
    def kinds(self) -> frozenset[str]:
        types = catalogue.load()
        return frozenset(kind_of(types[t]) for t in self.event_types)

    @property
    def all_workspaces(self) -> bool:
        return "*" in self.braze_workspaces

    def write_key(self) -> str:
        """The write key from the environment or the secrets file; errors never show it."""
        where = f"{self.source_file}: connector {self.name!r}"
        if self.write_key_env:
            value = os.environ.get(self.write_key_env, "").strip()
            if not value:
                raise ConfigError(
                    f"{where}: environment variable {self.write_key_env} (write_key_env) is not set"
                )
            return value
        assert self.write_key_file is not None
        try:
            value = self.write_key_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"{where}: cannot read write key file {self.write_key_file} ({exc.strerror})"
            ) from None
        if not value:
            raise ConfigError(f"{where}: write key file {self.write_key_file} is empty")
        return value

    def endpoint(self, api_base: str | None = None) -> str:
        if api_base:
            return api_base.rstrip("/") + API_BASE_PATHS[self.region]
        return SEGMENT_ENDPOINTS[self.region]

    def sent_message_id(self, currents_id: str) -> str:
        if self.message_id == "braze_id":
            return currents_id
        return scoped_message_id(self.segment_workspace, currents_id)


@dataclass(frozen=True)
class ConnectorsConfig:
    path: Path
    connectors: tuple[Connector, ...]
    push: PushSettings
    api_base: str | None = None  # a local emulator instead of Segment's hosts

    def select(self, names: tuple[str, ...] | list[str] = ()) -> list[Connector]:
        if not names:
            return list(self.connectors)
        known = {c.name: c for c in self.connectors}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"{self.path}: no connector named {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(known)})"
            )
        return [known[n] for n in names]


def kind_of(event: catalogue.EventType) -> str:
    return KIND_CUSTOMER_BEHAVIOR if event.family == "behaviors" else KIND_MESSAGE_ENGAGEMENT


def scoped_message_id(segment_workspace: str, currents_id: str) -> str:
    """Deterministic messageId of one Currents event in one Segment workspace (32 hex chars).

    The SQL twin is ``md5(workspace || ':' || id)`` (``push.scoped_id_sql``): keep both equal.
    """
    return hashlib.md5(f"{segment_workspace}:{currents_id}".encode()).hexdigest()


def default_path() -> Path:
    env = os.environ.get(CONNECTORS_ENV)
    if env:
        return Path(env)
    return Path(str(resources.files("currents_segment") / "defaults" / "connectors.yml"))


def load(path: Path | str | None = None) -> ConnectorsConfig:
    """Read and validate a connectors file; ConfigError lists every problem found."""
    path = Path(path) if path else default_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read connectors file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse(raw, path)


def parse(raw: Any, path: Path) -> ConnectorsConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("connectors"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'connectors' list")
    unknown = sorted(set(raw) - {"connectors", "push", "api_base"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)}")
    errors: list[str] = []
    push = _parse_push(raw.get("push") or {}, path)
    connectors: list[Connector] = []
    seen: set[str] = set()
    for index, item in enumerate(raw["connectors"]):
        try:
            connector = _parse_connector(item, index, path)
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        if connector.name in seen:
            errors.append(f"{path}: connector name {connector.name!r} is used twice")
            continue
        seen.add(connector.name)
        connectors.append(connector)
    if not errors:
        errors.extend(check_conflicts(connectors, path))
    if errors:
        raise ConfigError("\n".join(errors))
    if not connectors:
        raise ConfigError(f"{path}: no connectors defined")
    api_base = raw.get("api_base")
    return ConnectorsConfig(
        path=path,
        connectors=tuple(connectors),
        push=push,
        api_base=str(api_base) if api_base else None,
    )


def _parse_push(raw: Any, path: Path) -> PushSettings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: 'push' must be a mapping")
    fields = PushSettings.__dataclass_fields__
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{path}: unknown push setting(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        default = getattr(PushSettings, key)
        try:
            values[key] = bool(value) if isinstance(default, bool) else type(default)(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: push.{key} must be a {type(default).__name__}") from None
    try:
        return PushSettings(**values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


_CONNECTOR_KEYS = {"name", "braze_workspaces", "event_types", "segment", "message_id"}
_SEGMENT_KEYS = {"workspace", "source", "region", "write_key_env", "write_key_file"}


def _parse_connector(item: Any, index: int, path: Path) -> Connector:
    if not isinstance(item, dict) or not item.get("name"):
        raise ConfigError(f"{path}: connectors[{index}] needs a 'name'")
    name = str(item["name"])
    where = f"{path}: connector {name!r}"
    unknown = sorted(set(item) - _CONNECTOR_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    segment = item.get("segment")
    if not isinstance(segment, dict):
        raise ConfigError(f"{where}: needs a 'segment' mapping (workspace, source, region, key)")
    unknown = sorted(set(segment) - _SEGMENT_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown segment key(s) {', '.join(unknown)}")
    for key in ("workspace", "source"):
        if not segment.get(key):
            raise ConfigError(f"{where}: segment.{key} is required")
    region = str(segment.get("region", "")).lower()
    if region not in REGIONS:
        raise ConfigError(f"{where}: segment.region must be one of us, eu (got {region!r})")
    key_env, key_file = segment.get("write_key_env"), segment.get("write_key_file")
    if bool(key_env) == bool(key_file):
        raise ConfigError(
            f"{where}: set exactly one of segment.write_key_env or segment.write_key_file "
            "(write keys never go in this file)"
        )
    strategy = item.get("message_id", "braze_id")
    if strategy not in MESSAGE_ID_STRATEGIES:
        raise ConfigError(
            f"{where}: message_id must be one of {', '.join(MESSAGE_ID_STRATEGIES)} "
            f"(got {strategy!r})"
        )
    key_path = None
    if key_file:
        key_path = Path(os.path.expanduser(str(key_file)))
        if not key_path.is_absolute():
            key_path = path.parent / key_path
    return Connector(
        name=name,
        braze_workspaces=_workspaces(item.get("braze_workspaces", ["*"]), where),
        event_types=_event_types(item.get("event_types", ["*"]), where),
        segment_workspace=str(segment["workspace"]),
        segment_source=str(segment["source"]),
        region=region,
        message_id=strategy,
        write_key_env=str(key_env) if key_env else None,
        write_key_file=key_path,
        source_file=path,
    )


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        return [str(v) for v in value]
    return []


def _workspaces(value: Any, where: str) -> tuple[str, ...]:
    items = _as_list(value)
    if not items:
        raise ConfigError(f"{where}: braze_workspaces must be a non-empty list (or '*')")
    return ("*",) if "*" in items else tuple(dict.fromkeys(items))


def _event_types(value: Any, where: str) -> tuple[str, ...]:
    items = _as_list(value)
    if not items:
        raise ConfigError(f"{where}: event_types must be a non-empty list (or '*')")
    types = catalogue.load()
    chosen: dict[str, None] = {}
    for item in items:
        if item == "*":
            chosen.update(dict.fromkeys(types))
        elif item.startswith("family:"):
            family = item.partition(":")[2]
            members = [t.event_type for t in types.values() if t.family == family]
            if not members:
                families = sorted({t.family for t in types.values()})
                raise ConfigError(
                    f"{where}: unknown family {family!r} (known: {', '.join(families)})"
                )
            chosen.update(dict.fromkeys(members))
        else:
            try:
                chosen[catalogue.resolve(item).event_type] = None
            except catalogue.CatalogueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    return tuple(chosen)


def _workspaces_overlap(a: Connector, b: Connector) -> bool:
    return (
        a.all_workspaces
        or b.all_workspaces
        or bool(set(a.braze_workspaces) & set(b.braze_workspaces))
    )


def check_conflicts(connectors: list[Connector], path: Path) -> list[str]:
    """The two configurations Braze and Segment document as losing data."""
    errors: list[str] = []
    for i, a in enumerate(connectors):
        for b in connectors[i + 1 :]:
            if a.segment_workspace == b.segment_workspace:
                shared = sorted(a.kinds & b.kinds)
                if shared:
                    errors.append(
                        f"{path}: connectors {a.name!r} and {b.name!r} both send {shared[0]} "
                        f"events to Segment workspace {a.segment_workspace!r}: Braze documents "
                        "that two connectors of the same kind in one workspace get their events "
                        "de-duplicated away or lost; send them to different workspaces"
                    )
                continue
            if a.message_id != "braze_id" or b.message_id != "braze_id":
                continue
            common = [t for t in a.event_types if t in set(b.event_types)]
            if common and _workspaces_overlap(a, b):
                errors.append(
                    f"{path}: connectors {a.name!r} and {b.name!r} both send {common[0]}"
                    f"{' and more' if len(common) > 1 else ''} to Segment workspaces "
                    f"{a.segment_workspace!r} and {b.segment_workspace!r} with message_id: "
                    "braze_id: Segment de-duplicates messageIds across all workspaces for about "
                    "24 hours, so one workspace would drop them; set message_id: "
                    "workspace_scoped on at least one of them"
                )
    return errors
