"""The event catalogue: one source of truth for every supported Currents event type.

The catalogue lives in two dbt seeds so that models and Python read the same rows:

- ``seeds/currents_event_catalogue.csv``: one row per supported type (family, Segment event name,
  older Segment spellings accepted on the received side, and how fields map into a track call).
- ``seeds/currents_event_fields.csv``: the fields of each type (name, type, nullability, position,
  and ``lifecycle``: ``current`` fields are in Braze's newest schema, ``removed`` ones only in
  older files).

Mapping columns use ``target=source`` pairs separated by ``;`` (``email=email_address``).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

# Raw Currents tables and the dbt sources read this schema.
RAW_SCHEMA = "raw_currents"

# Avro primitive -> the catalogue's own type names.
_AVRO_TYPES = {
    "string": "string",
    "int": "int",
    "long": "long",
    "boolean": "boolean",
    "float": "float",
    "double": "double",
}

# Catalogue type -> DuckDB column type (typed raw tables, typed staging).
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "long": "BIGINT",
    "boolean": "BOOLEAN",
    "float": "FLOAT",
    "double": "DOUBLE",
    "array<string>": "VARCHAR[]",
}


class CatalogueError(ValueError):
    """The catalogue files are inconsistent, or a name is not in them."""


@dataclass(frozen=True)
class EventField:
    name: str
    type: str  # a key of DUCKDB_TYPES
    nullable: bool
    position: int
    lifecycle: str  # "current" or "removed"

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class EventType:
    event_type: str  # Braze's dotted name, e.g. users.messages.email.Send
    table_name: str  # users_messages_email_send (Braze's seed spelling)
    family: str
    segment_event: str
    segment_event_aliases: tuple[str, ...]
    context_traits: dict[str, str]  # trait name -> source field
    context_device: dict[str, str]  # device key -> source field
    property_renames: dict[str, str]  # source field -> property name (written source=target)
    excluded_properties: tuple[str, ...]
    fields: tuple[EventField, ...] = field(default=())
    # Which engagement count the event adds to (send, delivery, open, click, bounce,
    # unsubscribe, conversion) in fct_message_engagement_daily; "" when none.
    engagement_metric: str = ""

    @property
    def current_fields(self) -> tuple[EventField, ...]:
        return tuple(f for f in self.fields if f.lifecycle == "current")

    def field(self, name: str) -> EventField:
        for f in self.fields:
            if f.name == name:
                return f
        raise CatalogueError(f"{self.event_type} has no field {name!r} in the catalogue")


def table_name_for(event_type: str) -> str:
    """Raw table name of any Currents type, supported or not (Braze's seed spelling)."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", event_type.strip()).strip("_").lower()
    if not name:
        raise CatalogueError(f"cannot derive a table name from event type {event_type!r}")
    return name


def avro_field_type(avro_type: object) -> tuple[str, bool]:
    """(catalogue type, nullable) of an Avro field type as Braze writes them."""
    nullable = False
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        nullable = len(branches) < len(avro_type)
        if len(branches) != 1:
            raise CatalogueError(f"unsupported Avro union {avro_type!r}")
        avro_type = branches[0]
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "array":
            item, _ = avro_field_type(avro_type["items"])
            if item != "string":
                raise CatalogueError(f"unsupported Avro array item type {avro_type!r}")
            return "array<string>", nullable
        avro_type = avro_type.get("type")
    if avro_type not in _AVRO_TYPES:
        raise CatalogueError(f"unsupported Avro type {avro_type!r}")
    return _AVRO_TYPES[avro_type], nullable


def project_dir() -> Path:
    """The dbt project root (holds ``seeds/``); ``CURRENTS_SEGMENT_PROJECT_DIR`` overrides."""
    env = os.environ.get("CURRENTS_SEGMENT_PROJECT_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "dbt_project.yml").exists():
            return parent
    packaged = here.parent / "_project"
    if packaged.exists():
        return packaged
    raise CatalogueError("cannot find the project directory; set CURRENTS_SEGMENT_PROJECT_DIR")


def _pairs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in (text or "").split(";"))):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise CatalogueError(f"malformed mapping {item!r} (expected target=source)")
        out[key.strip()] = value.strip()
    return out


@cache
def load(seeds_dir: Path | None = None) -> dict[str, EventType]:
    """Every supported event type by its dotted name, fields included."""
    seeds = seeds_dir or project_dir() / "seeds"
    fields: dict[str, list[EventField]] = {}
    with (seeds / "currents_event_fields.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["field_type"] not in DUCKDB_TYPES:
                raise CatalogueError(
                    f"currents_event_fields.csv: unknown type {row['field_type']!r}"
                )
            fields.setdefault(row["event_type"], []).append(
                EventField(
                    name=row["field_name"],
                    type=row["field_type"],
                    nullable=row["is_nullable"] == "true",
                    position=int(row["field_position"]),
                    lifecycle=row["lifecycle"],
                )
            )
    types: dict[str, EventType] = {}
    with (seeds / "currents_event_catalogue.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            name = row["event_type"]
            if name not in fields:
                raise CatalogueError(f"currents_event_catalogue.csv: {name} has no fields")
            types[name] = EventType(
                event_type=name,
                table_name=row["table_name"],
                family=row["family"],
                segment_event=row["segment_event"],
                segment_event_aliases=tuple(
                    a.strip() for a in row["segment_event_aliases"].split("|") if a.strip()
                ),
                context_traits=_pairs(row["context_traits"]),
                context_device=_pairs(row["context_device"]),
                property_renames=_pairs(row["property_renames"]),
                excluded_properties=tuple(
                    p.strip() for p in row["excluded_properties"].split(";") if p.strip()
                ),
                fields=tuple(sorted(fields[name], key=lambda f: f.position)),
                engagement_metric=(row.get("engagement_metric") or "").strip(),
            )
    return types


def supported() -> list[EventType]:
    return list(load().values())


def resolve(name: str) -> EventType:
    """Find a type by dotted name, table/seed spelling (users_campaigns_abort), any case."""
    types = load()
    if name in types:
        return types[name]
    wanted = table_name_for(name)
    for t in types.values():
        if t.table_name == wanted:
            return t
    raise CatalogueError(f"{name!r} is not a supported Currents event type")


def is_supported(name: str) -> bool:
    try:
        resolve(name)
    except CatalogueError:
        return False
    return True


def by_segment_name(segment_event: str) -> EventType:
    """The type a received Segment event name belongs to (Braze's name or an older spelling)."""
    lowered = segment_event.strip().lower()
    for t in load().values():
        names = (t.segment_event, *t.segment_event_aliases)
        if any(n.lower() == lowered for n in names):
            return t
    raise CatalogueError(f"{segment_event!r} is not a Segment event name in the catalogue")
