"""Great Expectations gate: validate a pandas DataFrame against a list of expectations.

``validate_frame(df, expectations)`` is generic (the reconcile step reuses it); ``outbox_expectations``
is the pusher's gate: unique, non-null messageIds, a user or anonymous id, known event names,
timestamps not in the future, and payloads whose messageId matches the ledger.

Great Expectations takes about 5 s to import: it is imported once, on first use, and one ephemeral
context is reused for the whole process. GX runs on DataFrames pulled from DuckDB, never through
SQLAlchemy (broken on DuckDB, see docs). Timestamps are checked as epoch seconds because GX's
datetime comparison is about 20 times slower on pandas.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation by GX class name, e.g. ``ExpectationSpec("ExpectColumnValuesToBeUnique",
    {"column": "message_id"})``; kept as data so callers need not import GX."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    expectation: str
    column: str | None
    unexpected_count: int | None
    examples: list[Any]

    def describe(self) -> str:
        what = f"{self.expectation}({self.column})" if self.column else self.expectation
        count = "" if self.unexpected_count is None else f": {self.unexpected_count} unexpected"
        examples = f", e.g. {self.examples[:3]}" if self.examples else ""
        return what + count + examples


@dataclass(frozen=True)
class GateResult:
    success: bool
    rows: int
    failures: list[Failure]
    result: dict[str, Any]  # GX's validation result as JSON

    def describe(self) -> str:
        if self.success:
            return f"gate passed ({self.rows} rows)"
        return f"gate failed ({self.rows} rows): " + "; ".join(f.describe() for f in self.failures)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.result, indent=2, default=str))
        return path


_context_lock = threading.Lock()
_batch_definition: Any = None


def _definition() -> Any:
    """One ephemeral GX context per process, progress bars off (they flood run logs)."""
    global _batch_definition
    with _context_lock:
        if _batch_definition is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig
            from great_expectations.execution_engine import pandas_execution_engine

            # GX fingerprints every pandas batch under 1 GB by hashing all its values, for data
            # docs an ephemeral context never builds: on the pusher's chunks that hash was
            # about 40% of the gate's CPU. Batches are validated the same without it.
            pandas_execution_engine.HASH_THRESHOLD = 0

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            asset = context.data_sources.add_pandas("frames").add_dataframe_asset("frame")
            _batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        return _batch_definition


def warm_up() -> None:
    """Pay the import and context cost once, before the first batch is due."""
    _definition()


def validate_frame(
    df: pd.DataFrame, expectations: Sequence[ExpectationSpec | Any], suite_name: str = "gate"
) -> GateResult:
    import great_expectations as gx

    built = [
        getattr(gx.expectations, e.name)(**e.kwargs) if isinstance(e, ExpectationSpec) else e
        for e in expectations
    ]
    definition = _definition()
    with _context_lock:  # GX contexts are not thread-safe
        batch = definition.get_batch(batch_parameters={"dataframe": df})
        suite = gx.ExpectationSuite(name=suite_name, expectations=built)
        outcome = batch.validate(suite, result_format="SUMMARY")
    result = outcome.to_json_dict()
    failures = []
    for item in result.get("results", []):
        if item.get("success"):
            continue
        config = item.get("expectation_config", {})
        details = item.get("result", {}) or {}
        failures.append(
            Failure(
                expectation=config.get("type", "?"),
                column=config.get("kwargs", {}).get("column"),
                unexpected_count=details.get("unexpected_count"),
                examples=list(details.get("partial_unexpected_list") or [])[:10],
            )
        )
    return GateResult(bool(result.get("success")), len(df), failures, result)


def outbox_expectations(
    known_events: Sequence[str], max_epoch_seconds: float
) -> list[ExpectationSpec]:
    """The pusher's gate over a frame with columns message_id, user_or_anonymous_id, event,
    event_epoch_s (event time, UNIX seconds) and payload_matches_id (bool)."""
    return [
        ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "message_id"}),
        ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "message_id"}),
        ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "user_or_anonymous_id"}),
        ExpectationSpec(
            "ExpectColumnValuesToBeInSet", {"column": "event", "value_set": sorted(known_events)}
        ),
        ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "event_epoch_s"}),
        ExpectationSpec(
            "ExpectColumnValuesToBeBetween",
            {"column": "event_epoch_s", "max_value": max_epoch_seconds},
        ),
        ExpectationSpec(
            "ExpectColumnValuesToBeInSet", {"column": "payload_matches_id", "value_set": [True]}
        ),
    ]
