"""Connectors config validation: every rule, with its exact message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from currents_segment import connectors, push
from currents_segment.connectors import ConfigError, PushSettings
from test_push_support import connector, write_connectors


def load(
    tmp_path: Path, items: list[dict], push: dict | None = None
) -> connectors.ConnectorsConfig:
    return connectors.load(write_connectors(tmp_path / "connectors.yml", items, push))


def test_two_connectors_of_one_kind_into_one_workspace_are_refused(tmp_path):
    path = tmp_path / "connectors.yml"
    with pytest.raises(ConfigError) as err:
        load(
            tmp_path,
            [
                connector("email", event_types=["family:email"]),
                connector("sms", event_types=["family:sms"], key_env="OTHER"),
            ],
        )
    assert str(err.value) == (
        f"{path}: connectors 'email' and 'sms' both send message_engagement events to Segment "
        "workspace 'acme-us': Braze documents that two connectors of the same kind in one "
        "workspace get their events de-duplicated away or lost; send them to different workspaces"
    )


def test_one_kind_each_into_one_workspace_is_allowed(tmp_path):
    config = load(
        tmp_path,
        [
            connector("behaviors", event_types=["family:behaviors"]),
            connector("email", event_types=["family:email"], source="braze_email"),
        ],
    )
    assert [c.kinds for c in config.connectors] == [
        frozenset({"customer_behavior"}),
        frozenset({"message_engagement"}),
    ]


def test_fan_out_under_braze_id_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "connectors.yml"
    with pytest.raises(ConfigError) as err:
        load(
            tmp_path,
            [
                connector("us", event_types=["users.messages.email.Send"]),
                connector("eu", workspace="acme-eu", source="braze_eu", region="eu"),
            ],
        )
    assert str(err.value) == (
        f"{path}: connectors 'us' and 'eu' both send users.messages.email.Send to Segment "
        "workspaces 'acme-us' and 'acme-eu' with message_id: braze_id: Segment de-duplicates "
        "messageIds across all workspaces for about 24 hours, so one workspace would drop them; "
        "set message_id: workspace_scoped on at least one of them"
    )


def test_fan_out_with_workspace_scoped_ids_or_disjoint_workspaces_is_allowed(tmp_path):
    scoped = load(
        tmp_path,
        [
            connector("us"),
            connector("eu", workspace="acme-eu", region="eu", message_id="workspace_scoped"),
        ],
    )
    assert [c.message_id for c in scoped.connectors] == ["braze_id", "workspace_scoped"]
    disjoint = load(
        tmp_path,
        [
            connector("a", braze_workspaces=["ag-1"]),
            connector("b", workspace="acme-eu", region="eu", braze_workspaces=["ag-2"]),
        ],
    )
    assert len(disjoint.connectors) == 2


def test_missing_key_names_the_variable_never_a_value(tmp_path, monkeypatch):
    monkeypatch.delenv("CS_TEST_MISSING", raising=False)
    config = load(tmp_path, [connector("us", key_env="CS_TEST_MISSING")])
    with pytest.raises(ConfigError) as err:
        config.connectors[0].write_key()
    assert str(err.value) == (
        f"{tmp_path / 'connectors.yml'}: connector 'us': environment variable CS_TEST_MISSING "
        "(write_key_env) is not set"
    )
    monkeypatch.setenv("CS_TEST_MISSING", "s3cr3t-value")
    assert config.connectors[0].write_key() == "s3cr3t-value"


def test_key_file_errors_name_the_file(tmp_path):
    item = connector("us")
    item["segment"].pop("write_key_env")
    item["segment"]["write_key_file"] = "keys/us.key"
    config = load(tmp_path, [item])
    with pytest.raises(ConfigError, match=r"cannot read write key file .*keys/us.key"):
        config.connectors[0].write_key()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "us.key").write_text("k-123\n")
    assert config.connectors[0].write_key() == "k-123"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["segment"].update(region="apac"),
            "connector 'x': segment.region must be one of us, eu (got 'apac')",
        ),
        (
            lambda c: c.update(message_id="uuid"),
            "connector 'x': message_id must be one of braze_id, workspace_scoped (got 'uuid')",
        ),
        (
            lambda c: c["segment"].update(write_key="inline"),
            "connector 'x': unknown segment key(s) write_key",
        ),
        (
            lambda c: c["segment"].pop("write_key_env"),
            "connector 'x': set exactly one of segment.write_key_env or segment.write_key_file "
            "(write keys never go in this file)",
        ),
        (
            lambda c: c.update(event_types=["users.messages.email.Sendd"]),
            "connector 'x': 'users.messages.email.Sendd' is not a supported Currents event type",
        ),
        (
            lambda c: c.update(event_types=["family:fax"]),
            "connector 'x': unknown family 'fax' (known: behaviors, campaigns, canvas, "
            "content_cards, email, in_app_messages, push, sms, webhook, whatsapp)",
        ),
        (lambda c: c["segment"].pop("source"), "connector 'x': segment.source is required"),
    ],
)
def test_bad_connector_settings_are_named(tmp_path, change, message):
    item = connector("x")
    change(item)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, [item])
    assert str(err.value) == f"{tmp_path / 'connectors.yml'}: {message}"


def test_duplicate_names_unknown_keys_and_push_limits(tmp_path):
    path = tmp_path / "connectors.yml"
    with pytest.raises(ConfigError) as err:
        load(tmp_path, [connector("x"), connector("x", workspace="other")])
    assert str(err.value) == f"{path}: connector name 'x' is used twice"
    with pytest.raises(ConfigError) as err:
        load(tmp_path, [connector("x")], push={"max_batch_events": 3000})
    assert str(err.value) == (
        f"{path}: push.max_batch_events must be between 1 and 2500 (Segment's limit)"
    )
    path.write_text(yaml.safe_dump({"connectors": [connector("x")], "extra": 1}))
    with pytest.raises(ConfigError, match="unknown top-level key"):
        connectors.load(path)


def test_embedded_default_matches_the_emulator_default():
    config = connectors.load(connectors.default_path())
    emulator = yaml.safe_load(
        (Path(connectors.__file__).parent / "defaults" / "emulator.yml").read_text()
    )
    sources = {
        (ws["name"], s["slug"], ws["region"])
        for ws in emulator["workspaces"]
        for s in ws["sources"]
    }
    for c in config.connectors:
        assert (c.segment_workspace, c.segment_source, c.region) in sources
        assert c.write_key_env == "SEGMENT_WRITE_KEY"


def test_scoped_message_id_is_deterministic_and_short():
    a = connectors.scoped_message_id("acme-us", "f47ac10b-58cc-4372-a567-0e02b2c3d479")
    assert a == connectors.scoped_message_id("acme-us", "f47ac10b-58cc-4372-a567-0e02b2c3d479")
    assert a != connectors.scoped_message_id("acme-eu", "f47ac10b-58cc-4372-a567-0e02b2c3d479")
    assert len(a) == 32 <= connectors.MAX_MESSAGE_ID_CHARS


def test_cli_exits_2_naming_the_missing_variable(tmp_path, cs_home, monkeypatch):
    from click.testing import CliRunner

    from currents_segment import push

    monkeypatch.delenv("CS_TEST_MISSING", raising=False)
    path = write_connectors(
        tmp_path / "connectors.yml", [connector("us", key_env="CS_TEST_MISSING")]
    )
    result = CliRunner().invoke(push.cli, ["--connectors", str(path), "--no-progress"])
    assert result.exit_code == 2
    assert "environment variable CS_TEST_MISSING (write_key_env) is not set" in result.output
    result = CliRunner().invoke(
        push.cli, ["--connectors", str(path), "--connector", "nope", "--no-progress"]
    )
    assert result.exit_code == 2
    assert "no connector named 'nope' (known: us)" in result.output


def test_requests_go_through_a_proxy_only_where_the_environment_names_one(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                 "all_proxy", "NO_PROXY", "no_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    transport = push.HttpTransport(PushSettings())
    assert not transport._uses_proxy("https://api.segment.io/v1/batch")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    transport = push.HttpTransport(PushSettings())
    assert transport._uses_proxy("https://api.segment.io/v1/batch")
    assert not transport._uses_proxy("http://127.0.0.1:8765/v1/batch")  # bypassed
    assert not transport._uses_proxy("http://events.example/v1/batch")  # no HTTP proxy named
