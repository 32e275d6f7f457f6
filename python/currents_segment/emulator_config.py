"""Configuration of the local Segment emulator: workspaces, sources, write keys, faults.

The YAML (or an equivalent dict) looks like::

    dedupe_window_hours: 24
    public_api_token_env: CS_EMULATOR_API_TOKEN   # or public_api_token: ...
    workspaces:
      - name: acme-us
        region: us                # us | eu
        public_api_token: ...     # optional, scopes /events/volume to this workspace
        sources:
          - name: Braze production
            slug: braze_prod      # the warehouse schema name
            write_key_env: SEGMENT_WRITE_KEY_PROD   # or write_key: ...
            revoked: false
            revoked_windows: [{from: "2034-06-14T00:00:00Z", to: "2034-06-14T06:00:00Z"}]
    faults: {rate_limit_every: 0, error_5xx_rate: 0.0, seed: 0, ...}

Write keys are secrets: they are read from the file or the environment and only a short
fingerprint (:func:`fingerprint`) ever reaches a log, a stats answer or the store.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REGIONS = ("us", "eu")
_SLUG = re.compile(r"^[a-z_][a-z0-9_]*$")
# Schema of the emulator's own tables (dropped, duplicated): no source may take it.
EMULATOR_SCHEMA = "_emulator"


class EmulatorConfigError(ValueError):
    """The emulator configuration is invalid; the message names the file and the setting."""


def fingerprint(secret: str) -> str:
    """A short, non-reversible label for a write key or token: safe to log."""
    digest = hashlib.sha256(secret.encode()).hexdigest()[:8]
    return f"{secret[:4]}…{digest}"


def parse_time_us(value: Any, where: str) -> int:
    """ISO-8601 (naive means UTC) -> epoch microseconds; a clear error otherwise."""
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise EmulatorConfigError(f"{where}: {value!r} is not an ISO-8601 time") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)


@dataclass(frozen=True)
class Faults:
    """Injected faults. Rates are shares in [0, 1]; every draw comes from ``seed``."""

    rate_limit_every: int = 0  # every Nth tracking request -> 429 (0 = never)
    error_5xx_rate: float = 0.0  # share of tracking requests -> 500/502/503
    slow_ms: int = 0  # delay before answering each tracking request
    drop_connection_rate: float = 0.0  # processed (events kept), then closed without answer
    drop_connection_before_processing_rate: float = 0.0  # body read, nothing kept, closed
    silent_loss_rate: float = 0.0  # share of accepted events answered 200 but not kept
    duplicate_delivery_rate: float = 0.0  # share of accepted events stored twice
    seed: int = 0

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, where: str) -> Faults:
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise EmulatorConfigError(
                f"{where}: unknown fault(s) {unknown}; known: {sorted(known)}"
            )
        values: dict[str, Any] = {}
        for name, value in data.items():
            kind = int if known[name].type in ("int", int) else float
            try:
                values[name] = kind(value)
            except (TypeError, ValueError) as exc:
                raise EmulatorConfigError(f"{where}.{name}: {value!r} is not a number") from exc
            if name.endswith("_rate") and not 0.0 <= values[name] <= 1.0:
                raise EmulatorConfigError(f"{where}.{name}: {value!r} is not in [0, 1]")
            if kind is int and name != "seed" and values[name] < 0:
                raise EmulatorConfigError(f"{where}.{name}: {value!r} is negative")
        return cls(**values)

    def merged(self, overrides: dict[str, Any] | None, where: str) -> Faults:
        base = {f.name: getattr(self, f.name) for f in fields(self)}
        base.update(overrides or {})
        return Faults.from_mapping(base, where)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Source:
    workspace: str
    region: str
    name: str
    slug: str
    source_id: str
    write_key: str = field(repr=False)
    revoked: bool = False
    revoked_windows: tuple[tuple[int, int], ...] = ()  # [from, to) in epoch microseconds

    @property
    def key_fingerprint(self) -> str:
        return fingerprint(self.write_key)

    def revoked_for(self, event_time_us: int) -> bool:
        """Revoked outright, or within a window containing the event's ``timestamp``."""
        if self.revoked:
            return True
        return any(start <= event_time_us < end for start, end in self.revoked_windows)


@dataclass(frozen=True)
class EmulatorConfig:
    sources: tuple[Source, ...]
    dedupe_window_hours: float = 24.0
    faults: Faults = Faults()
    # bearer token -> workspace names it may read (None key never stored)
    api_tokens: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    public_api_rate_per_minute: int = 60
    flush_every_events: int = 200_000
    flush_interval_seconds: float = 5.0
    # Write the store from a forked child (POSIX), off the event loop's GIL; else in a thread.
    flush_in_child_process: bool = hasattr(os, "fork")
    clock_offset_seconds: float = 0.0
    origin: str = "<dict>"

    def by_key(self) -> dict[str, Source]:
        return {s.write_key: s for s in self.sources}

    @property
    def workspaces(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.workspace for s in self.sources))


def _secret(entry: dict[str, Any], key: str, where: str, required: bool) -> str | None:
    inline = entry.get(key)
    env_name = entry.get(f"{key}_env")
    if inline and env_name:
        raise EmulatorConfigError(f"{where}: give {key} or {key}_env, not both")
    if env_name:
        value = os.environ.get(str(env_name))
        if not value:
            raise EmulatorConfigError(
                f"{where}.{key}_env: environment variable {env_name!r} is not set"
            )
        return value
    if inline:
        return str(inline)
    if required:
        raise EmulatorConfigError(f"{where}: {key} or {key}_env is required")
    return None


def load_config(config: dict[str, Any] | Path | str) -> EmulatorConfig:
    """Read and validate a config file (YAML) or dict; errors name the file and the setting."""
    if isinstance(config, dict):
        data, origin = config, "<dict>"
    else:
        path = Path(config)
        origin = str(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise EmulatorConfigError(f"emulator config {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise EmulatorConfigError(f"emulator config {path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise EmulatorConfigError(f"emulator config {origin}: top level must be a mapping")
    prefix = f"emulator config {origin}"

    sources: list[Source] = []
    seen_keys: dict[str, str] = {}
    seen_slugs: set[str] = set()
    api_tokens: dict[str, list[str]] = {}
    workspaces = data.get("workspaces") or []
    if not isinstance(workspaces, list) or not workspaces:
        raise EmulatorConfigError(f"{prefix}: workspaces must be a non-empty list")
    for wi, ws in enumerate(workspaces):
        where = f"{prefix}: workspaces[{wi}]"
        if not isinstance(ws, dict) or not ws.get("name"):
            raise EmulatorConfigError(f"{where}: a workspace needs a name")
        region = str(ws.get("region", "us")).lower()
        if region not in REGIONS:
            raise EmulatorConfigError(f"{where}.region: {region!r} is not one of {REGIONS}")
        token = _secret(ws, "public_api_token", where, required=False)
        if token:
            api_tokens.setdefault(token, []).append(str(ws["name"]))
        for si, src in enumerate(ws.get("sources") or []):
            swhere = f"{where}.sources[{si}]"
            if not isinstance(src, dict):
                raise EmulatorConfigError(f"{swhere}: must be a mapping")
            slug = str(src.get("slug") or "")
            if not _SLUG.match(slug) or slug == EMULATOR_SCHEMA:
                raise EmulatorConfigError(
                    f"{swhere}.slug: {slug!r} is not a schema name (lower case, digits, _)"
                )
            if slug in seen_slugs:
                raise EmulatorConfigError(f"{swhere}.slug: {slug!r} is used by another source")
            seen_slugs.add(slug)
            key = _secret(src, "write_key", swhere, required=True)
            assert key is not None
            if key in seen_keys:
                raise EmulatorConfigError(
                    f"{swhere}: write key {fingerprint(key)} is also {seen_keys[key]}"
                )
            seen_keys[key] = swhere
            windows = []
            for ri, window in enumerate(src.get("revoked_windows") or []):
                rwhere = f"{swhere}.revoked_windows[{ri}]"
                if not isinstance(window, dict) or "from" not in window or "to" not in window:
                    raise EmulatorConfigError(f"{rwhere}: needs from and to")
                start = parse_time_us(window["from"], f"{rwhere}.from")
                end = parse_time_us(window["to"], f"{rwhere}.to")
                if end <= start:
                    raise EmulatorConfigError(f"{rwhere}: to must be after from")
                windows.append((start, end))
            sources.append(
                Source(
                    workspace=str(ws["name"]),
                    region=region,
                    name=str(src.get("name") or slug),
                    slug=slug,
                    source_id=str(src.get("id") or slug),
                    write_key=key,
                    revoked=bool(src.get("revoked", False)),
                    revoked_windows=tuple(windows),
                )
            )
    if not sources:
        raise EmulatorConfigError(f"{prefix}: no sources configured")
    global_token = _secret(data, "public_api_token", prefix, required=False)
    if global_token:
        api_tokens.setdefault(global_token, []).extend(dict.fromkeys(s.workspace for s in sources))

    def number(name: str, default: float, kind: type = float) -> Any:
        value = data.get(name, default)
        try:
            number_value = kind(value)
        except (TypeError, ValueError) as exc:
            raise EmulatorConfigError(f"{prefix}: {name}: {value!r} is not a number") from exc
        if number_value < 0:
            raise EmulatorConfigError(f"{prefix}: {name}: {value!r} is negative")
        return number_value

    return EmulatorConfig(
        sources=tuple(sources),
        dedupe_window_hours=number("dedupe_window_hours", 24.0),
        faults=Faults.from_mapping(data.get("faults"), f"{prefix}: faults"),
        api_tokens={k: tuple(dict.fromkeys(v)) for k, v in api_tokens.items()},
        public_api_rate_per_minute=number("public_api_rate_per_minute", 60, int),
        flush_every_events=number("flush_every_events", 200_000, int) or 200_000,
        flush_interval_seconds=number("flush_interval_seconds", 5.0),
        flush_in_child_process=_flag(data, "flush_in_child_process", hasattr(os, "fork"), prefix),
        clock_offset_seconds=float(data.get("clock_offset_seconds", 0.0) or 0.0),
        origin=origin,
    )


def _flag(data: dict[str, Any], name: str, default: bool, where: str) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise EmulatorConfigError(f"{where}: {name}: {value!r} is not true or false")
    if value and not hasattr(os, "fork"):
        raise EmulatorConfigError(f"{where}: {name}: this platform cannot fork")
    return value


def parse_fault_flags(flags: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--fault name=value`` flags -> a mapping (validated later by :class:`Faults`)."""
    out: dict[str, str] = {}
    for flag in flags:
        name, sep, value = flag.partition("=")
        if not sep or not name.strip():
            raise EmulatorConfigError(f"--fault {flag!r}: expected name=value")
        out[name.strip()] = value.strip()
    return out
