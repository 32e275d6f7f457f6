"""``currents-segment run``: ingest -> dbt build -> push -> receive -> reconcile, end to end.

Safe to run from cron every hour: every stage is incremental and idempotent, and a lock file under
``CURRENTS_SEGMENT_HOME`` keeps a second copy from running at the same time (it waits with
``--wait`` or exits with code 3 and says who holds the lock). Each run writes a JSON run log under
``<reports>/runs/``.

``--demo`` runs the chain on the embedded defaults: it writes a small synthetic Currents export
(once), starts the local Segment emulator as a subprocess on a free loopback port, pushes to it,
receives its store and reconciles.

Exit codes: 0 clean; 1 the run finished but something needs attention (files that did not land,
events left pending or at risk, a reconciliation threshold breached); 2 a stage failed;
3 another run holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from currents_segment import settings

EXIT_CLEAN, EXIT_ATTENTION, EXIT_FAILED, EXIT_LOCKED = 0, 1, 2, 3
DEMO_WRITE_KEY_ENV = "SEGMENT_WRITE_KEY"
DEFAULTS = Path(__file__).parent / "defaults"


class RunLocked(RuntimeError):
    """Another ``currents-segment run`` holds the lock."""


@dataclass
class StageOutcome:
    name: str
    exit_code: int
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class RunResult:
    run_id: str
    stages: list[StageOutcome] = field(default_factory=list)
    report_files: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        codes = [s.exit_code for s in self.stages]
        if any(c >= EXIT_FAILED for c in codes):
            return EXIT_FAILED
        return EXIT_ATTENTION if any(codes) else EXIT_CLEAN

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "exit_code": self.exit_code,
            "stages": [s.__dict__ for s in self.stages],
            "report_files": self.report_files,
        }


@contextlib.contextmanager
def run_lock(path: Path, wait_seconds: float | None) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``; released by the kernel even if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a+")
    try:
        deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is None or time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "unknown"
                    raise RunLocked(
                        f"another currents-segment run holds {path} ({holder}); "
                        "it exits when done: try again later, or pass --wait SECONDS"
                    ) from None
                time.sleep(1.0)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started {datetime.now(UTC).isoformat(timespec='seconds')}")
        fh.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _stage(result: RunResult, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one stage, timing it; a raised exception becomes exit code 2 for that stage."""
    started = time.monotonic()
    try:
        code, summary, value = fn(*args, **kwargs)
        error = None
    except Exception as exc:  # noqa: BLE001 - reported as a failed stage, the chain stops
        code, summary, value = EXIT_FAILED, {}, None
        error = f"{type(exc).__name__}: {exc}"
    result.stages.append(
        StageOutcome(name, code, round(time.monotonic() - started, 2), summary, error)
    )
    return value


def _ingest(sources: list[str]) -> tuple[int, dict, Any]:
    from currents_segment import landing

    res = landing.ingest(sources, progress=False)
    summary = {
        "files": res.files_by_status,
        "rows": sum(res.rows_per_type.values()),
        "already_landed": res.already_landed,
        "problems": [p.__dict__ for p in res.problems][:50],
    }
    return (EXIT_CLEAN if res.clean else EXIT_ATTENTION), summary, res


def _build() -> tuple[int, dict, Any]:
    from currents_segment import transform

    res = transform.build()
    summary = {
        "passed": res.passed,
        "failed": res.failed,
        "errored": res.errored,
        "failing_nodes": [str(n) for n in res.failing_nodes][:20],
        "exception": res.exception,
    }
    code = {0: EXIT_CLEAN, 1: EXIT_ATTENTION}.get(res.exit_code, EXIT_FAILED)
    return code, summary, res


def _push(connectors_file: Path | None, api_base: str | None) -> tuple[int, dict, Any]:
    from currents_segment import connectors, push

    config = connectors.load(connectors_file)
    res = push.run_push(config, push.PushOptions(api_base=api_base, progress=False))
    return res.exit_code, res.to_json(), res


def _receive(
    store_dir: Path | None,
    emulator_config: Path | None,
    connectors_file: Path | None,
    push_enabled: bool,
) -> tuple[int, dict, Any]:
    from currents_segment import connectors, receive

    # Routes (where each Braze workspace's events are expected) come from the connectors the
    # pusher used; an audit run (no push) keeps the routes already configured.
    routes_from = (connectors_file or connectors.default_path()) if push_enabled else None
    got = receive.run_receive(
        store_dirs=[store_dir] if store_dir is not None and store_dir.exists() else [],
        emulator_config=emulator_config,
        connectors_file=routes_from,
        ledger=push_enabled,
    )
    summary = {
        "rows_loaded": got.rows_loaded,
        "parts_loaded": got.parts_loaded,
        "routes": got.routes,
        "ledger_rows": got.ledger_rows,
    }
    return EXIT_CLEAN, summary, got


def _reconcile(mode: str, time_basis: str, thresholds: Path | None) -> tuple[int, dict, Any]:
    from currents_segment import reconcile

    res = reconcile.reconcile(
        reconcile.Options(mode=mode, time_basis=time_basis, thresholds=thresholds)
    )
    summary = {
        "status": res.status,
        "reasons": res.document.get("reasons", []),
        "files": {k: str(v) for k, v in res.files.items()},
    }
    return res.exit_code, summary, res


def run_chain(
    sources: list[str],
    connectors_file: Path | None = None,
    api_base: str | None = None,
    store_dir: Path | None = None,
    emulator_config: Path | None = None,
    push_enabled: bool = True,
    mode: str = "auto",
    time_basis: str = "event_time",
    thresholds: Path | None = None,
    flush: Any = None,
) -> RunResult:
    """The chain without the lock; stops at the first stage that fails (exit code 2)."""
    result = RunResult(datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ"))
    stages: list[tuple[str, Any, tuple]] = [("ingest", _ingest, (sources,))] if sources else []
    stages.append(("build", _build, ()))
    if push_enabled:
        stages.append(("push", _push, (connectors_file, api_base)))
    stages.append(
        ("receive", _receive, (store_dir, emulator_config, connectors_file, push_enabled))
    )
    stages.append(("reconcile", _reconcile, (mode, time_basis, thresholds)))
    for name, fn, args in stages:
        if name == "receive" and flush is not None:
            flush()  # the emulator writes what it holds before it is read
        value = _stage(result, name, fn, *args)
        if result.stages[-1].exit_code >= EXIT_FAILED:
            break
        if name == "reconcile" and value is not None:
            result.report_files = {k: str(v) for k, v in value.files.items()}
    runs = settings.reports_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{result.run_id}.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
    return result


def demo_export(events: int, seed: int) -> Path:
    """A small synthetic export under the home, written once (later runs find nothing new)."""
    from currents_segment import generate

    out = settings.home() / "demo-export"
    if not (out / "manifest.json").exists():
        generate.generate_export(
            out,
            generate.GenerateOptions(
                events=events, seed=seed, workspaces=2, days=2, anonymous_rate=0.05,
                duplicate_record_rate=0.01, test_events=5,
            ),
        )  # fmt: skip
    return out


def _brief(stage: StageOutcome) -> str:
    """One line per stage for the summary table; the run log JSON has everything."""
    s = stage.summary
    if stage.name == "ingest":
        files = (
            ", ".join(f"{n} {k}" for k, n in sorted(s.get("files", {}).items())) or "no new files"
        )
        problems = len(s.get("problems", []))
        return f"{files}; {s.get('rows', 0)} rows" + (
            f"; {problems} problem(s), see the run log" if problems else ""
        )
    if stage.name == "build":
        return f"{s.get('passed', 0)} passed, {s.get('failed', 0)} failed, {s.get('errored', 0)} errored"
    if stage.name == "push":
        parts = []
        for c in s.get("connectors", []):
            totals = ", ".join(f"{n} {k}" for k, n in sorted((c.get("totals") or {}).items()))
            parts.append(f"{c.get('connector')}: sent {c.get('sent', 0)} now; ledger {totals}")
        return "; ".join(parts) or "no connectors"
    if stage.name == "receive":
        return f"{s.get('rows_loaded', 0)} rows received, ledger snapshot {s.get('ledger_rows', 0)}"
    if stage.name == "reconcile":
        return f"{s.get('status')}: " + "; ".join(s.get("reasons", []))[:200]
    return json.dumps(s, default=str)[:160]


def print_result(result: RunResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    table = Table(title=f"currents-segment run {result.run_id}")
    for col in ("stage", "exit", "seconds", "summary"):
        table.add_column(col)
    for s in result.stages:
        table.add_row(s.name, str(s.exit_code), f"{s.seconds:.1f}", s.error or _brief(s))
    console.print(table)
    for kind, path in result.report_files.items():
        console.print(f"report ({kind}): {path}")
    word = {0: "clean", 1: "needs attention", 2: "failed"}[result.exit_code]
    console.print(f"run {word} (exit code {result.exit_code})")


@click.command()
@click.option(
    "--source", "sources", multiple=True, help="Currents export: directory or s3:// prefix."
)
@click.option(
    "--connectors", "connectors_file", type=click.Path(path_type=Path), help="Connectors YAML."
)
@click.option("--api-base", help="Segment API base URL (default: each connector's region host).")
@click.option(
    "--store",
    "store_dir",
    type=click.Path(path_type=Path),
    help="A Segment-warehouse-shaped store to receive (default: the emulator's, when present).",
)
@click.option("--emulator-config", type=click.Path(path_type=Path, exists=True))
@click.option("--no-push", is_flag=True, help="Audit Braze's own connector: no push, no ledger.")
@click.option("--time-basis", type=click.Choice(["event_time", "date_hour"]), default="event_time")
@click.option("--thresholds", type=click.Path(path_type=Path, exists=True))
@click.option("--wait", "wait_seconds", type=float, help="Wait this long for a running copy.")
@click.option("--demo", is_flag=True, help="Run on the embedded defaults with a local emulator.")
@click.option("--demo-events", type=int, default=20_000, show_default=True)
def cli(
    sources: tuple[str, ...],
    connectors_file: Path | None,
    api_base: str | None,
    store_dir: Path | None,
    emulator_config: Path | None,
    no_push: bool,
    time_basis: str,
    thresholds: Path | None,
    wait_seconds: float | None,
    demo: bool,
    demo_events: int,
) -> None:
    """Run the whole chain once; safe to call from cron."""
    settings.home().mkdir(parents=True, exist_ok=True)
    mode = "audit" if no_push else "auto"
    try:
        with run_lock(settings.home() / "run.lock", wait_seconds):
            if demo:
                result = _run_demo(list(sources), demo_events, time_basis, thresholds)
            else:
                result = run_chain(
                    list(sources), connectors_file, api_base,
                    store_dir or (settings.emulator_dir() if settings.emulator_dir().exists() else None),
                    emulator_config, not no_push, mode, time_basis, thresholds,
                )  # fmt: skip
    except RunLocked as exc:
        click.echo(f"currents-segment run: {exc}", err=True)
        raise SystemExit(EXIT_LOCKED) from None
    print_result(result)
    raise SystemExit(result.exit_code)


def _run_demo(
    sources: list[str], events: int, time_basis: str, thresholds: Path | None
) -> RunResult:
    from currents_segment.emulator import running_emulator

    export = demo_export(events, seed=7)
    emulator_config = DEFAULTS / "emulator.yml"
    # The embedded emulator's demo key opens only that local server; it is not a Segment secret.
    os.environ.setdefault(DEMO_WRITE_KEY_ENV, "demo-write-key-us")
    store = settings.emulator_dir()
    with running_emulator(emulator_config, store) as emu:
        return run_chain(
            [str(export), *sources], DEFAULTS / "connectors.yml", emu.url, store,
            emulator_config, True, "auto", time_basis, thresholds, flush=emu.flush,
        )  # fmt: skip
