"""``GET /events/volume``: Segment Public API event volumes from what the emulator kept.

Mirrors Segment's ``getEventsVolumeFromWorkspace`` (v1): ``granularity`` DAY|HOUR|MINUTE,
``startTime`` inclusive, ``endTime`` exclusive, ``groupBy`` (eventName, eventType, source),
filters ``sourceId``, ``eventName``, ``eventType``, paging ``pagination.count`` /
``pagination.cursor``. Answer: ``{"data": {"path", "query", "result": [{"source"?,
"eventName"?, "eventType"?, "total", "series": [{"time", "count"}]}], "pagination": {...}}}``,
results ordered by total (largest first). Counts are by **received time**, as Segment's are,
and count each accepted event once (an injected duplicate delivery is not a second ingest).
"""

from __future__ import annotations

import base64
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from .emulator_config import EmulatorConfig, Source

GRANULARITY_SECONDS = {"MINUTE": 60, "HOUR": 3600, "DAY": 86400}
GROUP_BY = ("eventName", "eventType", "source")
DEFAULT_PAGE = 10
MAX_PAGE = 1000
VOLUME_PATH = "/observability/event_volume/v1.json"


class VolumeQueryError(ValueError):
    """A query parameter is missing or invalid (answered with 422, as Segment does)."""


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str, name: str) -> int:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise VolumeQueryError(f"{name}: {value!r} is not an ISO-8601 time") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def _list_param(pairs: list[tuple[str, str]], name: str) -> list[str]:
    """Array parameters as Segment's clients send them: repeated, ``name.N`` or comma lists."""
    values: list[str] = []
    for key, value in pairs:
        if key == name or key.startswith(name + ".") or key == name + "[]":
            values.extend(v.strip() for v in value.split(",") if v.strip())
    return values


def events_volume(
    query_string: str,
    config: EmulatorConfig,
    workspaces: tuple[str, ...],
    counts: Counter[tuple[str, str, int]],
) -> dict[str, Any]:
    """The Public API answer for the workspaces a token may read."""
    pairs = parse_qsl(query_string, keep_blank_values=True)
    single = dict(pairs)
    granularity = single.get("granularity", "").upper()
    if granularity not in GRANULARITY_SECONDS:
        raise VolumeQueryError(f"granularity must be one of {sorted(GRANULARITY_SECONDS)}")
    if "startTime" not in single or "endTime" not in single:
        raise VolumeQueryError("startTime and endTime are required")
    start = _parse_iso(single["startTime"], "startTime")
    end = _parse_iso(single["endTime"], "endTime")
    if end <= start:
        raise VolumeQueryError("endTime must be after startTime")
    step = GRANULARITY_SECONDS[granularity]
    if start % step or end % step:
        raise VolumeQueryError(f"startTime and endTime must be aligned to {granularity}")
    group_by = _list_param(pairs, "groupBy")
    bad = [g for g in group_by if g not in GROUP_BY]
    if bad:
        raise VolumeQueryError(f"groupBy {bad}: options are {list(GROUP_BY)}")
    source_ids = set(_list_param(pairs, "sourceId"))
    event_names = set(_list_param(pairs, "eventName"))
    event_types = set(_list_param(pairs, "eventType"))
    try:
        page_size = int(single.get("pagination.count", DEFAULT_PAGE))
        offset = int(base64.b64decode(single.get("pagination.cursor", "MA==")).decode())
    except ValueError as exc:
        raise VolumeQueryError("pagination.count / pagination.cursor are invalid") from exc
    if not 1 <= page_size <= MAX_PAGE or offset < 0:
        raise VolumeQueryError(f"pagination.count must be in 1..{MAX_PAGE}")

    sources: dict[str, Source] = {s.slug: s for s in config.sources if s.workspace in workspaces}
    buckets = list(range(start, end, step))
    series: dict[tuple[Any, ...], Counter[int]] = {}
    for (slug, event_text, minute), n in counts.items():
        src = sources.get(slug)
        if src is None or not start <= minute < end:
            continue
        if source_ids and src.source_id not in source_ids:
            continue
        if event_names and event_text not in event_names:
            continue
        if event_types and "track" not in event_types:
            continue
        key = tuple(
            slug if g == "source" else event_text if g == "eventName" else "track" for g in group_by
        )
        series.setdefault(key, Counter())[start + (minute - start) // step * step] += n
    if not series and not group_by:
        series[()] = Counter()
    results = []
    for key, per_bucket in series.items():
        entry: dict[str, Any] = {}
        for g, value in zip(group_by, key, strict=True):
            if g == "source":
                src = sources[value]
                entry["source"] = {
                    "id": src.source_id,
                    "slug": src.slug,
                    "name": src.name,
                    "metadata": {"workspace": src.workspace, "region": src.region},
                }
            else:
                entry[g] = value
        entry["total"] = sum(per_bucket.values())
        entry["series"] = [{"time": _iso(b), "count": per_bucket.get(b, 0)} for b in buckets]
        results.append(entry)
    results.sort(key=lambda e: (-e["total"], repr(sorted((k, str(v)) for k, v in e.items()))))
    page = results[offset : offset + page_size]

    def cursor(n: int) -> str:
        return base64.b64encode(str(n).encode()).decode()

    pagination: dict[str, Any] = {"current": cursor(offset), "totalEntries": len(results)}
    if offset + page_size < len(results):
        pagination["next"] = cursor(offset + page_size)
    if offset > 0:
        pagination["previous"] = cursor(max(0, offset - page_size))
    query = {
        "granularity": granularity,
        "startTime": _iso(start),
        "endTime": _iso(end),
    }
    if group_by:
        query["groupBy"] = group_by
    for name, values in (
        ("sourceId", source_ids),
        ("eventName", event_names),
        ("eventType", event_types),
    ):
        if values:
            query[name] = sorted(values)
    return {
        "data": {
            "path": VOLUME_PATH,
            "query": query,
            "result": page,
            "pagination": pagination,
        }
    }
