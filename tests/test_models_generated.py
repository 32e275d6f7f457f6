"""The catalogue-generated dbt files are committed; they must match the seeds and Braze's docs."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import REPO, SCHEMAS
from currents_segment import catalogue

SCRIPT = REPO / "scripts" / "generate_staging_yml.py"


def _generator():
    spec = importlib.util.spec_from_file_location("generate_staging_yml", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not SCHEMAS.exists(), reason=f"{SCHEMAS} is not there")
def test_generated_files_are_up_to_date():
    stale = _generator().stale_files()
    assert not stale, (
        f"stale: {[str(p.relative_to(REPO)) for p in stale]}; "
        "run `uv run --frozen --no-sync python scripts/generate_staging_yml.py`"
    )


@pytest.mark.skipif(not SCHEMAS.exists(), reason=f"{SCHEMAS} is not there")
def test_check_mode_fails_on_a_stale_file(tmp_path, monkeypatch):
    """--check must fail when a generated file differs (the staleness check can fail)."""
    generator = _generator()
    target = generator.STAGING / "stg_currents__users_messages_email_send.sql"
    monkeypatch.setattr(generator, "STAGING", tmp_path)  # nothing generated there yet
    stale = generator.stale_files()
    assert tmp_path / target.name in stale


def test_every_supported_type_has_a_one_line_staging_model():
    for event in catalogue.supported():
        sql = REPO / "models" / "staging" / "currents" / f"stg_currents__{event.table_name}.sql"
        assert sql.read_text() == f"{{{{ stg_currents_event('{event.event_type}') }}}}\n"
        assert sql.with_suffix(".yml").exists()
