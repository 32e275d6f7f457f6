"""``currents-segment emulator``: a local, Segment-compatible Tracking API over real HTTP.

The server (``emulator_server``) keeps what it accepts in a Segment-warehouse-shaped Parquet
store (``emulator_store``) and answers the Public API's ``GET /events/volume``
(``emulator_volume``). Tests, benchmarks and the pipeline start it as a separate process with
:func:`running_emulator` and read what it kept with :func:`open_store` / :func:`read_table`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import orjson
import yaml

from . import settings
from .emulator_config import (
    EmulatorConfig,
    EmulatorConfigError,
    Faults,
    load_config,
    parse_fault_flags,
)
from .emulator_store import open_store, read_table, snakecase, store_tables

__all__ = [
    "DEFAULT_CONFIG",
    "EmulatorError",
    "EmulatorProcess",
    "open_store",
    "read_table",
    "running_emulator",
    "serve",
    "snakecase",
    "store_tables",
]

DEFAULT_CONFIG = Path(__file__).parent / "defaults" / "emulator.yml"
log = logging.getLogger("currents_segment.emulator")


class EmulatorError(RuntimeError):
    """The emulator process failed to start or to answer."""


async def serve(
    config: EmulatorConfig,
    store_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    ready_file: Path | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then flush the store and return."""
    from .emulator_server import Emulator, HttpServer
    from .emulator_store import StoreWriter

    store = StoreWriter(store_dir)
    store.warm_up()
    emulator = Emulator(config, store)
    emulator.restore()
    # The buffer holds hundreds of thousands of acyclic dicts: frequent full collections
    # would traverse them all for nothing.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    http = HttpServer(emulator)
    server = await asyncio.start_server(
        http.serve_connection, host, port, limit=1024 * 1024, backlog=512
    )
    # Signals are handled before anyone can know the URL: a stop always flushes.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound_port = server.sockets[0].getsockname()[1]
    url = f"http://{host}:{bound_port}"
    if ready_file is not None:
        ready_file.parent.mkdir(parents=True, exist_ok=True)
        partial = ready_file.with_name(ready_file.name + ".tmp")
        partial.write_bytes(
            orjson.dumps({"url": url, "us_url": url, "eu_url": url + "/eu1", "pid": os.getpid()})
        )
        os.replace(partial, ready_file)
    log.info(
        "listening on %s (US: %s/v1, EU: %s/eu1/v1); sources: %s; store: %s",
        url,
        url,
        url,
        ", ".join(f"{s.slug}[{s.region}, key {s.key_fingerprint}]" for s in config.sources),
        store_dir,
    )
    click.echo(f"emulator listening on {url} (EU host: {url}/eu1), store {store_dir}")

    async def flush_periodically() -> None:
        while True:
            await asyncio.sleep(config.flush_interval_seconds or 5.0)
            try:
                await emulator.flush()
            except Exception:  # rows stay buffered; the next flush retries
                log.exception("periodic flush failed")

    flusher = loop.create_task(flush_periodically())
    try:
        await stop.wait()
    finally:
        flusher.cancel()
        server.close()
        http.abort_all()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        try:
            written = await emulator.flush()
        except Exception:
            rescue = emulator.store.rescue(emulator.pending)
            log.exception("final flush failed; the unwritten rows are in %s", rescue)
            raise
        log.info("stopped; final flush wrote %s", written)


# ---------------------------------------------------------------------------------------------
# Running it as a subprocess (tests, benchmarks, the pipeline)


@dataclass
class EmulatorProcess:
    """A running emulator subprocess and a small client for its admin endpoints."""

    url: str
    pid: int
    store_dir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path = field(repr=False)

    @property
    def us_url(self) -> str:
        return self.url

    @property
    def eu_url(self) -> str:
        return self.url + "/eu1"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        response = requests.request(method, self.url + path, timeout=60, **kwargs)
        if response.status_code != 200:
            raise EmulatorError(f"{method} {path}: HTTP {response.status_code}: {response.text}")
        return response.json()

    def flush(self) -> dict[str, int]:
        """Write everything buffered to the store now; rows written per table."""
        return self._request("POST", "/admin/flush")["written"]

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/admin/stats")

    def advance_clock(self, seconds: float) -> str:
        """Move the emulator's clock (received_at, de-duplication window) forward."""
        return self._request("POST", "/admin/clock", json={"advance_seconds": seconds})["clock"]

    def events_volume(self, token: str, **params: Any) -> dict[str, Any]:
        return self._request(
            "GET", "/events/volume", params=params, headers={"Authorization": f"Bearer {token}"}
        )

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the final flush, and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                raise EmulatorError(
                    f"emulator pid {self.pid} did not stop within {timeout}s; killed "
                    f"(log: {self.log_path})"
                ) from None
        return self.process.returncode


@contextlib.contextmanager
def running_emulator(
    config: dict[str, Any] | Path | str,
    store_dir: Path | str,
    faults: dict[str, Any] | None = None,
    host: str = "127.0.0.1",
    startup_timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> Iterator[EmulatorProcess]:
    """Start ``currents-segment emulator`` as a subprocess on a free port; stop it on exit."""
    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cs-emulator-"))
    try:
        if isinstance(config, dict):
            config_path = workdir / "config.yml"
            # The config may hold write keys: only the owner may read it.
            fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                yaml.safe_dump(config, fh)
        else:
            config_path = Path(config)
        load_config(config_path)  # fail here, with the file named, not in the child
        ready = workdir / "ready.json"
        log_path = store_dir / "_emulator" / "emulator.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "currents_segment.cli",
            "emulator",
            "--config",
            str(config_path),
            "--host",
            host,
            "--port",
            "0",
            "--store",
            str(store_dir),
            "--ready-file",
            str(ready),
        ]
        for name, value in (faults or {}).items():
            cmd += ["--fault", f"{name}={value}"]
        with log_path.open("ab") as log_fh:
            process = subprocess.Popen(
                cmd,
                stdout=log_fh,
                stderr=log_fh,
                env={**os.environ, **(env or {})},
            )
        deadline = time.monotonic() + startup_timeout
        while not ready.exists():
            if process.poll() is not None:
                raise EmulatorError(
                    f"emulator exited with {process.returncode} before listening:\n"
                    + _tail(log_path)
                )
            if time.monotonic() > deadline:
                process.kill()
                process.wait(5)
                raise EmulatorError(
                    f"emulator not ready after {startup_timeout}s:\n" + _tail(log_path)
                )
            time.sleep(0.02)
        info = orjson.loads(ready.read_bytes())
        handle = EmulatorProcess(
            url=info["url"],
            pid=info["pid"],
            store_dir=store_dir,
            process=process,
            log_path=log_path,
        )
        try:
            yield handle
        finally:
            handle.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------
# CLI


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Workspaces, sources, write keys, faults (YAML). Default: the embedded demo config.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, help="Port; 0 picks a free one.")
@click.option(
    "--store",
    "store_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Store directory (default: $CURRENTS_SEGMENT_HOME/emulator).",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='Written once listening: {"url": ..., "pid": ...}.',
)
@click.option(
    "--fault",
    "fault_flags",
    multiple=True,
    metavar="NAME=VALUE",
    help=f"Inject a fault (repeatable; overrides the config's faults): {', '.join(Faults().as_dict())}.",
)
@click.option("--log-level", default="INFO", show_default=True)
def cli(
    config_path: Path | None,
    host: str,
    port: int,
    store_dir: Path | None,
    ready_file: Path | None,
    fault_flags: tuple[str, ...],
    log_level: str,
) -> None:
    """Serve a local Segment-compatible Tracking API until SIGTERM/SIGINT.

    US host: URL/v1/batch (and /v1/track, /v1/import); EU host: URL/eu1/v1/batch.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        config = load_config(config_path or DEFAULT_CONFIG)
        if fault_flags:
            faults = config.faults.merged(parse_fault_flags(fault_flags), "--fault")
            config = dataclasses.replace(config, faults=faults)
    except EmulatorConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    asyncio.run(serve(config, store_dir or settings.emulator_dir(), host, port, ready_file))


if __name__ == "__main__":
    cli()
