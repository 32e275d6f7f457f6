"""``currents-segment build``: run ``dbt build`` on the landed data, in-process.

dbt runs with ``--project-dir`` and ``--profiles-dir`` = the project directory
(``catalogue.project_dir()``); the profile reads the warehouse path from ``CURRENTS_SEGMENT_DB``,
which ``build(db_path=...)`` sets for the run. dbt's ``target/`` and ``logs/`` go under
``CURRENTS_SEGMENT_HOME`` so that two homes never share dbt's artefacts.

Exit codes of the command: 0 everything passed, 1 a data or unit test failed, 2 dbt errored
(a model, seed or test could not run, or dbt itself failed).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click

from currents_segment import catalogue, duck, raw_tables, settings

EXIT_OK = 0
EXIT_TESTS_FAILED = 1
EXIT_DBT_ERROR = 2


class BuildError(RuntimeError):
    """The build could not start (bad variable, warehouse not writable, ...)."""


@dataclass
class FailingNode:
    unique_id: str
    resource_type: str  # model, seed, test, unit_test, ...
    status: str  # fail, error, warn
    message: str


@dataclass
class BuildResult:
    success: bool
    passed: int = 0  # models/seeds built and tests passed
    failed: int = 0  # data or unit tests that returned failing rows
    errored: int = 0  # nodes that could not run
    skipped: int = 0  # nodes skipped because something upstream failed
    warned: int = 0
    failing_nodes: list[FailingNode] = field(default_factory=list)
    exception: str | None = None  # dbt itself failed (parse error, bad arguments, ...)
    elapsed_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.exception or self.errored:
            return EXIT_DBT_ERROR
        if self.failed or not self.success:
            return EXIT_TESTS_FAILED
        return EXIT_OK


def dbt_artifacts_dir(db_path: Path) -> Path:
    """Where dbt writes ``target/`` and ``logs/``: per home and per warehouse file.

    dbt bakes the database name (the DuckDB file's stem) into its parsed manifest and does not
    notice when ``CURRENTS_SEGMENT_DB`` changes, so each warehouse keeps its own manifest.
    """
    key = hashlib.sha1(str(Path(db_path).resolve()).encode()).hexdigest()[:12]
    return settings.home() / "dbt" / f"{Path(db_path).stem}-{key}"


def dbt_args(
    command: str,
    db_path: Path,
    select: str | None = None,
    vars: dict[str, object] | None = None,
    full_refresh: bool = False,
    quiet: bool = False,
    exclude: str | None = None,
) -> list[str]:
    project = str(catalogue.project_dir())
    artifacts = dbt_artifacts_dir(db_path)
    args = [
        command,
        "--project-dir",
        project,
        "--profiles-dir",
        project,
        "--target-path",
        str(artifacts / "target"),
        "--log-path",
        str(artifacts / "logs"),
    ]
    if select:
        args += ["--select", select]
    if exclude:
        args += ["--exclude", exclude]
    if vars:
        args += ["--vars", json.dumps(vars)]
    if full_refresh:
        args.append("--full-refresh")
    if quiet:
        args += ["--log-level", "warn"]
    return args


@contextmanager
def _warehouse_env(db_path: Path) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("CURRENTS_SEGMENT_DB", "DO_NOT_TRACK")}
    os.environ["CURRENTS_SEGMENT_DB"] = str(db_path)
    os.environ["DO_NOT_TRACK"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def ensure_raw_tables(db_path: Path) -> None:
    """Every supported type's raw table exists (landing makes them too), so staging compiles on
    an empty warehouse and unit tests find their sources."""
    try:
        con = duck.connect(db_path)
    except Exception as exc:  # noqa: BLE001 - duckdb raises several kinds; all mean "cannot open"
        raise BuildError(f"cannot open the warehouse {db_path}: {exc}") from exc
    try:
        raw_tables.ensure_supported_tables(con)
        # The received/ledger tables the reconcile sources read: created here, before dbt's
        # threads start, so two of them never race to create one schema.
        from currents_segment import receive

        receive.ensure_tables(con)
    finally:
        con.close()


def summarise(res: object, started: float) -> BuildResult:
    """A BuildResult from dbt's dbtRunnerResult."""
    from dbt.artifacts.schemas.results import NodeStatus

    out = BuildResult(success=bool(getattr(res, "success", False)))
    exc = getattr(res, "exception", None)
    if exc is not None:
        out.exception = f"{type(exc).__name__}: {exc}"
    results = getattr(getattr(res, "result", None), "results", None) or []
    for r in results:
        status = r.status
        node = r.node
        if status in (NodeStatus.Success, NodeStatus.Pass):
            out.passed += 1
        elif status == NodeStatus.Fail:
            out.failed += 1
        elif status in (NodeStatus.Error, NodeStatus.RuntimeErr):
            out.errored += 1
        elif status == NodeStatus.Skipped:
            out.skipped += 1
        elif status == NodeStatus.Warn:
            out.warned += 1
        if status in (NodeStatus.Fail, NodeStatus.Error, NodeStatus.RuntimeErr, NodeStatus.Warn):
            out.failing_nodes.append(
                FailingNode(
                    unique_id=node.unique_id,
                    resource_type=str(node.resource_type),
                    status=str(status),
                    message=(r.message or "").strip()[:2000],
                )
            )
    if out.exception is None and not results and not out.success:
        out.exception = "dbt failed before running any node (see dbt's log)"
    out.elapsed_seconds = time.monotonic() - started
    return out


def build(
    select: str | None = None,
    vars: dict[str, object] | None = None,
    full_refresh: bool = False,
    db_path: Path | str | None = None,
    quiet: bool = True,
    exclude: str | None = None,
) -> BuildResult:
    """Run ``dbt build`` in-process on the warehouse (``db_path`` or ``settings``).

    ``exclude`` is a dbt exclusion, e.g. ``test_type:unit`` for scheduled runs (dbt advises
    running unit tests in development and CI, where the SQL changes, not on every load).
    """
    from dbt.cli.main import dbtRunner

    db = Path(db_path) if db_path else settings.warehouse_path()
    ensure_raw_tables(db)
    started = time.monotonic()
    with _warehouse_env(db):
        try:
            res = dbtRunner().invoke(
                dbt_args("build", db, select, vars, full_refresh, quiet, exclude)
            )
        finally:
            _release_warehouse()
    return summarise(res, started)


def _release_warehouse() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process.

    dbt-duckdb caches one database per process; left open, it holds DuckDB's single-writer lock
    and blocks the next stage (or a read-only connection) in the same process.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter: nothing to release
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is not None:
            env.close()
            DuckDBConnectionManager._ENV = None


def parse_var(text: str) -> tuple[str, object]:
    """``k=v`` -> (k, v) with v parsed as YAML (true, 3, [a, b]) and kept as text otherwise."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"{text!r}: expected key=value", param_hint="--var")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


@click.command(name="build")
@click.option("--select", "-s", default=None, help="dbt node selection (default: everything).")
@click.option("--exclude", default=None, help="dbt exclusion, e.g. test_type:unit.")
@click.option("--full-refresh", is_flag=True, help="Rebuild incremental models from scratch.")
@click.option(
    "--var",
    "var_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="dbt variable, e.g. --var include_anonymous_users=true (repeatable).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Warehouse DuckDB file (default: $CURRENTS_SEGMENT_DB or the home's warehouse).",
)
def cli(
    select: str | None,
    exclude: str | None,
    full_refresh: bool,
    var_items: tuple[str, ...],
    db_path: Path | None,
):
    """Run dbt build (seeds, models, data and unit tests) on the landed data."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    variables = dict(parse_var(item) for item in var_items)
    try:
        result = build(select, variables or None, full_refresh, db_path, False, exclude)
    except BuildError as exc:
        console.print(f"[red]build failed:[/red] {exc}")
        sys.exit(EXIT_DBT_ERROR)
    for node in result.failing_nodes:
        first_line = node.message.splitlines()[0] if node.message else ""
        console.print(f"[red]{node.status}[/red] {node.unique_id}: {first_line}")
    if result.exception:
        console.print(f"[red]dbt error:[/red] {result.exception}")
    console.print(
        f"passed {result.passed}, failed {result.failed}, errored {result.errored}, "
        f"skipped {result.skipped}, warned {result.warned} "
        f"in {result.elapsed_seconds:.1f} s"
    )
    sys.exit(result.exit_code)
