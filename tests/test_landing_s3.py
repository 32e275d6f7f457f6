"""Ingest from s3:// prefixes, against moto's S3 server on a loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from currents_segment import landing
from currents_segment.cli import main
from test_landing_support import braze_path, landed, manifest, records, schema_of, write_avro

EMAIL_SEND = "users.messages.email.Send"
BANNER_CLICK = "users.messages.banner.Click"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> str:
    server = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url, timeout=1)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    import boto3

    # moto accepts any credentials; these are placeholders, not secrets.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.client("s3", endpoint_url=s3_endpoint)


def _upload(s3, bucket: str, local_root: Path) -> list[str]:
    keys = []
    for path in sorted(local_root.rglob("*")):
        if path.is_file():
            key = "currents/" + path.relative_to(local_root).as_posix()
            s3.upload_file(str(path), bucket, key)
            keys.append(key)
    return keys


def test_an_s3_prefix_lands_once_and_new_objects_alone(s3, s3_endpoint, tmp_path):
    bucket = "braze-export-a"
    s3.create_bucket(Bucket=bucket)
    local, db = tmp_path / "export", tmp_path / "w.duckdb"
    send = schema_of(EMAIL_SEND)
    for i in range(3):
        write_avro(braze_path(local, EMAIL_SEND, offset=i), send, records(EMAIL_SEND, 20, start=i * 100), codec="deflate")  # fmt: skip
    write_avro(braze_path(local, BANNER_CLICK), schema_of(BANNER_CLICK), records(BANNER_CLICK, 4))
    corrupt = braze_path(local, EMAIL_SEND, offset=9)
    corrupt.write_bytes(b"Obj\x01" + b"\x00" * 10)
    keys = _upload(s3, bucket, local)

    result = landing.ingest([f"s3://{bucket}/currents"], db_path=db, s3_endpoint=s3_endpoint)

    assert result.rows_per_type == {BANNER_CLICK: 4, EMAIL_SEND: 60}
    assert sorted(p.kind for p in result.problems) == ["failed", "unsupported"]
    entries = {m["path"]: m for m in manifest(db)}
    assert set(entries) == {f"s3://{bucket}/{k}" for k in keys}
    for key in keys:
        etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        assert entries[f"s3://{bucket}/{key}"]["fingerprint"] == f"etag:{etag}"
    rows = landed(db, "users_messages_email_send")
    assert {r["_source_file"] for r in rows} == {
        f"s3://{bucket}/currents/{braze_path(Path(), EMAIL_SEND, offset=i).as_posix()}"
        for i in range(3)
    }
    assert rows[0]["_schema_id"] == 1701 and rows[0]["_cluster"] == "prod-01"

    again = landing.ingest([f"s3://{bucket}/currents"], db_path=db, s3_endpoint=s3_endpoint)
    assert again.files == [] and again.clean
    assert (again.already_landed, again.previously_failed) == (4, 1)

    extra = write_avro(braze_path(local, EMAIL_SEND, offset=50), send, records(EMAIL_SEND, 7, start=900))  # fmt: skip
    key = "currents/" + extra.relative_to(local).as_posix()
    s3.upload_file(str(extra), bucket, key)
    third = landing.ingest([f"s3://{bucket}/currents"], db_path=db, s3_endpoint=s3_endpoint)
    assert [(f.path, f.rows_loaded) for f in third.files] == [(f"s3://{bucket}/{key}", 7)]


def test_cli_reads_the_endpoint_from_the_environment(s3, s3_endpoint, tmp_path, monkeypatch):
    bucket = "braze-export-b"
    s3.create_bucket(Bucket=bucket)
    local = tmp_path / "export"
    write_avro(braze_path(local, EMAIL_SEND), schema_of(EMAIL_SEND), records(EMAIL_SEND, 5))
    _upload(s3, bucket, local)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    db = tmp_path / "w.duckdb"
    runner = CliRunner()
    ok = runner.invoke(main, ["ingest", f"s3://{bucket}/currents/", "--db", str(db)])
    assert ok.exit_code == 0, ok.output
    assert len(landed(db, "users_messages_email_send")) == 5
    missing = runner.invoke(main, ["ingest", "s3://no-such-bucket/x", "--db", str(db)])
    assert missing.exit_code == 1
    assert "cannot list" in missing.output and "NoSuchBucket" in missing.output
