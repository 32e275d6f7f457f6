"""The emulator's Segment-warehouse-shaped store: Parquet parts, one schema per source.

Layout (see docs/architecture.md, "Emulator store")::

    <store>/<source_slug>/tracks/part-*.parquet        every kept track call
    <store>/<source_slug>/<snake_event>/part-*.parquet  the same calls + one column per property
    <store>/_emulator/dropped/part-*.parquet           accepted with 200 but not kept, and why
    <store>/_emulator/duplicated/part-*.parquet        injected duplicate deliveries

Rows are buffered in memory and written in bulk as Arrow columns (pyarrow -> Parquet), each part
under a temporary name first and renamed, so a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import stat
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from . import duck
from .emulator_config import EMULATOR_SCHEMA

# Common columns of `tracks` and every per-event table, in Segment's warehouse names.
TRACK_COLUMNS = (
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
)
_TIME_COLUMNS = ("received_at", "sent_at", "timestamp", "original_timestamp")
DROPPED_COLUMNS = (
    "message_id",
    "reason",
    "workspace",
    "source",
    "received_at",
    "event",
    "timestamp",
    "write_key_fingerprint",
)
DUPLICATED_COLUMNS = ("message_id", "reason", "workspace", "source", "received_at", "event")
# A property whose snake_cased name collides with a common column gets this prefix.
PROPERTY_COLLISION_PREFIX = "property_"


def snakecase(name: str) -> str:
    """Segment's go-snakecase (segmentio/go-snakecase), ported byte for byte.

    "Email Link Clicked" -> ``email_link_clicked``, "WhatsApp Sent" -> ``whats_app_sent``,
    "In-App Message Viewed" -> ``in_app_message_viewed``, ``messageId`` -> ``message_id``.
    Characters outside ASCII letters and digits separate words and are dropped.
    """
    s = name
    n = len(s)
    idx = 0
    while idx < n and (
        _lower(s[idx])
        or _digit(s[idx])
        or (s[idx] == "_" and idx < n - 1 and (_lower(s[idx + 1]) or _digit(s[idx + 1])))
    ):
        idx += 1
    if idx == n:
        return s
    if idx > 0 and _digit(s[idx - 1]):
        idx -= 1
    out = [s[:idx]]
    length = idx
    while idx < n:
        c = s[idx]
        if not (_lower(c) or _upper(c) or _digit(c)):
            idx += 1
            continue
        if length > 0:
            out.append("_")
            length += 1
        start = idx
        while idx < n and (_upper(s[idx]) or _digit(s[idx])):
            idx += 1
        while idx < n and (_lower(s[idx]) or _digit(s[idx])):
            idx += 1
        out.append(s[start:idx].lower())
        length += idx - start
    return "".join(out)


def _lower(c: str) -> bool:
    return "a" <= c <= "z"


def _upper(c: str) -> bool:
    return "A" <= c <= "Z"


def _digit(c: str) -> bool:
    return "0" <= c <= "9"


_SNAKE_CACHE: dict[str, str] = {}


def snake_cached(name: str) -> str:
    found = _SNAKE_CACHE.get(name)
    if found is None:
        found = snakecase(name)
        if len(_SNAKE_CACHE) < 100_000:  # bounded: keys come from clients
            _SNAKE_CACHE[name] = found
    return found


# prefix -> (key -> column name): the same few keys recur in every event.
_FLAT_NAMES: dict[str, dict[str, str]] = {}
# (prefix, keys of an object without nested values) -> its column names: most objects of a
# stream have one of a few key sets, so their columns are found with one lookup.
_FLAT_SHAPES: dict[tuple[str, tuple[Any, ...]], tuple[str, ...]] = {}
_NESTED = frozenset((dict, list))


def flatten(prefix: str, obj: dict[str, Any], names: list[str], values: list[Any]) -> None:
    """Nested objects -> ``prefix_key_subkey`` columns (appended to ``names`` and ``values``);
    arrays are kept as JSON text.

    Segment's warehouses flatten objects the same way and store arrays as strings. Two keys can
    give one name (``emailAddress``, ``email_address``): the writer keeps the last value.
    """
    flat = obj.values()
    # No nested value (checked in C): the columns of this key set come from one lookup and
    # the values are appended as they are, without a Python step per key.
    if _NESTED.isdisjoint(map(type, flat)):
        shape = (prefix, tuple(obj))
        found = _FLAT_SHAPES.get(shape)
        if found is None:
            found_names: list[str] = []
            _flatten_keys(prefix, obj, found_names, [])
            found = tuple(found_names)
            if len(_FLAT_SHAPES) < 10_000 and len(found) <= 256:  # bounded: keys from clients
                _FLAT_SHAPES[shape] = found
        names.extend(found)
        values.extend(flat)
        return
    _flatten_keys(prefix, obj, names, values)


def _flatten_keys(prefix: str, obj: dict[str, Any], names: list[str], values: list[Any]) -> None:
    cache = _FLAT_NAMES.get(prefix)
    if cache is None:
        cache = {}
        if len(_FLAT_NAMES) < 10_000:  # bounded: prefixes come from clients' keys
            _FLAT_NAMES[prefix] = cache
    for key, value in obj.items():
        name = cache.get(key)
        if name is None:
            name = prefix + snakecase(str(key))
            if len(cache) < 10_000:  # bounded: keys come from clients
                cache[key] = name
        kind = type(value)
        if kind is dict:
            if value:  # an empty object has no columns
                flatten(name + "_", value, names, values)
        elif kind is list:
            names.append(name)
            values.append(orjson.dumps(value).decode())
        else:
            names.append(name)
            values.append(value)


# A kept row's common columns, in this order, before its context_* columns.
ROW_COLUMNS = TRACK_COLUMNS[:9]
_ROW_NAMES = frozenset(ROW_COLUMNS)

# (source slug, snake_cased event, row column names, property names): one table shape.
Shape = tuple[str, str, tuple[str, ...], tuple[str, ...]]


@dataclass
class KeptEvents:
    """Kept track calls of one (source, event name) since the last flush: each call's JSON
    (orjson's, any top-level context merged in) on a line of its own, and beside it the
    messageId it was kept under, its receive time and its request's sentAt (epoch us).

    No parsed event outlives its request: the flush reads these lines in bulk
    (:func:`kept_columns`). Per-event rows built at accept time cost about as much again as
    the parse, and a buffer of Python objects is copied page by page by a forked writer."""

    lines: bytearray = field(default_factory=bytearray)
    mids: list[str] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    sent: list[int | None] = field(default_factory=list)

    def add(self, line: bytes, mid: str, now: int, sent_at: int | None) -> None:
        self.lines += line
        self.lines += b"\n"
        self.mids.append(mid)
        self.received.append(now)
        self.sent.append(sent_at)

    def extend(self, other: KeptEvents) -> None:
        self.lines += other.lines
        self.mids.extend(other.mids)
        self.received.extend(other.received)
        self.sent.extend(other.sent)

    def events(self) -> list[dict[str, Any]]:
        """The kept calls parsed again (the row-by-row path and the rescue file)."""
        return [orjson.loads(line) for line in bytes(self.lines).split(b"\n")[:-1]]


@dataclass
class PendingWrites:
    """What the server buffered since the last flush: kept calls by (source slug, event name as
    sent), and the dropped and duplicated records."""

    kept: dict[tuple[str, str], KeptEvents] = field(default_factory=dict)
    kept_rows: int = 0
    dropped: list[dict[str, Any]] = field(default_factory=list)
    duplicated: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return self.kept_rows + len(self.dropped) + len(self.duplicated)

    def keep(
        self, slug: str, event_text: str, line: bytes, mid: str, now: int, sent_at: int | None
    ) -> None:
        """One kept call: ``line`` is its JSON (``orjson.dumps``)."""
        group = self.kept.get((slug, event_text))
        if group is None:
            group = self.kept[(slug, event_text)] = KeptEvents()
        group.add(line, mid, now, sent_at)
        self.kept_rows += 1

    def put_back(self, older: PendingWrites) -> None:
        """A failed flush: its rows go back in front of what arrived meanwhile."""
        merged: dict[tuple[str, str], KeptEvents] = {}
        for source in (older.kept, self.kept):
            for key, group in source.items():
                merged.setdefault(key, KeptEvents()).extend(group)
        self.kept = merged
        self.kept_rows += older.kept_rows
        self.dropped[:0] = older.dropped
        self.duplicated[:0] = older.duplicated

    def kept_dicts(self) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(source slug, row, properties) of every kept row, as dicts."""
        for (slug, event_text), group in self.kept.items():
            event = snake_cached(event_text)
            rows = zip(group.events(), group.mids, group.received, group.sent, strict=True)
            for item, mid, now, sent_at in rows:
                (_s, _e, names, props), values = kept_row(
                    slug, mid, event, item, now, sent_at, None
                )
                n = len(names)
                row = dict(zip(names, values[:n], strict=True))
                yield slug, row, dict(zip(props, values[n:], strict=True))


# ISO-8601 text -> epoch microseconds: events of one second share their timestamp text.
_TIME_CACHE: dict[str, int | None] = {}


def time_us(value: Any) -> int | None:
    """ISO-8601 -> epoch microseconds (naive = UTC); None when absent or unparseable."""
    if not value or type(value) is not str:
        return None
    found = _TIME_CACHE.get(value, _TIME_CACHE)
    if found is not _TIME_CACHE:
        return found  # type: ignore[return-value]
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    else:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        parsed = int(dt.timestamp() * 1_000_000)
    if len(_TIME_CACHE) >= 100_000:  # bounded: the texts come from clients
        _TIME_CACHE.clear()
    _TIME_CACHE[value] = parsed
    return parsed


def event_times(item: dict[str, Any], now: int, sent_at: int | None) -> tuple[int, int]:
    """(timestamp, original_timestamp) in epoch microseconds, as Segment sets them: the given
    timestamp, else the skew-corrected originalTimestamp, else the receive time."""
    original = time_us(item.get("originalTimestamp"))
    timestamp = time_us(item.get("timestamp"))
    if timestamp is None:
        if original is not None and sent_at is not None:
            timestamp = now - (sent_at - original)
        else:
            timestamp = now
    return timestamp, timestamp if original is None else original


def kept_row(
    slug: str,
    mid: str,
    event: str,
    item: dict[str, Any],
    now: int,
    sent_at: int | None,
    top_context: dict[str, Any] | None,
) -> tuple[Shape, tuple[Any, ...]]:
    """One kept track call -> its table shape and values (common, context_*, properties)."""
    user_id = item.get("userId")
    anonymous_id = item.get("anonymousId")
    timestamp, original = event_times(item, now, sent_at)
    names = list(ROW_COLUMNS)
    values = [
        mid,
        None if anonymous_id is None else str(anonymous_id),
        None if user_id is None else str(user_id),
        event,
        item["event"],
        now,
        sent_at,
        timestamp,
        original,
    ]
    context = item.get("context")
    if top_context:
        context = {**top_context, **context} if isinstance(context, dict) else top_context
    if isinstance(context, dict) and context:
        flatten("context_", context, names, values)
    prop_names: list[str] = []
    properties = item.get("properties")
    if isinstance(properties, dict) and properties:
        flatten("", properties, prop_names, values)
    return (slug, event, tuple(names), tuple(prop_names)), tuple(values)


def kept_columns(slug: str, event_text: str, group: KeptEvents) -> dict[str, pa.Array]:
    """The kept calls of one event name -> the columns of their table (common, ``context_*``,
    properties), by the store's rules (:func:`kept_row`, :func:`_to_arrow`).

    pyarrow's JSON reader turns the group's lines into typed columns in C++ (:func:`_json_columns`):
    where its types are the ones the rules give, which is nearly always. What it cannot type
    the same way (a value of mixed types, an ISO date it would read as a timestamp, an integer
    beyond 64 bits, objects missing in some rows, two keys giving one column name) goes through
    :func:`kept_row` call by call, which decides every case; so do all calls of a group where
    the reader fails."""
    columns = _json_columns(event_text, group)
    if columns is not None:
        return columns
    event = snake_cached(event_text)
    shapes: dict[Shape, list[tuple[Any, ...]]] = {}
    rows = zip(group.events(), group.mids, group.received, group.sent, strict=True)
    for item, mid, now, sent_at in rows:
        shape, values = kept_row(slug, mid, event, item, now, sent_at, None)
        shapes.setdefault(shape, []).append(values)
    return _event_columns(list(shapes.items()), all_none_typed=False)[0]


# The calls' own fields the store reads, as text: another type there leaves the group to the
# row-by-row path (kept_row turns a non-text id into str()).
_JSON_TOP = pa.schema(
    [
        ("messageId", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("userId", pa.string()),
        ("anonymousId", pa.string()),
        ("timestamp", pa.string()),
        ("originalTimestamp", pa.string()),
    ]
)
# 1 MB blocks: 3.2 against 4.0 CPU us per call for one block per group (ad hoc, 200k calls).
_JSON_READ = pj.ReadOptions(use_threads=False, block_size=1 << 20)
_JSON_PARSE = pj.ParseOptions(explicit_schema=_JSON_TOP, unexpected_field_behavior="infer")
# orjson reads an integer in [2**63, 2**64) as an int, which the rules store as text; the reader
# makes it a DOUBLE. A DOUBLE column with a value that large leaves its group row by row.
_INT64_LIMIT = float(2**63)
_LEAF_TYPES = frozenset((pa.string(), pa.int64(), pa.float64(), pa.bool_(), pa.null()))
_TEXT_COLUMNS = frozenset(TRACK_COLUMNS) | frozenset(DROPPED_COLUMNS)
_TIMESTAMP = pa.timestamp("us")


def _json_columns(event_text: str, group: KeptEvents) -> dict[str, pa.Array] | None:
    """:func:`kept_columns` by pyarrow's JSON reader; None where only the row-by-row rules
    decide."""
    try:
        table = pj.read_json(
            pa.BufferReader(pa.py_buffer(group.lines)),
            read_options=_JSON_READ,
            parse_options=_JSON_PARSE,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # mixed types in one place: text, decided value by value
    if table.num_rows != len(group.mids):
        return None
    originals: list[Any] = []  # the parsed calls, only where an array needs its own JSON text

    def parsed() -> list[Any]:
        if not originals:
            originals.extend(group.events())
        return originals

    columns: dict[str, pa.Array] = {}
    for name, prefix, into in (("context", "context_", columns), ("properties", "", {})):
        if name not in table.column_names:
            continue
        array = table.column(name).combine_chunks()
        if not pa.types.is_struct(array.type):
            continue  # no call has an object here (null or text): kept_row makes no column
        if not _leaf_columns(array, prefix, (name,), parsed, into):
            return None
        if name == "properties":
            for key, values in into.items():
                if key in _ROW_NAMES or key == "uuid_ts" or key.startswith("context_"):
                    key = PROPERTY_COLLISION_PREFIX + key
                if key in columns:
                    return None  # two names collide: the row-by-row rules say which wins
                if key in _TEXT_COLUMNS and values.type not in (*_STRING_TYPES, pa.null()):
                    values = values.cast(pa.string())
                columns[key] = values
    timestamp, original = _event_times(table, group)
    event = snake_cached(event_text)
    n = len(group.mids)
    columns |= {
        "id": pa.array(group.mids, pa.string()),
        "anonymous_id": table.column("anonymousId").combine_chunks(),
        "user_id": table.column("userId").combine_chunks(),
        "event": pa.array([event] * n, pa.string()),
        "event_text": pa.array([event_text] * n, pa.string()),
        "received_at": pa.array(group.received, pa.int64()).cast(_TIMESTAMP),
        "sent_at": pa.array(group.sent, pa.int64()).cast(_TIMESTAMP),
        "timestamp": timestamp.cast(_TIMESTAMP),
        "original_timestamp": original.cast(_TIMESTAMP),
    }
    return columns


# ISO-8601 in UTC with a Z: Arrow parses it as datetime.fromisoformat (time_us) does.
_ISO_Z = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"


def _event_times(table: pa.Table, group: KeptEvents) -> tuple[pa.Array, pa.Array]:
    """:func:`event_times` of every call of a group (epoch us), from the reader's text."""
    timestamps_text = table.column("timestamp").combine_chunks()
    originals_text = table.column("originalTimestamp").combine_chunks()
    if originals_text.null_count == len(originals_text):
        # What the pusher and Braze send: every call has its own UTC timestamp.
        if (
            timestamps_text.null_count == 0
            and pc.all(pc.match_substring_regex(timestamps_text, _ISO_Z)).as_py()
        ):
            with contextlib.suppress(pa.ArrowInvalid):  # e.g. February 30th: time_us decides
                us = timestamps_text.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
                return us, us
        timestamps = list(map(time_us, timestamps_text.to_pylist()))
        if None not in timestamps:
            array = pa.array(timestamps, pa.int64())
            return array, array
    times = [
        event_times({"timestamp": t, "originalTimestamp": o}, now, sent_at)
        for t, o, now, sent_at in zip(
            timestamps_text.to_pylist(),
            originals_text.to_pylist(),
            group.received,
            group.sent,
            strict=True,
        )
    ]
    return pa.array([t for t, _ in times], pa.int64()), pa.array([o for _, o in times], pa.int64())


def _leaf_columns(
    array: pa.Array,
    prefix: str,
    path: tuple[str, ...],
    parsed: Any,
    out: dict[str, pa.Array],
) -> bool:
    """A struct column (objects of the calls at ``path``) -> its leaf columns by flattened
    name in ``out``; False where the rules need the row-by-row path.

    Rows without an object there have nulls. A nested object that is null or missing in some
    row goes row by row: a null value makes a column of its own and a missing key does not,
    which the reader's validity cannot tell apart."""
    parent_nulls = array.null_count
    for field_, child in zip(array.type, array.flatten(), strict=True):
        name = _flat_name(prefix, field_.name)
        kind = child.type
        if kind in _LEAF_TYPES:
            if kind == pa.float64() and (pc.max(pc.abs(child)).as_py() or 0) >= _INT64_LIMIT:
                return False
            column = child
        elif pa.types.is_struct(kind):
            if child.null_count != parent_nulls:
                return False
            if not _leaf_columns(child, name + "_", (*path, field_.name), parsed, out):
                return False
            continue
        elif pa.types.is_list(kind):
            # Arrays as JSON text of the call's own values: the reader's list would turn
            # [1, 2.5] into [1.0, 2.5] and fill keys missing in some of its objects.
            column = pa.array([_json_text(_dig(call, (*path, field_.name))) for call in parsed()])
        else:
            return False  # a timestamp the reader inferred from text, or another type
        if name in out:
            return False  # two keys give one column name: the last one wins, row by row
        out[name] = column
    return True


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if type(value) is not dict:
            return None
        value = value.get(key)
    return value


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _flat_name(prefix: str, key: str) -> str:
    """``prefix`` + snake_cased ``key``: the column name ``_flatten_keys`` gives."""
    cache = _FLAT_NAMES.get(prefix)
    if cache is None:
        cache = {}
        if len(_FLAT_NAMES) < 10_000:  # bounded: prefixes come from clients' keys
            _FLAT_NAMES[prefix] = cache
    name = cache.get(key)
    if name is None:
        name = prefix + snakecase(key)
        if len(cache) < 10_000:  # bounded: keys come from clients
            cache[key] = name
    return name


def _null_as_text(columns: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """A column no call gave a value is text (kept_row's rule), not Arrow's null type."""
    return {
        name: pa.nulls(len(array), pa.string()) if array.type == pa.null() else array
        for name, array in columns.items()
    }


class FlushError(RuntimeError):
    """A flush did not complete; its rows are still buffered."""


class StoreWriter:
    """Writes buffered rows as Parquet parts; one flush at a time."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._run = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
        self._seq = 0
        self.parts_written = 0
        self.rows_written = 0
        self._children: dict[int, int] = {}  # pid of a forked write -> its report pipe

    @staticmethod
    def warm_up() -> None:
        """pyarrow's first Parquet write imports pandas (about 0.7 CPU-s): pay it at start-up,
        not in the middle of the first flush."""
        pq.write_table(pa.table({"warm_up": [1]}), pa.BufferOutputStream())

    def fork_write(self, pending: PendingWrites) -> int:
        """Start :meth:`write` in a forked child process; returns its pid for
        :meth:`wait_child_write`. Call it from the main thread (the child's signals are reset).

        The child gets the buffer as it is (copy-on-write) and writes the parts on a core of its
        own while the server's event loop goes on accepting:
        in one process the flush's Python work (about a third of the emulator's CPU) held the GIL
        the loop needs. The parent must keep ``pending`` untouched until the child is done.
        """
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: write, report, exit without running the parent's cleanup
            code = 1
            try:
                os.close(read_fd)
                gc.disable()  # a collection would touch (and copy) every shared object
                signal.set_wakeup_fd(-1)  # the parent's loop must not hear the child's signals
                # A Ctrl-C or a stop sent to the process group must not cut a write short: the
                # parent waits for this child before its final flush.
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_IGN)
                _close_inherited_sockets(keep=write_fd)
                written = self.write(pending)
                report = {"written": written, "seq": self._seq}
                report |= {"parts": self.parts_written, "rows": self.rows_written}
                code = 0
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
                report = {"error": f"{type(exc).__name__}: {exc}"}
            try:
                with os.fdopen(write_fd, "wb") as out:
                    out.write(orjson.dumps(report))
            finally:
                os._exit(code)
        os.close(write_fd)
        self._children[pid] = read_fd
        return pid

    def wait_child_write(self, pid: int) -> dict[str, int]:
        """Block until the child of :meth:`fork_write` exits; rows written per table, or
        :class:`FlushError` (nothing is put back here)."""
        with os.fdopen(self._children.pop(pid), "rb") as answer:
            data = answer.read()
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        try:
            report = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            report = {}
        if code != 0 or "written" not in report:
            raise FlushError(
                f"store flush in child process {pid} failed (exit {code}): "
                + report.get("error", "no report")
            )
        # The child wrote with this writer's part numbers: carry its counters over.
        self._seq = report["seq"]
        self.parts_written = report["parts"]
        self.rows_written = report["rows"]
        return report["written"]

    def write(self, pending: PendingWrites) -> dict[str, int]:
        """Write every buffered row; returns rows written per table (``schema.table``)."""
        with self._lock:
            # Per source, per table (snake_cased event name: two names as sent can share one).
            by_source: dict[str, dict[str, list[dict[str, pa.Array]]]] = {}
            for (slug, event_text), group in pending.kept.items():
                tables = by_source.setdefault(slug, {})
                columns = kept_columns(slug, event_text, group)
                tables.setdefault(snake_cached(event_text), []).append(columns)
            written: dict[str, int] = {}
            uuid_ts = datetime.now(UTC).replace(tzinfo=None)
            for slug, tables in by_source.items():
                track_parts: list[dict[str, pa.Array]] = []
                n = 0
                for table, chunks in tables.items():
                    columns = chunks[0] if len(chunks) == 1 else _concat_columns(chunks)
                    columns = _null_as_text(columns)
                    rows = len(columns["id"])
                    self._write_part(slug, table, _with_uuid_ts(columns, rows, uuid_ts))
                    track_parts.append(
                        {name: array for name, array in columns.items() if _is_track_column(name)}
                    )
                    written[f"{slug}.{table}"] = rows
                    n += rows
                # tracks = the common and context columns of every per-event table
                self._write_part(
                    slug, "tracks", _with_uuid_ts(_concat_columns(track_parts), n, uuid_ts)
                )
                written[f"{slug}.tracks"] = n
            for table, rows in (("dropped", pending.dropped), ("duplicated", pending.duplicated)):
                if rows:
                    names = list(dict.fromkeys(k for r in rows[:1] for k in r))
                    names += sorted({k for r in rows for k in r} - set(names))
                    columns = {name: _to_arrow(name, [r.get(name) for r in rows]) for name in names}
                    self._write_part(EMULATOR_SCHEMA, table, columns)
                    written[f"{EMULATOR_SCHEMA}.{table}"] = len(rows)
            return written

    def rescue(self, pending: PendingWrites) -> Path:
        """Rows a flush could not write, saved as NDJSON so that nothing is lost silently."""
        path = self.root / EMULATOR_SCHEMA / "unflushed" / f"rows-{self._run}.ndjson"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as fh:
            for slug, row, props in pending.kept_dicts():
                fh.write(
                    orjson.dumps({"table": "kept", "source": slug, "row": row, "properties": props})
                    + b"\n"
                )
            for table, rows in (("dropped", pending.dropped), ("duplicated", pending.duplicated)):
                for row in rows:
                    fh.write(orjson.dumps({"table": table, "row": row}) + b"\n")
        return path

    def _write_part(self, schema: str, table: str, columns: dict[str, pa.Array]) -> None:
        """One Parquet part, written under a temporary name and renamed when complete."""
        self._seq += 1
        stem = f"part-{self._run}-{self._seq:06d}"
        names = _ordered(schema, list(columns))
        arrow = pa.table({name: columns[name] for name in names})
        out_dir = self.root / schema / table
        out_dir.mkdir(parents=True, exist_ok=True)
        partial = out_dir / f".{stem}.parquet.tmp"
        pq.write_table(arrow, partial, compression="lz4")
        os.replace(partial, out_dir / f"{stem}.parquet")
        self.parts_written += 1
        self.rows_written += arrow.num_rows


def _close_inherited_sockets(keep: int) -> None:
    """Close the server's sockets in a forked child: a connection the server closes (or
    aborts, for an injected drop) must not stay open for the client until the child exits."""
    fd_dir = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    for name in os.listdir(fd_dir):
        fd = int(name)
        if fd <= 2 or fd == keep:
            continue
        with contextlib.suppress(OSError):  # closed meanwhile (the listing's own descriptor)
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)


def _event_columns(
    shapes: list[tuple[Shape, list[tuple[Any, ...]]]], all_none_typed: bool = True
) -> tuple[dict[str, pa.Array], int]:
    """Columns of one per-event table and its row count: the row's columns, then the properties
    (a property whose name collides with a common or context column gets ``property_``).
    ``all_none_typed=False``: a column with no value keeps Arrow's null type (typed with the
    table's other chunks, then text: ``_null_as_text``)."""
    row_names: dict[str, None] = {}
    prop_names: dict[str, None] = {}
    for (_slug, _event, names, props), _rows in shapes:
        row_names.update(dict.fromkeys(names))
        prop_names.update(dict.fromkeys(props))
    names_of = {("r", k): k for k in row_names}
    for key in prop_names:
        collides = key in row_names or key == "uuid_ts" or key.startswith("context_")
        names_of[("p", key)] = PROPERTY_COLLISION_PREFIX + key if collides else key
    values: dict[tuple[str, str], list[Any]] = {k: [] for k in names_of}
    total = 0
    for (_slug, _event, names, props), rows in shapes:
        present = [("r", k) for k in names] + [("p", k) for k in props]
        if len(set(present)) < len(present):
            # Two keys flattened to one name: the last value wins, as in a dict.
            present, rows = _last_wins(present, rows)
        # Transpose in C (zip), then pad the columns this shape lacks with nulls.
        for key, column in zip(present, zip(*rows, strict=True), strict=True):
            values[key].extend(column)
        if len(present) < len(values):
            padding = [None] * len(rows)
            for key in values.keys() - set(present):
                values[key].extend(padding)
        total += len(rows)
    columns = {
        names_of[key]: _to_arrow(names_of[key], column, all_none_typed)
        for key, column in values.items()
    }
    return columns, total


def _last_wins(
    present: list[tuple[str, str]], rows: list[tuple[Any, ...]]
) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    keep = list({key: i for i, key in enumerate(present)}.items())
    return [key for key, _ in keep], [tuple(row[i] for _, i in keep) for row in rows]


_STRING_TYPES = (pa.string(), pa.large_string())


def _to_arrow(column: str, values: list[Any], all_none_typed: bool = True) -> pa.Array:
    """Warehouse types: times from epoch microseconds, ids as text, mixed or all-null values as
    text (a string stays a plain string, anything else its JSON text). ``all_none_typed=False``:
    a column with no value keeps Arrow's null type."""
    if column in _TIME_COLUMNS:
        return pa.array(values, pa.int64()).cast(pa.timestamp("us"))
    first = next((v for v in values if v is not None), None)
    if first is None and not all_none_typed:
        return pa.nulls(len(values))
    try:
        # Text is the common case: saying so skips Arrow's type inference (an int among the
        # strings raises, and inference decides).
        array = pa.array(values, pa.string()) if type(first) is str else pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            array = None
    if array is None or not (
        pa.types.is_string(array.type)
        or pa.types.is_boolean(array.type)
        or pa.types.is_int64(array.type)
        or pa.types.is_float64(array.type)
    ):
        return pa.array(
            [v if v is None or type(v) is str else orjson.dumps(v).decode() for v in values],
            pa.string(),
        )
    if column in TRACK_COLUMNS or column in DROPPED_COLUMNS:
        return array if array.type in _STRING_TYPES else array.cast(pa.string())
    return array


def _concat_columns(parts: list[dict[str, pa.Array]]) -> dict[str, pa.Array]:
    """UNION ALL BY NAME of per-event tables: missing columns are nulls; a column whose types
    differ between tables becomes DOUBLE (all numeric) or text."""
    names = sorted({name for part in parts for name in part})
    out: dict[str, pa.Array] = {}
    for name in names:
        arrays = [part.get(name) for part in parts]
        types = {a.type for a in arrays if a is not None and a.type != pa.null()}
        if not types:
            target = pa.string()
        elif len(types) == 1:
            target = types.pop()
        elif all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
            target = pa.float64()
        else:
            target = pa.string()
        chunks = []
        for part, array in zip(parts, arrays, strict=True):
            if array is None or array.type == pa.null():
                n = len(next(iter(part.values())))
                chunks.append(pa.nulls(n, target))
            elif array.type != target:
                chunks.append(_cast_text(array) if target == pa.string() else array.cast(target))
            else:
                chunks.append(array)
        out[name] = pa.concat_arrays(chunks)
    return out


def _cast_text(array: pa.Array) -> pa.Array:
    if pa.types.is_boolean(array.type) or pa.types.is_integer(array.type):
        return array.cast(pa.string())
    return pa.array(
        [v if v is None or type(v) is str else orjson.dumps(v).decode() for v in array.to_pylist()],
        pa.string(),
    )


def _with_uuid_ts(columns: dict[str, pa.Array], n: int, when: datetime) -> dict[str, pa.Array]:
    """Segment's load time column, the same for every row of a flush."""
    return {**columns, "uuid_ts": pa.repeat(pa.scalar(when, pa.timestamp("us")), n)}


def _is_track_column(column: str) -> bool:
    return column in TRACK_COLUMNS or column.startswith("context_")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ordered(schema: str, columns: list[str]) -> list[str]:
    if schema == EMULATOR_SCHEMA:
        return columns
    common = [c for c in TRACK_COLUMNS if c in columns or c == "uuid_ts"]
    context = sorted(c for c in columns if c.startswith("context_"))
    rest = sorted(c for c in columns if c not in TRACK_COLUMNS and not c.startswith("context_"))
    return common + context + rest


# ---------------------------------------------------------------------------------------------
# Reading what the emulator kept


def store_tables(store_dir: Path | str) -> dict[str, list[str]]:
    """Schema -> tables that hold at least one part, e.g. ``{"braze_prod": ["tracks", ...]}``."""
    root = Path(store_dir)
    out: dict[str, list[str]] = {}
    if not root.exists():
        return out
    for schema_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        tables = sorted(
            t.name for t in schema_dir.iterdir() if t.is_dir() and any(t.glob("part-*.parquet"))
        )
        if tables:
            out[schema_dir.name] = tables
    return out


def open_store(
    store_dir: Path | str, con: duckdb.DuckDBPyConnection | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per stored table: ``"<schema>"."<table>"``."""
    con = con or duckdb.connect()
    for schema, tables in store_tables(store_dir).items():
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
        for table in tables:
            glob = Path(store_dir) / schema / table / "part-*.parquet"
            con.execute(
                f"CREATE OR REPLACE VIEW {_ident(schema)}.{_ident(table)} AS "
                f"SELECT * FROM read_parquet({duck.sql_text(str(glob))}, union_by_name=true)"
            )
    return con


def read_table(store_dir: Path | str, schema: str, table: str) -> list[dict[str, Any]]:
    """Every row of one stored table as dicts (empty when the table has no part yet)."""
    if table not in store_tables(store_dir).get(schema, []):
        return []
    con = open_store(store_dir)
    try:
        cur = con.execute(f"SELECT * FROM {_ident(schema)}.{_ident(table)}")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def load_history(
    store_dir: Path | str, since_us: int
) -> tuple[dict[str, int], Counter[tuple[str, str, int]]]:
    """What a restarted emulator must remember from its store.

    Returns the messageIds kept since ``since_us`` (for de-duplication, with their received
    time) and the kept-event counts per (source slug, event name, received minute) for
    ``/events/volume``, injected duplicates subtracted.
    """
    seen: dict[str, int] = {}
    volume: Counter[tuple[str, str, int]] = Counter()
    tables = store_tables(store_dir)
    sources = [s for s, t in tables.items() if s != EMULATOR_SCHEMA and "tracks" in t]
    if not sources:
        return seen, volume
    con = open_store(store_dir)
    try:
        for slug in sources:
            rel = f"{_ident(slug)}.tracks"
            for mid, rec_us in con.execute(
                f"SELECT id, max(epoch_us(received_at)) FROM {rel} "
                "WHERE epoch_us(received_at) >= ? GROUP BY id",
                [since_us],
            ).fetchall():
                if mid is not None:
                    seen[mid] = max(rec_us, seen.get(mid, 0))
            for event_text, minute, n in con.execute(
                f"SELECT event_text, epoch(date_trunc('minute', received_at))::BIGINT, count(*) "
                f"FROM {rel} GROUP BY ALL"
            ).fetchall():
                volume[(slug, event_text, int(minute))] += n
        if "duplicated" in tables.get(EMULATOR_SCHEMA, []):
            for slug, event_text, minute, n in con.execute(
                f"SELECT source, event, epoch(date_trunc('minute', received_at))::BIGINT, "
                f"count(*) FROM {_ident(EMULATOR_SCHEMA)}.duplicated GROUP BY ALL"
            ).fetchall():
                volume[(slug, event_text, int(minute))] -= n
    finally:
        con.close()
    return seen, +volume
