"""The emulator's HTTP server: a minimal asyncio HTTP/1.1 server (keep-alive, Content-Length
and chunked bodies) and Segment's Tracking API rules on top of it.

Routes (one port serves both regions):

- ``POST /v1/batch``, ``/v1/import``, ``/v1/track``: the US host (api.segment.io)
- ``POST /eu1/v1/batch``, ``/eu1/v1/import``, ``/eu1/v1/track``: the EU host
  (events.eu1.segmentapis.com)
- ``GET /events/volume``: the Public API's event volumes (Bearer token)
- ``GET /admin/stats``, ``POST /admin/flush``, ``POST /admin/clock``, ``GET /health``

Everything runs on one event loop thread, so counters and the de-duplication table need no
locks; Parquet writing runs on a swapped-out buffer in a forked child process (POSIX; a worker
thread where fork is missing or ``flush_in_child_process`` is false).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
import time
import uuid
import zlib
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

import orjson

from .emulator_config import EmulatorConfig, Faults, Source, fingerprint
from .emulator_store import (
    KeptEvents,
    PendingWrites,
    StoreWriter,
    event_times,
    load_history,
    snake_cached,
    time_us,
)
from .emulator_volume import VolumeQueryError, events_volume

log = logging.getLogger("currents_segment.emulator")

MAX_EVENT_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_MESSAGE_ID_CHARS = 100
# Bodies beyond this are not even read (the connection is closed after a 413).
HARD_BODY_LIMIT = 64 * 1024 * 1024
TRACKING_PATHS = {"/v1/batch": "batch", "/v1/import": "batch", "/v1/track": "track"}
EU_PREFIX = "/eu1"

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class Response:
    __slots__ = ("status", "body", "headers", "close")

    def __init__(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else orjson.dumps(body)
        self.headers = headers or {}
        self.close = close


class DropConnection(Exception):
    """Fault injection: close the socket without any answer."""


def _ok() -> Response:
    return Response(200, b'{"success":true}')


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, code: str | None = None
) -> Response:
    """Error bodies carry ``code`` and ``message``, which Segment's libraries read."""
    body = {"success": False, "code": code or _REASONS.get(status, "error"), "message": message}
    return Response(status, body, headers)


class Emulator:
    """Segment's Tracking API behaviour, state and fault injection (no I/O here but flushing)."""

    def __init__(self, config: EmulatorConfig, store: StoreWriter) -> None:
        self.config = config
        self.store = store
        self.sources_by_key = config.by_key()
        self.faults: Faults = config.faults
        self.window_us = int(config.dedupe_window_hours * 3600 * 1_000_000)
        self.clock_offset_us = int(config.clock_offset_seconds * 1_000_000)
        self._rng = {
            name: random.Random(f"{self.faults.seed}:{name}")
            for name in ("5xx", "drop", "drop_before", "loss", "duplicate")
        }
        self.seen: dict[str, int] = {}
        self.volume: Counter[tuple[str, str, int]] = Counter()
        self.pending = PendingWrites()
        self.stats: Counter[str] = Counter()
        self.dropped_by_reason: Counter[str] = Counter()
        self.rejected_by_reason: Counter[str] = Counter()
        self.kept_by_source: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self.tracking_requests = 0
        self._api_calls: dict[str, deque[float]] = {}
        self._last_prune_us = 0
        self._flush_lock = asyncio.Lock()
        self.started_at = time.time()

    # -- clock ----------------------------------------------------------------------------

    def now_us(self) -> int:
        return time.time_ns() // 1000 + self.clock_offset_us

    # -- restart ----------------------------------------------------------------------------

    def restore(self) -> None:
        """Reload de-duplication ids and volumes from the store (a restarted emulator)."""
        seen, volume = load_history(self.store.root, self.now_us() - self.window_us)
        self.seen.update(seen)
        self.volume.update(volume)
        self.stats["restored_message_ids"] = len(seen)

    # -- tracking API ------------------------------------------------------------------------

    def tracking_faults_before(self) -> Response | None:
        """Faults decided before the body is processed, in a fixed order (deterministic)."""
        self.tracking_requests += 1
        f = self.faults
        if f.rate_limit_every and self.tracking_requests % f.rate_limit_every == 0:
            self.faults_injected["rate_limited"] += 1
            reset = int(time.time()) + 1
            return _error(
                429,
                "rate limit exceeded",
                {"Retry-After": "1", "X-RateLimit-Reset": str(reset)},
                code="rate_limited",
            )
        if f.error_5xx_rate and self._rng["5xx"].random() < f.error_5xx_rate:
            status = self._rng["5xx"].choice((500, 502, 503))
            self.faults_injected[f"error_{status}"] += 1
            return _error(status, "injected server error", code="injected_error")
        if (
            f.drop_connection_before_processing_rate
            and self._rng["drop_before"].random() < f.drop_connection_before_processing_rate
        ):
            self.faults_injected["dropped_connection_before_processing"] += 1
            raise DropConnection
        return None

    def tracking_drop_after(self) -> bool:
        f = self.faults
        if f.drop_connection_rate and self._rng["drop"].random() < f.drop_connection_rate:
            self.faults_injected["dropped_connection_after_processing"] += 1
            return True
        return False

    def handle_tracking(
        self, region: str, kind: str, headers: dict[str, str], body: bytes
    ) -> Response:
        if headers.get("content-encoding", "").lower() in ("gzip", "x-gzip"):
            try:
                # Stop one byte past the limit: a gzip bomb never inflates in memory.
                inflater = zlib.decompressobj(47)
                body = inflater.decompress(body, MAX_REQUEST_BYTES + 1)
            except zlib.error:
                return self._reject("invalid_gzip", 400, "invalid gzip body")
        elif headers.get("content-encoding", "identity").lower() not in ("identity", ""):
            return self._reject("unsupported_encoding", 400, "unsupported Content-Encoding")
        if len(body) > MAX_REQUEST_BYTES:
            return self._reject("request_too_large", 400, "request is larger than 500 KB")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._reject("invalid_json", 400, "invalid JSON")
        if not isinstance(payload, dict):
            return self._reject("invalid_json", 400, "the body must be a JSON object")

        if kind == "batch":
            items = payload.get("batch")
            if not isinstance(items, list):
                return self._reject("invalid_json", 400, "batch must be a list")
        else:
            items = [payload]
        # Segment rejects the whole request when one event is over 32 KB. Each event's JSON is
        # what the store keeps of it, too (_accept).
        lines: list[bytes] | None = None
        if len(body) > MAX_EVENT_BYTES:
            lines = [orjson.dumps(item) for item in items]
            if max(map(len, lines), default=0) > MAX_EVENT_BYTES:
                return self._reject("event_too_large", 400, "an event is larger than 32 KB")

        key = _basic_auth_user(headers.get("authorization", "")) or payload.get("writeKey")
        source = self.sources_by_key.get(key) if isinstance(key, str) else None
        if source is not None and source.region == "us" and region == "eu":
            return self._reject("us_key_at_eu_host", 401, "write key not valid in this region")

        self.stats["requests_accepted"] += 1
        now = self.now_us()
        n_items = len(items)
        self.stats["events_received"] += n_items
        if source is None:
            reason = "missing_write_key" if not key else "unknown_write_key"
            self._drop_all(items, reason, None, now, fingerprint(key) if key else None)
            return _ok()
        if source.region == "eu" and region == "us":
            self._drop_all(items, "wrong_region", source, now, None)
            return _ok()
        if n_items > MAX_BATCH_EVENTS:
            self._drop_all(items, "over_batch_limit", source, now, None)
            return _ok()

        sent_at = time_us(payload.get("sentAt"))
        top_context = payload.get("context") if isinstance(payload.get("context"), dict) else None
        self._accept(items, lines, source, now, sent_at, top_context, kind)
        if len(self.pending) >= self.config.flush_every_events:
            self.schedule_flush()
        return _ok()

    def _accept(
        self,
        items: list[Any],
        lines: list[bytes] | None,
        source: Source,
        now: int,
        sent_at: int | None,
        top_context: dict[str, Any] | None,
        kind: str,
    ) -> None:
        f = self.faults
        loss_rng, dup_rng = self._rng["loss"], self._rng["duplicate"]
        seen = self.seen
        window = self.window_us
        volume = self.volume
        kept_by_source = self.kept_by_source
        pending = self.pending
        kept = pending.kept
        slug = source.slug
        minute = now // 60_000_000 * 60
        can_be_revoked = source.revoked or bool(source.revoked_windows)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                self._drop(None, "invalid_event", source, now, None, None)
                continue
            mid = item.get("messageId")
            if mid is None:
                mid = f"emu-{uuid.uuid4()}"  # Segment assigns one when the caller did not
            elif not isinstance(mid, str):
                mid = str(mid)
            event_text = item.get("event")
            etype = item.get("type", "track" if kind == "track" else None)
            if len(mid) > MAX_MESSAGE_ID_CHARS:
                self._drop(mid, "message_id_too_long", source, now, event_text, None)
                continue
            if etype != "track":
                self._drop(mid, "not_track_call", source, now, event_text, None)
                continue
            if not event_text or not isinstance(event_text, str):
                self._drop(mid, "missing_event_name", source, now, None, None)
                continue
            if not snake_cached(event_text):
                self._drop(mid, "invalid_event_name", source, now, event_text, None)
                continue
            user_id = item.get("userId")
            anonymous_id = item.get("anonymousId")
            if user_id in (None, "") and anonymous_id in (None, ""):
                self._drop(mid, "missing_identity", source, now, event_text, None)
                continue
            timestamp = None  # parsed only when a check or a drop record needs it
            if can_be_revoked:
                timestamp = event_times(item, now, sent_at)[0]
                if source.revoked_for(timestamp):
                    self._drop(mid, "revoked_write_key", source, now, event_text, timestamp)
                    continue
            first = seen.get(mid)
            if first is not None and now - first < window:
                if timestamp is None:
                    timestamp = event_times(item, now, sent_at)[0]
                self._drop(mid, "deduplicated", source, now, event_text, timestamp)
                continue
            if f.silent_loss_rate and loss_rng.random() < f.silent_loss_rate:
                # Lost before the de-duplication layer records the id: a resend is kept.
                if timestamp is None:
                    timestamp = event_times(item, now, sent_at)[0]
                self.faults_injected["silent_loss"] += 1
                self._drop(mid, "injected_loss", source, now, event_text, timestamp)
                continue
            seen[mid] = now
            if top_context:
                context = item.get("context")
                merged = {**top_context, **context} if isinstance(context, dict) else top_context
                line = orjson.dumps({**item, "context": merged})
            else:
                line = orjson.dumps(item) if lines is None else lines[i]
            # PendingWrites.keep and KeptEvents.add, written out: this is the loop every kept
            # event goes through.
            group = kept.get((slug, event_text))
            if group is None:
                group = kept[(slug, event_text)] = KeptEvents()
            lines_out = group.lines
            lines_out += line
            lines_out += b"\n"
            group.mids.append(mid)
            group.received.append(now)
            group.sent.append(sent_at)
            pending.kept_rows += 1
            volume[(slug, event_text, minute)] += 1
            kept_by_source[slug] += 1
            if f.duplicate_delivery_rate and dup_rng.random() < f.duplicate_delivery_rate:
                self.faults_injected["duplicate_delivery"] += 1
                group.add(line, mid, now, sent_at)
                pending.kept_rows += 1
                pending.duplicated.append(
                    {
                        "message_id": mid,
                        "reason": "injected_duplicate",
                        "workspace": source.workspace,
                        "source": slug,
                        "received_at": now,
                        "event": event_text,
                    }
                )
        if now - self._last_prune_us > 600_000_000:
            self._prune(now)

    def _prune(self, now: int) -> None:
        self._last_prune_us = now
        if len(self.seen) > 1_000_000:
            limit = now - self.window_us
            self.seen = {k: v for k, v in self.seen.items() if v >= limit}

    def _drop(
        self,
        mid: str | None,
        reason: str,
        source: Source | None,
        now: int,
        event: Any,
        timestamp: int | None,
        key_fp: str | None = None,
    ) -> None:
        self.dropped_by_reason[reason] += 1
        self.pending.dropped.append(
            {
                "message_id": mid,
                "reason": reason,
                "workspace": source.workspace if source else None,
                "source": source.slug if source else None,
                "received_at": now,
                "event": event if isinstance(event, str) else None,
                "timestamp": timestamp,
                "write_key_fingerprint": key_fp or (source.key_fingerprint if source else None),
            }
        )

    def _drop_all(
        self,
        items: list[Any],
        reason: str,
        source: Source | None,
        now: int,
        key_fp: str | None,
    ) -> None:
        for item in items:
            mid = item.get("messageId") if isinstance(item, dict) else None
            event = item.get("event") if isinstance(item, dict) else None
            ts = time_us(item.get("timestamp")) if isinstance(item, dict) else None
            self._drop(None if mid is None else str(mid), reason, source, now, event, ts, key_fp)

    def _reject(self, reason: str, status: int, message: str) -> Response:
        self.rejected_by_reason[reason] += 1
        return _error(status, message, code=reason)

    # -- flushing --------------------------------------------------------------------------

    def schedule_flush(self) -> None:
        if not self._flush_lock.locked():
            asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> dict[str, int]:
        async with self._flush_lock:
            pending, self.pending = self.pending, PendingWrites()
            if not len(pending):
                return {}
            loop = asyncio.get_running_loop()
            try:
                if self.config.flush_in_child_process:
                    pid = self.store.fork_write(pending)
                    # ``pending`` stays referenced (and untouched) until the child is done.
                    job = loop.run_in_executor(None, self.store.wait_child_write, pid)
                else:
                    job = loop.run_in_executor(None, self.store.write, pending)
                try:
                    return await asyncio.shield(job)
                except asyncio.CancelledError:
                    # A stop while the parts are written (the timer's flush is cancelled): wait
                    # for the writer, so the final flush comes after it and a stopped emulator
                    # has written everything; then let the cancellation go on.
                    await job
                    raise
            except Exception:
                # Keep the rows: put them back in front of what arrived meanwhile.
                self.pending.put_back(pending)
                self.stats["flush_errors"] += 1
                raise

    # -- Public API ------------------------------------------------------------------------

    def handle_volume(self, headers: dict[str, str], query: str) -> Response:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        workspaces = self.config.api_tokens.get(token) if token else None
        if not workspaces:
            return _error(401, "a valid Bearer token is required")
        calls = self._api_calls.setdefault(token, deque())
        now = time.monotonic()
        while calls and now - calls[0] >= 60.0:
            calls.popleft()
        limit = self.config.public_api_rate_per_minute
        if limit and len(calls) >= limit:
            retry = max(1, int(60.0 - (now - calls[0])) + 1)
            self.stats["public_api_rate_limited"] += 1
            return _error(
                429,
                "Too many requests",
                {
                    "Retry-After": str(retry),
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(time.time()) + retry),
                },
            )
        calls.append(now)
        try:
            return Response(200, events_volume(query, self.config, workspaces, self.volume))
        except VolumeQueryError as exc:
            return _error(422, str(exc))

    def stats_document(self) -> dict[str, Any]:
        kept = sum(self.kept_by_source.values())
        return {
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "clock": datetime.fromtimestamp(self.now_us() / 1e6, UTC).isoformat(),
            "tracking_requests": self.tracking_requests,
            "requests_accepted": self.stats["requests_accepted"],
            "requests_rejected": dict(self.rejected_by_reason),
            "events_received": self.stats["events_received"],
            "events_kept": kept,
            "events_kept_by_source": dict(self.kept_by_source),
            "events_dropped": dict(self.dropped_by_reason),
            "events_duplicated": self.faults_injected["duplicate_delivery"],
            "faults_injected": dict(self.faults_injected),
            "faults": self.faults.as_dict(),
            "buffered_rows": len(self.pending),
            "parts_written": self.store.parts_written,
            "rows_written": self.store.rows_written,
            "dedupe_ids": len(self.seen),
            "dedupe_window_hours": self.config.dedupe_window_hours,
            "restored_message_ids": self.stats["restored_message_ids"],
            "public_api_rate_limited": self.stats["public_api_rate_limited"],
            "flush_errors": self.stats["flush_errors"],
            "sources": [
                {
                    "workspace": s.workspace,
                    "region": s.region,
                    "slug": s.slug,
                    "id": s.source_id,
                    "write_key": s.key_fingerprint,
                    "revoked": s.revoked,
                }
                for s in self.config.sources
            ],
        }


def _basic_auth_user(header: str) -> str | None:
    if header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


# ---------------------------------------------------------------------------------------------
# HTTP/1.1


class HttpServer:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._connections: set[asyncio.StreamWriter] = set()

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    await self._send(writer, _error(400, "headers too large"), close=True)
                    return
                request_line, _, header_block = head[:-4].decode("latin-1").partition("\r\n")
                parts = request_line.split(" ")
                if len(parts) != 3:
                    await self._send(writer, _error(400, "malformed request line"), close=True)
                    return
                method, target, version = parts
                headers: dict[str, str] = {}
                for line in header_block.split("\r\n"):
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it
                try:
                    body = await self._read_body(reader, headers)
                except ValueError as exc:
                    await self._send(writer, _error(413, str(exc)), close=True)
                    return
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                close = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
                try:
                    response = await self.route(method, target, headers, body)
                except DropConnection:
                    writer.transport.abort()
                    return
                except Exception:  # a bug must not kill the server: answer 500 and log it
                    log.exception("error handling %s %s", method, target.partition("?")[0])
                    response = _error(500, "internal error")
                await self._send(writer, response, close=close or response.close)
                if close or response.close:
                    return
        finally:
            self._connections.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            total = 0
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers expected
                    return b"".join(chunks)
                total += size
                if total > HARD_BODY_LIMIT:
                    raise ValueError("body too large")
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = int(headers.get("content-length", "0") or 0)
        if length > HARD_BODY_LIMIT:
            raise ValueError("body too large")
        return await reader.readexactly(length) if length else b""

    async def _send(self, writer: asyncio.StreamWriter, response: Response, close: bool) -> None:
        head = [
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}",
            "Content-Type: application/json",
            f"Content-Length: {len(response.body)}",
        ]
        head.extend(f"{k}: {v}" for k, v in response.headers.items())
        if close:
            head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    async def route(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> Response:
        path, _, query = target.partition("?")
        emu = self.emulator
        region = "us"
        tracking_path = path
        if path.startswith(EU_PREFIX + "/"):
            region, tracking_path = "eu", path[len(EU_PREFIX) :]
        kind = TRACKING_PATHS.get(tracking_path)
        if kind is not None:
            if method != "POST":
                return _error(405, "use POST")
            early = emu.tracking_faults_before()
            if early is not None:
                return early
            if emu.faults.slow_ms:
                await asyncio.sleep(emu.faults.slow_ms / 1000)
            response = emu.handle_tracking(region, kind, headers, body)
            if emu.tracking_drop_after():
                raise DropConnection
            return response
        if path == "/events/volume" and method == "GET":
            return emu.handle_volume(headers, query)
        if path == "/admin/stats" and method == "GET":
            return Response(200, emu.stats_document())
        if path == "/admin/flush" and method == "POST":
            written = await emu.flush()
            return Response(200, {"written": written})
        if path == "/admin/clock" and method == "POST":
            try:
                data = orjson.loads(body or b"{}")
                emu.clock_offset_us += int(float(data.get("advance_seconds", 0)) * 1_000_000)
            except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                return _error(400, 'expected {"advance_seconds": N}')
            return Response(200, {"clock": emu.stats_document()["clock"]})
        if path == "/health":
            return Response(200, {"status": "ok"})
        return _error(404, f"no route for {method} {path}")

    def abort_all(self) -> None:
        for writer in list(self._connections):
            with contextlib.suppress(Exception):
                writer.transport.abort()
