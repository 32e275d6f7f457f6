"""Where things live. Every path has an environment override, so cron and tests can move it.

``CURRENTS_SEGMENT_HOME`` (default ``./.currents-segment``) holds the embedded defaults:

- ``warehouse.duckdb``: the dbt/DuckDB warehouse (``CURRENTS_SEGMENT_DB``)
- ``ledger.sqlite``: the pusher's durable send ledger (``CURRENTS_SEGMENT_LEDGER``), kept out of
  the warehouse file so dbt and the pusher never contend for DuckDB's single-writer lock
- ``emulator/``: the local Segment emulator's store
- ``reports/``: reconciliation reports and run logs
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("CURRENTS_SEGMENT_HOME", ".currents-segment"))


def warehouse_path() -> Path:
    return Path(os.environ.get("CURRENTS_SEGMENT_DB", str(home() / "warehouse.duckdb")))


def ledger_path() -> Path:
    return Path(os.environ.get("CURRENTS_SEGMENT_LEDGER", str(home() / "ledger.sqlite")))


def emulator_dir() -> Path:
    return Path(os.environ.get("CURRENTS_SEGMENT_EMULATOR_DIR", str(home() / "emulator")))


def reports_dir() -> Path:
    return Path(os.environ.get("CURRENTS_SEGMENT_REPORTS", str(home() / "reports")))
