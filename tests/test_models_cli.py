"""`currents-segment build`'s command line, without running dbt (tests/test_models.py runs it)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from currents_segment import transform
from currents_segment.cli import main


def test_var_values_are_parsed_as_yaml():
    assert transform.parse_var("include_anonymous_users=true") == ("include_anonymous_users", True)
    assert transform.parse_var("outbox_excluded_event_types=[a, b]") == (
        "outbox_excluded_event_types",
        ["a", "b"],
    )
    assert transform.parse_var(" name = text ") == ("name", "text")
    with pytest.raises(click.BadParameter, match="key=value"):
        transform.parse_var("no-equals-sign")


def test_exit_code_follows_the_outcome():
    assert transform.BuildResult(success=True, passed=3).exit_code == transform.EXIT_OK
    failed = transform.BuildResult(success=False, passed=3, failed=1)
    assert failed.exit_code == transform.EXIT_TESTS_FAILED
    errored = transform.BuildResult(success=False, failed=1, errored=1)
    assert errored.exit_code == transform.EXIT_DBT_ERROR
    crashed = transform.BuildResult(success=False, exception="ParsingError: bad yaml")
    assert crashed.exit_code == transform.EXIT_DBT_ERROR


def test_unusable_warehouse_is_a_dbt_error_naming_the_file(cs_home):
    not_a_db = cs_home / "not-a-database.duckdb"
    not_a_db.write_text("this is not a DuckDB file")
    result = CliRunner().invoke(main, ["build", "--db", str(not_a_db)])
    assert result.exit_code == transform.EXIT_DBT_ERROR
    assert str(not_a_db) in result.output


def test_bad_var_is_a_usage_error(cs_home):
    result = CliRunner().invoke(main, ["build", "--var", "oops"])
    assert result.exit_code == 2 and "key=value" in result.output


def test_dbt_arguments_isolate_artifacts_per_warehouse(cs_home):
    one = transform.dbt_args("build", cs_home / "a" / "warehouse.duckdb", "fct_segment_outbox")
    two = transform.dbt_args("build", cs_home / "b" / "warehouse.duckdb", None, {"x": 1}, True)
    assert one[one.index("--target-path") + 1] != two[two.index("--target-path") + 1]
    assert one[one.index("--select") + 1] == "fct_segment_outbox"
    assert two[two.index("--vars") + 1] == '{"x": 1}' and "--full-refresh" in two
