"""``currents-segment push``: send the outbox to Segment's HTTP API with a durable ledger.

One run: for each connector, copy new outbox rows into the ledger (enqueue), then read the open
rows' payloads from the outbox (the warehouse is opened read-only), pass them through the Great
Expectations gate, cut them into batches bounded by Segment's limits after serialization, mark
each batch in flight in the ledger, POST it with a bounded number of requests in flight, and mark
it acknowledged on the 200. See ``ledger.py`` for the crash-safety argument and
``docs/push.md`` for usage.

Exit codes: 0 everything selected acknowledged; 1 something left pending or at risk, a connector
stopped (final 4xx, retries exhausted) or a gate failed; 2 configuration or run error.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import http.client
import json
import logging
import os
import queue
import random
import secrets
import socket
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from currents_segment import catalogue, duck, ledger_bulk, settings
from currents_segment.connectors import (
    API_BASE_ENV,
    MAX_MESSAGE_ID_CHARS,
    ConfigError,
    Connector,
    ConnectorsConfig,
    PushSettings,
)
from currents_segment.connectors import load as load_connectors
from currents_segment.ledger import ConnectorCounts, Ledger, LedgerError, now_text

log = logging.getLogger("currents_segment.push")

OUTBOX_TABLE = "marts.fct_segment_outbox"
# Statuses Segment's own client retries (analytics-python 2.4); other 4xx are final.
RETRY_STATUSES = frozenset({408, 410, 429, 460})
FINAL_5XX = frozenset({501, 505})


def scoped_id_sql(workspace: str) -> str:
    """``workspace_scoped`` messageIds in SQL (connectors.scoped_message_id is the Python twin)."""
    return f"md5({duck.sql_text(workspace)} || ':' || o.message_id)"


_PREFIX = '{"messageId":"'
# Room for '{"batch":[', '],"sentAt":"2026-11-23T14:45:00.123456Z"}' and slack.
_BODY_OVERHEAD = 64


class PushError(RuntimeError):
    """A run cannot start or continue (warehouse missing or locked, bad filter)."""


# ---------------------------------------------------------------------------------------------
# Options and results


@dataclass(frozen=True)
class PushOptions:
    connectors: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    dry_run_dir: Path | None = None
    api_base: str | None = None
    warehouse: Path | None = None
    ledger: Path | None = None
    outbox_table: str = OUTBOX_TABLE
    progress: bool = True


@dataclass
class ConnectorRun:
    """What one run did for one connector, and the ledger's totals after it."""

    connector: str
    segment_workspace: str
    segment_source: str
    queued: int = 0
    sent: int = 0
    batches: int = 0
    acknowledged_now: int = 0
    rejected_now: int = 0
    missing_from_outbox: int = 0
    stopped: str | None = None
    gate_reports: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    at_risk: int = 0
    oldest_open: str | None = None
    open_in_selection: int = 0


@dataclass
class PushResult:
    run_id: str
    run_dir: Path
    dry_run: bool
    exit_code: int
    elapsed_seconds: float
    connectors: list[ConnectorRun]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        return data


# ---------------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True)
class Outcome:
    acknowledged: bool
    final: bool  # a final 4xx: the connector stops
    attempts: int
    http_status: int | None
    error: str | None


@dataclass
class BatchJob:
    connector: Connector
    batch_id: int
    seqs: list[int]
    items: bytes | memoryview  # the comma-joined events; sentAt is set per attempt
    url: str
    auth: str = field(repr=False)
    number: int = 0


def _backoff(attempt: int, policy: PushSettings) -> float:
    """Exponential back-off with equal jitter: half fixed, half random."""
    ceiling = min(policy.retry_max_seconds, policy.retry_base_seconds * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _retry_after(value: str | None, policy: PushSettings) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), policy.max_retry_after_seconds)


def _is_retryable(status: int) -> bool:
    return status in RETRY_STATUSES or (status >= 500 and status not in FINAL_5XX)


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


class _Answer:
    """What a POST came back with: the status, a header, the start of the body."""

    __slots__ = ("status", "retry_after", "text")

    def __init__(self, status: int, retry_after: str | None, text: str) -> None:
        self.status = status
        self.retry_after = retry_after
        self.text = text


class _SendFailed(Exception):
    """The request's outcome is unknown: a timeout, a refused or dropped connection."""


def _joined(body: bytes | tuple[bytes | memoryview, ...]) -> bytes:
    return body if isinstance(body, bytes) else b"".join(body)


class _NoDelayHTTPConnection(http.client.HTTPConnection):
    """TCP_NODELAY, as requests sets it: without it a request's small last segment can wait for
    the peer's delayed acknowledgement (Nagle's algorithm)."""

    def connect(self) -> None:
        super().connect()
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _NoDelayHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class HttpTransport:
    """HTTP/1.1 POSTs with one kept-alive connection per worker thread and no hidden retries.

    Plain ``http.client`` carries them: ``requests`` cost 2.0 CPU ms per 490 KB request against
    0.6 ms for ``http.client`` on the 2-core bench host (ad hoc, 1,500 POSTs to a local sink,
    2026-12-04), about 2 CPU s of a 1M-event push. Where the environment names a proxy for the
    URL (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, not bypassed by ``NO_PROXY``), the
    requests go through ``requests``, which speaks to proxies. TLS verifies against the CA
    bundle ``requests`` would use (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or certifi's).
    """

    def __init__(self, policy: PushSettings) -> None:
        self.policy = policy
        self._local = threading.local()
        # Requests in flight at once: a worker waiting out a 429's Retry-After or a back-off
        # holds no slot, so the other batches keep the connections busy meanwhile.
        self._slots = threading.BoundedSemaphore(policy.max_in_flight)
        self._proxied: dict[str, bool] = {}
        self._tls: Any = None

    def _uses_proxy(self, url: str) -> bool:
        found = self._proxied.get(url)
        if found is None:
            from requests.utils import get_environ_proxies

            scheme = url.split(":", 1)[0].lower()
            proxies = get_environ_proxies(url)
            found = self._proxied[url] = bool(proxies.get(scheme) or proxies.get("all"))
        return found

    def _connection(self, url: str) -> tuple[Any, str]:
        """This thread's connection to ``url``'s host, and the path to post to."""
        from urllib.parse import urlsplit

        cached = getattr(self._local, "connection", None)
        if cached is not None and cached[0] == url:
            return cached[1], cached[2]
        self.close_connection()
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        timeout = self.policy.timeout_seconds
        if parts.scheme == "https":
            connection: Any = _NoDelayHTTPSConnection(
                parts.hostname or "", parts.port, timeout=timeout, context=self._tls_context()
            )
        else:
            connection = _NoDelayHTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        self._local.connection = (url, connection, path)
        return connection, path

    def _tls_context(self) -> Any:
        if self._tls is None:
            import ssl

            cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if not cafile:
                with contextlib.suppress(ImportError):
                    import certifi

                    cafile = certifi.where()
            self._tls = ssl.create_default_context(cafile=cafile or None)
        return self._tls

    def close_connection(self) -> None:
        cached = getattr(self._local, "connection", None)
        self._local.connection = None
        if cached is not None:
            with contextlib.suppress(Exception):
                cached[1].close()

    def _post(
        self, url: str, body: bytes | tuple[bytes | memoryview, ...], headers: dict[str, str]
    ) -> _Answer:
        """One POST of ``body`` (bytes, or parts sent one after the other without joining
        them); :class:`_SendFailed` when its outcome is unknown."""
        if self._uses_proxy(url):
            return self._post_through_requests(url, _joined(body), headers)
        connection, path = self._connection(url)
        if not isinstance(body, bytes):
            headers = {**headers, "Content-Length": str(sum(len(part) for part in body))}
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read()
        except (OSError, http.client.HTTPException) as exc:
            # The socket is in an unknown state: the next attempt opens a new one.
            self.close_connection()
            raise _SendFailed(f"{type(exc).__name__}: {exc}") from None
        if response.will_close:
            self.close_connection()
        return _Answer(
            response.status, response.getheader("Retry-After"), text[:400].decode(errors="replace")
        )

    def _post_through_requests(self, url: str, body: bytes, headers: dict[str, str]) -> _Answer:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            from requests.adapters import HTTPAdapter

            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        try:
            response = session.post(
                url, data=body, headers=headers, timeout=self.policy.timeout_seconds
            )
        except requests.RequestException as exc:
            self._local.session = None
            raise _SendFailed(f"{type(exc).__name__}: {exc}") from None
        return _Answer(
            response.status_code, response.headers.get("Retry-After"), response.text[:400]
        )

    def send(self, job: BatchJob, stop: threading.Event) -> Outcome:
        policy = self.policy
        headers = {
            "Content-Type": "application/json",
            "Authorization": job.auth,
            "User-Agent": "currents-segment",
        }
        if policy.gzip:
            headers["Content-Encoding"] = "gzip"
        status: int | None = None
        error: str | None = None
        if (
            stop.is_set()
        ):  # recorded in flight, still waiting for a worker when its connector stopped
            return Outcome(False, False, 0, None, "not sent: the connector stopped first")
        secret = base64.b64decode(job.auth[6:]).decode()[:-1]
        for attempt in range(1, policy.max_attempts + 1):
            sent_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
            body: bytes | tuple[bytes | memoryview, ...] = (
                b'{"batch":[',
                job.items,
                b'],"sentAt":"' + sent_at + b'"}',
            )
            if policy.gzip:
                body = _gzip(b"".join(body))
            wait_for: float | None = None
            try:
                with self._slots:
                    answer = self._post(job.url, body, headers)
                status = answer.status
                if 200 <= status < 300:
                    return Outcome(True, False, attempt, status, None)
                error = f"HTTP {status}: {_scrub(answer.text[:200], secret)}"
                if not _is_retryable(status):
                    return Outcome(False, True, attempt, status, error)
                if status == 429:
                    wait_for = _retry_after(answer.retry_after, policy)
            except _SendFailed as exc:
                # Timeouts and dropped connections: the outcome is unknown, so the batch is
                # sent again under the same messageIds (de-duplicated by Segment).
                status = None
                error = _scrub(str(exc)[:200], secret)
            if attempt == policy.max_attempts or stop.is_set():
                break
            log.debug("batch %s attempt %s failed (%s); retrying", job.batch_id, attempt, error)
            time.sleep(wait_for if wait_for is not None else _backoff(attempt, policy))
        why = "stopped" if stop.is_set() else f"retries exhausted after {attempt} attempts"
        return Outcome(False, False, attempt, status, f"{why}; last: {error}")


def _gzip(body: bytes) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


class DryRunTransport:
    """``--dry-run``: each batch body goes to a file; nothing is sent."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def send(self, job: BatchJob, stop: threading.Event) -> Outcome:
        folder = self.out_dir / job.connector.name
        folder.mkdir(parents=True, exist_ok=True)
        sent_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        body = b'{"batch":[' + job.items + b'],"sentAt":"' + sent_at + b'"}'
        (folder / f"batch-{job.number:06d}.json").write_bytes(body)
        return Outcome(True, False, 1, None, None)


# ---------------------------------------------------------------------------------------------
# The outbox (read-only)


def open_warehouse(path: Path, table: str) -> duckdb.DuckDBPyConnection:
    if not path.exists():
        raise PushError(f"warehouse {path} does not exist: run ingest and build first")
    try:
        # One thread: the run's joins work ahead of the requests in a thread of their own, on
        # cores the pusher shares with its enqueue and (locally) the receiver; a second DuckDB
        # thread cost a fifth more CPU for the payload joins (ad hoc, 2026-12-04).
        con = duckdb.connect(str(path), read_only=True, config={"threads": 1})
    except duckdb.Error as exc:
        raise PushError(
            f"warehouse {path} cannot be opened read-only (is dbt build running?): {exc}"
        ) from None
    try:
        con.execute(f"SELECT message_id, payload_json, is_sendable FROM {table} LIMIT 0")
    except duckdb.Error as exc:
        con.close()
        raise PushError(
            f"warehouse {path}: outbox {table} is not readable ({exc}); run build first"
        ) from None
    return con


def _us_text(epoch_us: int) -> str:
    return f"{_ts_text(datetime.fromtimestamp(epoch_us / 1e6, UTC))} UTC"


def _ts_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _enqueue_sql(
    connector: Connector,
    table: str,
    policy: PushSettings,
    loaded_after_us: int | None = None,
    with_loaded_us: bool = False,
) -> str:
    """The connector's outbox rows as ledger rows (Ledger.enqueue_outbox's column order).

    ``loaded_after_us``: only rows whose ``loaded_at`` is later (epoch microseconds), the
    rows an appending enqueue takes in. ``with_loaded_us``: a last column ``loaded_us`` (for
    the fingerprint; not a ledger column). Values are SQL literals, not parameters: the
    enqueue child never runs a statement with Python parameters (why: the note at the top of
    ledger_bulk._child)."""
    scoped = connector.message_id == "workspace_scoped"
    sent_id = scoped_id_sql(connector.segment_workspace) if scoped else "o.message_id"
    types = duck.sql_text_list(connector.event_types)
    where = f"list_contains({types}, o.currents_event_type)"
    if not connector.all_workspaces:
        workspaces = duck.sql_text_list(connector.braze_workspaces)
        where += f" AND list_contains({workspaces}, o.app_group_id)"
    if loaded_after_us is not None:
        where += f" AND epoch_us(o.loaded_at) > {int(loaded_after_us)}"
    loaded_us = ", epoch_us(o.loaded_at) AS loaded_us" if with_loaded_us else ""
    # Size of the payload as sent: workspace-scoped ids replace the Currents id in the JSON. The
    # outbox's payload_bytes (UTF-8 bytes of payload_json) spares reading the payloads here; the
    # send re-measures every payload it joins, so an oversize event is never sent either way.
    sql = f"""
        WITH rows AS (
            SELECT {sent_id} AS sent_id, o.message_id, o.currents_event_type, o.app_group_id,
                strftime(o.event_timestamp, '%Y-%m-%d %H:%M:%S.%f') AS event_ts,
                strftime(o.date_hour, '%Y-%m-%d %H:%M:%S.%f') AS date_hour,
                o.payload_bytes AS raw_bytes,
                coalesce(o.is_sendable, false) AS is_sendable,
                coalesce(o.not_sendable_reason, 'unknown') AS not_sendable_reason{loaded_us}
            FROM {table} o WHERE {where}
        ), sized AS (
            SELECT *, raw_bytes + strlen(sent_id) - strlen(message_id) AS bytes FROM rows
        )
        -- Ledger.enqueue_outbox's column order: fetched rows go to SQLite as they are.
        SELECT sent_id, message_id, currents_event_type, app_group_id, event_ts, date_hour, bytes,
            CASE
                WHEN NOT is_sendable AND not_sendable_reason = 'oversize' THEN 'rejected'
                WHEN NOT is_sendable THEN 'skipped'
                WHEN bytes > {policy.max_event_bytes} THEN 'rejected'
                WHEN strlen(sent_id) > {MAX_MESSAGE_ID_CHARS} THEN 'rejected'
                ELSE 'pending' END AS status,
            CASE
                WHEN NOT is_sendable THEN not_sendable_reason
                WHEN bytes > {policy.max_event_bytes} THEN 'oversize'
                WHEN strlen(sent_id) > {MAX_MESSAGE_ID_CHARS} THEN 'message_id_too_long'
                END AS reason,
            CASE
                WHEN NOT is_sendable THEN 'not sendable in the outbox: ' || not_sendable_reason
                WHEN bytes > {policy.max_event_bytes}
                    THEN 'event is ' || bytes || ' bytes, over Segment''s '
                        || {policy.max_event_bytes} || '-byte limit'
                WHEN strlen(sent_id) > {MAX_MESSAGE_ID_CHARS}
                    THEN 'messageId longer than {MAX_MESSAGE_ID_CHARS} characters'
                END AS error{", loaded_us" if with_loaded_us else ""}
        FROM sized
    """
    return sql


# CURRENTS_SEGMENT_LEDGER_BULK=0: enqueue through Python's sqlite3 even where the bulk path
# (ledger_bulk: DuckDB's SQLite extension in a child process) works; tested on its own.
LEDGER_BULK_ENV = "CURRENTS_SEGMENT_LEDGER_BULK"


def _enqueue(
    con: duckdb.DuckDBPyConnection,
    ledger: Ledger,
    connector: Connector,
    table: str,
    policy: PushSettings,
    warehouse: Path,
    selection: ledger_bulk.OpenFilter | None,
    appended_after_us: int | None = None,
    child: ledger_bulk.Child | None = None,
) -> ledger_bulk.Stream | ledger_bulk.OpenRowsTable:
    """Copy the connector's outbox rows into the ledger and hand over its open rows in
    ``selection`` (None: none wanted), in-flight first, then pending by seq.

    ``appended_after_us`` (an appending enqueue, ``_appended_after``): the ledger already holds
    every outbox row loaded up to then, unchanged, and nothing else; only the rows loaded later
    are read and inserted, and none of the ledger's rows is read but the open ones.

    In bulk where it can run (``ledger_bulk``: a file ledger, DuckDB's SQLite extension
    loadable, not disabled by CURRENTS_SEGMENT_LEDGER_BULK=0): a child process inserts the new
    rows chunk by chunk and the run sends each chunk while the next is inserted; ``close()``
    on the result waits until every row is in. Otherwise the rows are fetched and upserted
    through Python's sqlite3 first: the same rows, the same rules, the same result.
    """
    sql = _enqueue_sql(connector, table, policy, loaded_after_us=appended_after_us)
    queued_at = now_text()
    if child is not None and not _bulk_enqueue(ledger):
        child.close()
        child = None
    if appended_after_us is None:
        ledger.unsettle(connector.name)  # a whole enqueue may move unsent rows
    if _bulk_enqueue(ledger):
        # Appending: the new rows' ids are checked against the older rows' ids in the outbox
        # (an id twice is refused, as in a whole enqueue), not against the ledger's.
        older_ids_sql = (
            ""
            if appended_after_us is None
            else f"SELECT sent_id FROM ({_enqueue_sql(connector, table, policy, with_loaded_us=True)})"
            f" WHERE coalesce(loaded_us <= {int(appended_after_us)}, true)"
        )
        request = ledger_bulk.Request(
            str(warehouse), str(ledger.path), sql, connector.name,
            connector.segment_workspace, connector.segment_source, queued_at, selection,
            ledger_bulk.CHUNK_ROWS, older_ids_sql=older_ids_sql,
            first_chunk_rows=ledger_bulk.FIRST_CHUNK_ROWS,
            open_after_seq=ledger.settled_through(connector.name),
        )  # fmt: skip
        try:
            return ledger_bulk.Stream(request, hold_fds=_held(ledger), child=child)
        except ledger_bulk.BulkError as exc:
            if exc.kind == ledger_bulk.DUPLICATE:
                raise PushError(
                    f"connector {connector.name}: the outbox {table} holds a messageId twice "
                    f"({exc}), which the ledger refuses; nothing was enqueued. dbt build's "
                    "uniqueness test on the outbox names the rows"
                ) from None
            if exc.kind != ledger_bulk.UNAVAILABLE:
                raise PushError(f"connector {connector.name}: enqueue failed: {exc}") from None
            log.warning("connector %s: %s; enqueue goes through Python", connector.name, exc)
    # In key order, the ledger's unique index grows at its end instead of at random pages.
    cur = con.execute(sql + " ORDER BY sent_id")
    while chunk := cur.fetchmany(100_000):
        ledger.enqueue_outbox(
            connector.name, connector.segment_workspace, connector.segment_source, queued_at, chunk
        )
    return _ledger_open_rows(ledger, connector, selection)


def _bulk_enqueue(ledger: Ledger) -> bool:
    """Whether the enqueue goes through the child process (ledger_bulk) at all."""
    return str(ledger.path) != ":memory:" and os.environ.get(LEDGER_BULK_ENV, "1") != "0"


def _held(ledger: Ledger) -> tuple[int, ...]:
    """The push lock's descriptor, which an enqueue child holds too (ledger_bulk.Child)."""
    return () if ledger.lock_fd is None else (ledger.lock_fd,)


def _ledger_open_rows(
    ledger: Ledger, connector: Connector, selection: ledger_bulk.OpenFilter | None
) -> ledger_bulk.OpenRowsTable:
    """The connector's open rows in ``selection`` as the ledger holds them (Ledger.open_rows)."""
    schema = ledger_bulk.OPEN_ROWS_SCHEMA
    if selection is None:
        return ledger_bulk.OpenRowsTable(schema.empty_table())
    rows = ledger.open_rows(connector.name, selection.event_types, selection.since, selection.until)
    seqs, sent_ids, currents_ids = zip(*rows, strict=True) if rows else ((), (), ())
    columns = [
        pa.array(values, f.type)
        for values, f in zip((seqs, sent_ids, currents_ids), schema, strict=True)
    ]
    return ledger_bulk.OpenRowsTable(pa.table(columns, schema=schema))


def _selection(connector: Connector, options: PushOptions) -> ledger_bulk.OpenFilter | None:
    """The open rows a run sends for this connector; None when its filters select none of the
    connector's event types."""
    types = [catalogue.resolve(t).event_type for t in options.event_types]
    types = [t for t in types if t in connector.event_types] if types else []
    if options.event_types and not types:
        return None
    return ledger_bulk.OpenFilter(types or None, _ts_text(options.since), _ts_text(options.until))


def _payload_chunks(
    con: duckdb.DuckDBPyConnection,
    open_rows: Iterable[pa.Table],
    table: str,
    chunk_rows: int,
    hungry: Callable[[], bool] = lambda: True,
) -> Iterator[pa.RecordBatch]:
    """The open rows joined to their outbox payloads, spliced to the sent messageId, as Arrow
    record batches of at most ``chunk_rows`` rows (no Python object per event).

    One query per chunk of open rows: the first chunk is ready after one join of ``chunk_rows``
    rows instead of a sort of all of them, so sending starts sooner.
    """
    for rows in _gathered(open_rows, chunk_rows, hungry):
        for start in range(0, rows.num_rows, chunk_rows):
            yield from _payload_chunk(con, rows.slice(start, chunk_rows), table, chunk_rows)


def _gathered(
    tables: Iterable[pa.Table], rows: int, hungry: Callable[[], bool]
) -> Iterator[pa.Table]:
    """The enqueue's hand-overs (ledger_bulk.CHUNK_ROWS rows each) put together up to ``rows``
    rows: each payload join scans the outbox's ids once, however few rows it looks for. What
    has come is passed on at once while the sender is ``hungry`` (it has nothing prepared:
    at the start, and whenever the enqueue lags)."""
    waiting: list[pa.Table] = []
    waiting_rows = 0
    for table in tables:
        waiting.append(table)
        waiting_rows += table.num_rows
        if waiting_rows >= rows or hungry():
            yield pa.concat_tables(waiting) if len(waiting) > 1 else waiting[0]
            waiting, waiting_rows = [], 0
    if waiting:
        yield pa.concat_tables(waiting) if len(waiting) > 1 else waiting[0]


def _payload_chunk(
    con: duckdb.DuckDBPyConnection,
    open_rows: pa.Table,
    table: str,
    chunk_rows: int,
) -> Iterator[pa.RecordBatch]:
    pending = open_rows.append_column("ord", pa.array(range(open_rows.num_rows), pa.int64()))
    # The chunk's id range, said to DuckDB: its scan of the outbox then reads the payloads of
    # the rows in that range only. A first push hands over rows in id order (``braze_id``), so
    # each chunk's range is a slice of the outbox: 5 chunks of 200k rows 1.50 against 2.55 CPU
    # s at 1M rows (ad hoc, 2026-12-04). Any other order only widens the range.
    bounds = pc.min_max(open_rows.column("currents_id"))
    in_range = (
        ""
        if bounds["min"].as_py() is None
        else f" AND o.message_id BETWEEN {duck.sql_text(bounds['min'].as_py())}"
        f" AND {duck.sql_text(bounds['max'].as_py())}"
    )
    con.register("cs_push_open_rows", pending)
    try:
        reader = con.execute(
            f"""
            SELECT *, strlen(payload) AS payload_bytes, payload IS NOT NULL AS payload_matches_id
            FROM (
                SELECT p.seq, p.sent_id AS message_id, o.message_id IS NOT NULL AS in_outbox,
                    CASE
                        WHEN NOT starts_with(o.payload_json, '{_PREFIX}' || p.currents_id || '"')
                            THEN NULL
                        WHEN p.sent_id = p.currents_id THEN o.payload_json
                        ELSE '{_PREFIX}' || p.sent_id || '"'
                            || substr(o.payload_json, length(p.currents_id) + {len(_PREFIX) + 2})
                        END AS payload,
                    coalesce(o.user_id, o.anonymous_id) AS user_or_anonymous_id,
                    o.event,
                    epoch(o.event_timestamp) AS event_epoch_s
                FROM cs_push_open_rows p
                LEFT JOIN {table} o ON o.message_id = p.currents_id{in_range}
                -- Ledger order: in-flight rows first, and each batch a contiguous seq range.
                ORDER BY p.ord
            )
            """
        ).to_arrow_reader(chunk_rows)
        for chunk in reader:
            if chunk.num_rows:
                yield chunk
    finally:
        con.unregister("cs_push_open_rows")


_GATE_COLUMNS = (
    "message_id",
    "user_or_anonymous_id",
    "event",
    "event_epoch_s",
    "payload_matches_id",
)


def _gate_frame(chunk: pa.RecordBatch | pa.Table) -> Any:
    """The gate's columns as pandas (event names as a categorical: a handful of values)."""
    table = pa.Table.from_batches([chunk]) if isinstance(chunk, pa.RecordBatch) else chunk
    table = table.select(list(_GATE_COLUMNS))
    events = table.column("event").dictionary_encode()
    table = table.set_column(table.schema.get_field_index("event"), "event", events)
    return table.to_pandas()


# ---------------------------------------------------------------------------------------------
# The run


class _Coordinator:
    """Owns the ledger connection; workers only do HTTP."""

    def __init__(
        self,
        ledger: Ledger,
        transport: HttpTransport | DryRunTransport,
        policy: PushSettings,
        run_id: str,
        progress: Any,
        started: float,
    ) -> None:
        self.ledger = ledger
        self.transport = transport
        self.policy = policy
        self.run_id = run_id
        # Twice the requests in flight: workers waiting out a back-off hold no request slot
        # (HttpTransport), so others send meanwhile.
        self.workers = 2 * policy.max_in_flight
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="push")
        self.inflight: dict[Future[Outcome], BatchJob] = {}
        self.stops: dict[str, threading.Event] = {}
        self.runs: dict[str, ConnectorRun] = {}
        self.progress = progress
        self.tasks: dict[str, Any] = {}
        self.numbers: dict[str, int] = {}
        self.started = started  # the run's start (time.monotonic)

    def stop_event(self, name: str) -> threading.Event:
        return self.stops.setdefault(name, threading.Event())

    def submit(self, jobs: Sequence[BatchJob], run: ConnectorRun) -> None:
        """Record a group of batches in flight (one ledger transaction) and hand them to the
        workers. At most ``max_in_flight`` requests run at once (HttpTransport's slots); a
        group more waits its turn, recorded, so that the ledger commits once per group, not per
        batch."""
        if not jobs:
            return
        name = jobs[0].connector.name
        while len(self.inflight) >= self.workers:
            self.drain(FIRST_COMPLETED)
        stop = self.stop_event(name)
        if stop.is_set():
            return
        number = self.numbers.get(name, 0)
        if number == 0:
            log.info(
                "connector %s: first batch leaves %.1fs after the run started",
                name, time.monotonic() - self.started,
            )  # fmt: skip
        ids = self.ledger.start_batches(
            self.run_id, name, [(job.seqs, len(job.items)) for job in jobs]
        )
        for job, batch_id in zip(jobs, ids, strict=True):
            number += 1
            job.number, job.batch_id = number, batch_id
            run.sent += len(job.seqs)
            run.batches += 1
            self.inflight[self.pool.submit(self.transport.send, job, stop)] = job
        self.numbers[name] = number

    def drain(self, mode: str = FIRST_COMPLETED) -> None:
        if not self.inflight:
            return
        done, _ = wait(list(self.inflight), return_when=mode)
        finished = [(self.inflight.pop(future), future.result()) for future in done]
        self.ledger.finish_batches(
            [
                (job.batch_id, job.seqs, outcome.acknowledged, outcome.attempts,
                 outcome.http_status, outcome.error)
                for job, outcome in finished
            ]
        )  # fmt: skip
        for job, outcome in finished:
            run = self.runs[job.connector.name]
            if outcome.acknowledged:
                run.acknowledged_now += len(job.seqs)
                if self.progress is not None:
                    self.progress.advance(self.tasks[job.connector.name], len(job.seqs))
                continue
            if run.stopped is None and outcome.attempts:
                kind = "final HTTP error" if outcome.final else "send failed"
                run.stopped = f"{kind} on batch {job.batch_id}: {outcome.error}"
                log.error("connector %s stopped: %s", job.connector.name, run.stopped)
            self.stop_event(job.connector.name).set()

    def close(self) -> None:
        while self.inflight:
            self.drain(FIRST_COMPLETED)
        self.pool.shutdown(wait=True)


def _cut_batches(sizes: Sequence[int], policy: PushSettings) -> list[tuple[int, int]]:
    """Cut events (their serialized sizes, in order) into [start, end) batches of at most
    max_batch_events events and max_batch_bytes bytes once joined with commas and wrapped."""
    budget = policy.max_batch_bytes - _BODY_OVERHEAD
    limit = policy.max_batch_events
    cuts: list[tuple[int, int]] = []
    start = 0
    used = 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= limit or used + size + 1 > budget):
            cuts.append((start, i))
            start, used = i, 0
        used += size + (1 if i > start else 0)
    if start < len(sizes):
        cuts.append((start, len(sizes)))
    return cuts


def _batch_items(payloads: pa.Array, cuts: list[tuple[int, int]]) -> list[memoryview]:
    """Each batch's events joined with commas, by Arrow (no Python string per event)."""
    if not cuts:
        return []
    offsets = pa.array([start for start, _ in cuts] + [cuts[-1][1]], pa.int32())
    base = cuts[0][0]
    lists = pa.ListArray.from_arrays(
        pc.subtract(offsets, base), payloads.slice(base, cuts[-1][1] - base)
    )
    joined = pc.binary_join(lists, ",")
    # Views of Arrow's buffer, not copies: the request sends them as they are.
    return [memoryview(joined[i].as_buffer()) for i in range(len(joined))]


def _push_connector(
    coord: _Coordinator,
    con: duckdb.DuckDBPyConnection,
    connector: Connector,
    run: ConnectorRun,
    options: PushOptions,
    url: str,
    auth: str,
    run_dir: Path,
    open_rows: ledger_bulk.Stream | ledger_bulk.OpenRowsTable,
) -> None:
    policy = coord.policy
    ledger = coord.ledger
    run.open_in_selection = open_rows.total
    if not open_rows.total:
        return
    if coord.progress is not None:
        coord.tasks[connector.name] = coord.progress.add_task(connector.name, total=open_rows.total)
    prepared = _prepared_chunks(
        con,
        open_rows,
        options.outbox_table,
        policy,
        connector.name,
        coord.stop_event(connector.name),
    )
    try:
        for chunk in prepared:
            if coord.stop_event(connector.name).is_set():
                break
            if chunk.missing:
                run.missing_from_outbox += len(chunk.missing)
                ledger.note_error(
                    chunk.missing, f"not in the outbox {options.outbox_table}; left pending"
                )
            if chunk.gate is None:
                continue
            if not chunk.gate.success:
                name = f"gate-{connector.name}-{chunk.number:04d}.json"
                path = chunk.gate.write(run_dir / name)
                run.gate_reports.append(str(path))
                run.stopped = f"{chunk.gate.describe()} (validation result: {path})"
                log.error("connector %s blocked by the gate: %s", connector.name, run.stopped)
                ledger.note_error(chunk.validated, f"blocked by the gate; see {path}")
                coord.stop_event(connector.name).set()
                break
            if chunk.oversize:
                ledger.reject(
                    chunk.oversize,
                    "oversize",
                    f"event over Segment's {policy.max_event_bytes}-byte limit",
                )
                run.rejected_now += len(chunk.oversize)
                if coord.progress is not None:
                    coord.progress.advance(coord.tasks[connector.name], len(chunk.oversize))
            group = 16
            for start in range(0, len(chunk.batches), group):
                if coord.stop_event(connector.name).is_set():
                    break
                jobs = [
                    BatchJob(connector, 0, seqs, items, url, auth)
                    for seqs, items in chunk.batches[start : start + group]
                ]
                coord.submit(jobs, run)
    finally:
        prepared.close()


@dataclass
class _Chunk:
    """One chunk of open rows, validated and cut into batches, ready for the ledger and HTTP."""

    number: int
    missing: list[int]  # seqs whose event left the outbox
    validated: list[int]  # seqs the gate saw
    gate: Any  # gate.GateResult, None when no row of the chunk is in the outbox
    oversize: list[int] = field(default_factory=list)
    batches: list[tuple[list[int], bytes]] = field(default_factory=list)


def _prepare_chunk(
    chunk: pa.RecordBatch, number: int, policy: PushSettings, connector_name: str
) -> _Chunk:
    """Gate and batches of one chunk: no ledger access (it runs ahead, in a thread)."""
    from currents_segment import gate

    missing: list[int] = []
    in_outbox = chunk.column("in_outbox")
    if not pc.all(in_outbox).as_py():
        missing = chunk.filter(pc.invert(in_outbox)).column("seq").to_pylist()
        chunk = chunk.filter(in_outbox)
        if not chunk.num_rows:
            return _Chunk(number, missing, [], None)
    known_events = [t.segment_event for t in catalogue.supported()]
    max_epoch = time.time() + policy.future_tolerance_seconds
    result = gate.validate_frame(
        _gate_frame(chunk),
        gate.outbox_expectations(known_events, max_epoch),
        suite_name=f"push-{connector_name}-{number}",
    )
    prepared = _Chunk(number, missing, chunk.column("seq").to_pylist(), result)
    if not result.success:
        return prepared
    # UTF-8 bytes (DuckDB's strlen)
    oversize = pc.greater(chunk.column("payload_bytes"), policy.max_event_bytes)
    if pc.any(oversize).as_py():
        prepared.oversize = chunk.filter(oversize).column("seq").to_pylist()
        chunk = chunk.filter(pc.invert(oversize))
    seqs = chunk.column("seq").to_numpy()
    cuts = _cut_batches(chunk.column("payload_bytes").to_pylist(), policy)
    items = _batch_items(chunk.column("payload"), cuts)
    prepared.batches = [
        (seqs[start:end].tolist(), joined) for (start, end), joined in zip(cuts, items, strict=True)
    ]
    return prepared


def _prepared_chunks(
    con: duckdb.DuckDBPyConnection,
    open_rows: ledger_bulk.Stream | ledger_bulk.OpenRowsTable,
    table: str,
    policy: PushSettings,
    connector_name: str,
    stop: threading.Event,
) -> Generator[_Chunk, None, None]:
    """Chunks read, validated and batched one ahead, in a thread, while the caller sends the
    previous one: the outbox read (DuckDB) and the gate overlap with the requests."""
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    closing = threading.Event()

    def produce() -> None:
        try:
            chunks = _payload_chunks(
                con, open_rows.tables(), table, policy.gate_chunk_events, ready.empty
            )
            for number, chunk in enumerate(chunks, start=1):
                if stop.is_set() or closing.is_set():
                    break
                _put(("chunk", _prepare_chunk(chunk, number, policy, connector_name)))
            _put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            _put(("error", exc))

    def _put(item: tuple[str, Any]) -> None:
        while not closing.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    worker = threading.Thread(target=produce, name="push-prepare", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        closing.set()
        worker.join()


def _finish_counts(
    ledger: Ledger,
    run: ConnectorRun,
    policy: PushSettings,
    new_rows: ledger_bulk.NewRows | None = None,
) -> ConnectorCounts:
    """The connector's totals after the run (and its settled mark, when nothing is open).

    A run whose enqueue inserted rows (``new_rows``) and then sent every row it was handed, all
    acknowledged, knows what each new row became: pending ones acknowledged, the others as
    inserted. Those rows are then counted from that, not read: a scan of the ledger's rows
    cost 0.7 s per 1M at the end of every first push (ad hoc, 2026-12-04). Anything else (a
    stop, a gate failure, an event gone from the outbox, one rejected at the send, new rows
    outside the run's filter) reads them."""
    known = None
    if (
        new_rows is not None
        and run.stopped is None
        and not run.missing_from_outbox
        and not run.rejected_now
        and run.acknowledged_now == run.open_in_selection
        and new_rows.handed == new_rows.counts.get(("pending", None), 0)
    ):
        counts = dict(new_rows.counts)
        pending = counts.pop(("pending", None), 0)
        if pending:
            counts[("acknowledged", None)] = counts.get(("acknowledged", None), 0) + pending
        known = (new_rows.first_seq, counts)
        log.info(
            "connector %s: its %s new rows counted from what the run did with them",
            run.connector, sum(new_rows.counts.values()),
        )  # fmt: skip
    counts = ledger.counts(run.connector, policy.at_risk_hours, settle=True, known=known)
    run.totals = dict(counts.by_status)
    run.rejected_by_reason = counts.rejected_by_reason
    run.skipped_by_reason = counts.skipped_by_reason
    run.pending = counts.open
    run.at_risk = counts.at_risk
    run.oldest_open = counts.oldest_open
    return counts


@dataclass(frozen=True)
class OutboxFingerprint:
    """The connector's outbox rows as the enqueue would write them (``_enqueue_sql``: ids,
    statuses, reasons, sizes): their count and digest (bit_xor of DuckDB's ``hash`` of each
    row: a change to any row, a new or a removed one changes it), the latest ``loaded_at``, and
    the same count and digest of the rows loaded up to a given time (``older_*``; the whole
    outbox when none was given)."""

    rows: int
    digest: int
    loaded_through_us: int | None
    older_rows: int
    older_digest: int


def _outbox_fingerprint(
    con: duckdb.DuckDBPyConnection,
    connector: Connector,
    table: str,
    policy: PushSettings,
    older_up_to_us: int | None = None,
) -> OutboxFingerprint:
    """0.3-0.4 s at 1M rows, against 4.6 s for an enqueue that finds nothing new (ad hoc).
    "Loaded up to" counts a row without ``loaded_at`` as old: such a row is never appended."""
    sql = _enqueue_sql(connector, table, policy, with_loaded_us=True)
    older = (
        "true" if older_up_to_us is None else f"coalesce(loaded_us <= {int(older_up_to_us)}, true)"
    )
    rows, digest, loaded_through, older_rows, older_digest = con.execute(
        "SELECT count(*), coalesce(bit_xor(h), 0), max(loaded_us),"
        f" count(*) FILTER (WHERE {older}), coalesce(bit_xor(h) FILTER (WHERE {older}), 0)"
        " FROM (SELECT hash(sent_id, message_id, currents_event_type, app_group_id, event_ts,"
        f" date_hour, bytes, status, reason, error) AS h, loaded_us FROM ({sql}))"
    ).fetchone()
    return OutboxFingerprint(
        int(rows),
        int(digest),
        None if loaded_through is None else int(loaded_through),
        int(older_rows),
        int(older_digest),
    )


def _enqueue_mark(outbox: OutboxFingerprint, ledger_rows: int) -> dict[str, Any]:
    """What a complete enqueue leaves in the ledger's meta table: the outbox it took in (rows,
    digest, latest ``loaded_at``, DuckDB's version, whose hash it is) and the connector's
    ledger rows after it. A run whose outbox and ledger still match skips the enqueue, which
    would change nothing: every row is in the ledger, and what sending did since (in flight,
    acknowledged, requeued, pending again after a 4xx) is what the enqueue never touches."""
    return {
        "outbox_rows": outbox.rows,
        "outbox_digest": outbox.digest,
        "loaded_through_us": outbox.loaded_through_us,
        "duckdb": duckdb.__version__,
        "ledger_rows": ledger_rows,
    }


def _appended_after(
    mark: dict[str, Any] | None, outbox: OutboxFingerprint, ledger_rows: int
) -> int | None:
    """The ``loaded_at`` (epoch us) after which the outbox only gained rows since the last
    complete enqueue, or None (a whole enqueue is needed).

    Appending is safe when the rows loaded up to the mark's latest ``loaded_at`` are, by count
    and digest, the rows the mark took in, and the connector's ledger holds exactly as many
    rows as that outbox had, now and at the mark: the ledger then holds those rows and nothing
    else (a complete enqueue leaves every outbox row in it), so no later row can be in it, and
    no row of it needs a new status. Anything else (a rebuilt or edited outbox, a row loaded
    out of order, ledger rows of events the outbox no longer has, added or removed by hand, a
    new DuckDB) means a whole enqueue."""
    if not mark or mark.get("loaded_through_us") is None:
        return None
    if mark.get("duckdb") != duckdb.__version__:
        return None
    if not (mark.get("ledger_rows") == ledger_rows == mark.get("outbox_rows")):
        return None
    if (outbox.older_rows, outbox.older_digest) != (mark["outbox_rows"], mark["outbox_digest"]):
        return None
    if outbox.rows == outbox.older_rows:
        return None  # nothing new: the skip's case (or a digest that matched by chance)
    return int(mark["loaded_through_us"])


def _start_gate_warm_up(why: str) -> threading.Thread:
    """Great Expectations' import and context (6.6 s on the 2-core host, ``bench_startup.py``)
    in a thread, so it overlaps the enqueue child's work instead of waiting for the first chunk
    of rows. Started only for a run with something to send (``run_push``): a scheduled run with
    nothing new never pays it. A failure here is left to the gate's first use, which raises it
    (``gate.warm_up`` keeps nothing of a failed attempt)."""
    from currents_segment import gate

    log.info("gate warm-up started: %s", why)

    def warm() -> None:
        with contextlib.suppress(Exception):
            gate.warm_up()

    thread = threading.Thread(target=warm, name="gate-warm-up", daemon=True)
    thread.start()
    return thread


def _start_outbox_warm_up(con: duckdb.DuckDBPyConnection, table: str) -> threading.Thread:
    """The outbox's payloads read once, in a thread on a cursor of its own, while the enqueue
    child prepares the first rows: the first payload join otherwise loads every payload block
    of the table itself (0.8 of its 0.85 s for 10k rows on the 1M bench outbox, ad hoc,
    2026-12-04), in the way of the first batch. Later joins find the blocks in DuckDB's buffer
    pool. Started only for a run with something to send."""

    def warm() -> None:
        cursor = con.cursor()
        try:
            with contextlib.suppress(duckdb.Error):  # a real failure shows in the first join
                cursor.execute(f"SELECT sum(strlen(payload_json)) FROM {table}").fetchone()
        finally:
            cursor.close()

    thread = threading.Thread(target=warm, name="outbox-warm-up", daemon=True)
    thread.start()
    return thread


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run_push(config: ConnectorsConfig, options: PushOptions) -> PushResult:
    """One push run; raises ConfigError, LedgerError or PushError before anything is sent."""
    started = time.monotonic()
    policy = config.push
    selected = config.select(options.connectors)
    for name in options.event_types:
        try:
            catalogue.resolve(name)
        except catalogue.CatalogueError as exc:
            raise PushError(f"--event-type: {exc}") from None
    dry_run = options.dry_run_dir is not None
    api_base = options.api_base or os.environ.get(API_BASE_ENV) or config.api_base
    auths: dict[str, str] = {}
    if not dry_run:
        for c in selected:
            key = c.write_key()  # ConfigError names the variable or file, never the value
            auths[c.name] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    run_id = new_run_id()
    run_dir = settings.reports_dir() / "push" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "push.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    ledger = Ledger.in_memory_copy(options.ledger) if dry_run else Ledger(options.ledger)
    runs: list[ConnectorRun] = []
    gate_warm_up: threading.Thread | None = None
    outbox_warm_up: threading.Thread | None = None
    try:
        ledger.lock()
        ledger.start_run(run_id)
        warehouse = options.warehouse or settings.warehouse_path()
        con = open_warehouse(warehouse, options.outbox_table)
        log.info(
            "run %s: connectors %s, warehouse %s, ledger %s%s",
            run_id,
            ", ".join(c.name for c in selected),
            warehouse,
            ledger.path,
            f", dry run into {options.dry_run_dir}" if dry_run else "",
        )
        transport: HttpTransport | DryRunTransport = (
            DryRunTransport(options.dry_run_dir) if options.dry_run_dir else HttpTransport(policy)
        )
        progress = _progress() if options.progress else None
        coord = _Coordinator(ledger, transport, policy, run_id, progress, started)
        child: ledger_bulk.Child | None = None  # an enqueue process started ahead
        new_rows: dict[str, ledger_bulk.NewRows | None] = {}  # what each enqueue inserted
        try:
            if progress is not None:
                progress.start()
            for c in selected:
                run = ConnectorRun(c.name, c.segment_workspace, c.segment_source)
                runs.append(run)
                coord.runs[c.name] = run
                enqueue_started = time.monotonic()
                before = ledger.count_rows(c.name)
                mark = ledger.enqueue_mark(c.name)
                # No mark: a whole enqueue follows for sure, so its process starts now and is
                # ready (imports done) when the outbox's fingerprint is.
                child = (
                    ledger_bulk.Child(_held(ledger))
                    if mark is None and _bulk_enqueue(ledger)
                    else None
                )
                outbox = _outbox_fingerprint(
                    con, c, options.outbox_table, policy,
                    None if mark is None else mark.get("loaded_through_us"),
                )  # fmt: skip
                if gate_warm_up is None and outbox.rows > before:
                    gate_warm_up = _start_gate_warm_up(f"connector {c.name} has new outbox rows")
                    outbox_warm_up = _start_outbox_warm_up(con, options.outbox_table)
                selection = _selection(c, options)
                if mark == _enqueue_mark(outbox, before):
                    open_rows = _ledger_open_rows(ledger, c, selection)
                    how = "outbox unchanged since the last complete enqueue: not enqueued"
                else:
                    appended_after = _appended_after(mark, outbox, before)
                    # No mark while this enqueue runs: one that fails or is killed leaves the
                    # next run a whole enqueue, never the same appending one again.
                    ledger.clear_enqueue_mark(c.name)
                    open_rows = _enqueue(
                        con, ledger, c, options.outbox_table, policy, warehouse, selection,
                        appended_after, child,
                    )  # fmt: skip
                    child = None
                    how = (
                        "bulk enqueue in a child process"
                        if isinstance(open_rows, ledger_bulk.Stream)
                        else "enqueued through Python"
                    )
                    if appended_after is not None:
                        how += (
                            f", appending the {outbox.rows - outbox.older_rows} outbox rows"
                            f" loaded after {_us_text(appended_after)}"
                        )
                if gate_warm_up is None and open_rows.total > 0:
                    gate_warm_up = _start_gate_warm_up(
                        f"connector {c.name} has {open_rows.total} open rows"
                    )
                log.info(
                    "connector %s: %s open rows to send, counted after %.1fs (%s)",
                    c.name, open_rows.total, time.monotonic() - enqueue_started, how,
                )  # fmt: skip
                try:
                    _push_connector(
                        coord, con, c, run, options, c.endpoint(api_base),
                        auths.get(c.name, ""), run_dir, open_rows,
                    )  # fmt: skip
                except BaseException:
                    with contextlib.suppress(ledger_bulk.BulkError):
                        open_rows.close()
                    raise
                try:
                    open_rows.close()  # every row enqueued, also after an early stop
                except ledger_bulk.BulkError as exc:
                    raise PushError(f"connector {c.name}: enqueue failed: {exc}") from None
                new_rows[c.name] = getattr(open_rows, "new_rows", None)
                # The child reports the rows it inserted (the ledger never loses one): a count
                # of the connector's rows reads its index, 0.07 to 0.66 s per 1M rows.
                inserted = getattr(open_rows, "inserted", None)
                after = ledger.count_rows(c.name) if inserted is None else before + inserted
                run.queued = after - before
                ledger.set_enqueue_mark(c.name, _enqueue_mark(outbox, after))
                log.info(
                    "connector %s: %s new ledger rows; enqueue and send took %.1fs",
                    c.name, run.queued, time.monotonic() - enqueue_started,
                )  # fmt: skip
            coord.close()
        finally:
            if child is not None:  # started ahead, never asked (an error came first)
                child.close()
            if outbox_warm_up is not None:
                outbox_warm_up.join()  # its cursor is closed before the connection
            coord.pool.shutdown(wait=True)
            if progress is not None:
                progress.stop()
            con.close()
        for run in runs:
            _finish_counts(ledger, run, policy, new_rows.get(run.connector))
            log.info(
                "connector %s: queued %s, sent %s in %s batches, acknowledged %s now; totals %s;"
                " rejected %s; skipped %s; at risk %s; missing from outbox %s; stopped: %s",
                run.connector, run.queued, run.sent, run.batches, run.acknowledged_now,
                run.totals, run.rejected_by_reason, run.skipped_by_reason, run.at_risk,
                run.missing_from_outbox, run.stopped or "no",
            )  # fmt: skip
            filtered = options.event_types or options.since or options.until
            run.open_in_selection = (
                ledger.count_open(
                    run.connector,
                    [catalogue.resolve(t).event_type for t in options.event_types] or None,
                    _ts_text(options.since),
                    _ts_text(options.until),
                )
                if filtered
                else run.pending
            )
        exit_code = _exit_code(runs, dry_run)
        result = PushResult(
            run_id, run_dir, dry_run, exit_code, round(time.monotonic() - started, 3), runs
        )
        summary = json.dumps(result.to_json(), indent=2, default=str)
        (run_dir / "summary.json").write_text(summary)
        ledger.finish_run(run_id, exit_code, summary)
        log.info("run %s finished with exit code %s", run_id, exit_code)
        return result
    finally:
        if gate_warm_up is not None:
            gate_warm_up.join()  # no import left running behind a returned run
        log.removeHandler(handler)
        handler.close()
        ledger.close()


def _exit_code(runs: list[ConnectorRun], dry_run: bool) -> int:
    if any(r.stopped for r in runs):
        return 1
    if dry_run:
        return 0
    if any(r.open_in_selection or r.at_risk for r in runs):
        return 1
    return 0


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def print_summary(result: PushResult) -> None:
    from rich.console import Console
    from rich.table import Table

    def reasons(counts: dict[str, int]) -> str:
        total = sum(counts.values())
        if not total:
            return "0"
        return f"{total} (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")"

    title = f"push {result.run_id}" + (
        " (dry run: batches written, nothing sent)" if result.dry_run else ""
    )
    table = Table(title=title)
    for column in (
        "connector", "workspace/source", "queued", "sent", "acknowledged", "rejected",
        "skipped", "pending", "at risk", "status",
    ):  # fmt: skip
        table.add_column(
            column,
            justify="left" if column in ("connector", "workspace/source", "status") else "right",
        )
    for r in result.connectors:
        status = r.stopped or ("ok" if not r.open_in_selection else "pending left")
        if r.missing_from_outbox:
            status += f"; {r.missing_from_outbox} missing from the outbox"
        table.add_row(
            r.connector,
            f"{r.segment_workspace}/{r.segment_source}",
            str(r.queued),
            str(r.sent),
            str(r.totals.get("acknowledged", 0)),
            reasons(r.rejected_by_reason),
            reasons(r.skipped_by_reason),
            str(r.pending),
            str(r.at_risk),
            status,
        )
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=200)  # logs and cron mail: do not wrap the table
    console.print(table)
    console.print(f"run log and summary: {result.run_dir} (exit code {result.exit_code})")


# ---------------------------------------------------------------------------------------------
# CLI


def _parse_time(value: str | None, option: str) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 time", param_hint=option) from None
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt


@click.command()
@click.option(
    "--connectors",
    "connectors_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Connectors YAML (default: $CURRENTS_SEGMENT_CONNECTORS, else the embedded demo).",
)
@click.option(
    "--connector", "connector_names", multiple=True, help="Only this connector (repeatable)."
)
@click.option(
    "--event-type", "event_types", multiple=True, help="Only this Currents event type (repeatable)."
)
@click.option("--since", default=None, help="Only events at or after this time (ISO-8601, UTC).")
@click.option("--until", default=None, help="Only events before this time (ISO-8601, UTC).")
@click.option(
    "--dry-run",
    "dry_run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write each batch body to OUT_DIR/<connector>/batch-NNNNNN.json; send nothing, ledger untouched.",
)
@click.option(
    "--api-base",
    default=None,
    help=f"Send to this base URL (an emulator) instead of Segment's hosts; also ${API_BASE_ENV}.",
)
@click.option(
    "--warehouse",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Warehouse DuckDB (default: settings).",
)
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ledger SQLite (default: settings).",
)
@click.option(
    "--requeue",
    "requeue_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="File of messageIds (one per line) Segment does not hold: send them again (needs one --connector).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def cli(
    connectors_file: Path | None,
    connector_names: tuple[str, ...],
    event_types: tuple[str, ...],
    since: str | None,
    until: str | None,
    dry_run_dir: Path | None,
    api_base: str | None,
    warehouse: Path | None,
    ledger_path: Path | None,
    requeue_file: Path | None,
    progress: bool,
) -> None:
    """Send the outbox to Segment with a durable ledger.

    Exit codes: 0 all selected events acknowledged; 1 events left pending or at risk, a connector
    stopped by a final 4xx or a gate failure; 2 configuration or run error.
    """
    options = PushOptions(
        connectors=connector_names,
        event_types=event_types,
        since=_parse_time(since, "--since"),
        until=_parse_time(until, "--until"),
        dry_run_dir=dry_run_dir,
        api_base=api_base,
        warehouse=warehouse,
        ledger=ledger_path,
        progress=progress,
    )
    try:
        config = load_connectors(connectors_file)
        if requeue_file is not None:
            if len(connector_names) != 1:
                raise PushError("--requeue needs exactly one --connector")
            config.select(connector_names)
            ids = [line.strip() for line in requeue_file.read_text().splitlines() if line.strip()]
            ledger = Ledger(ledger_path)
            try:
                moved = ledger.requeue(connector_names[0], ids, f"requeued from {requeue_file}")
            finally:
                ledger.close()
            click.echo(f"requeued {moved} of {len(ids)} messageIds from {requeue_file}", err=True)
        result = run_push(config, options)
    except (ConfigError, LedgerError, PushError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    print_summary(result)
    raise SystemExit(result.exit_code)
