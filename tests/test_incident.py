import json
import stat

import pytest

from cauterize import incident as records
from cauterize.errors import SecretLeakError, StoreError
from cauterize.incident import Incident, IncidentStore, KeyRecord, utcnow
from cauterize.secret import Secret


def _incident(store: IncidentStore, secret: Secret) -> Incident:
    now = utcnow()
    return Incident(
        id=store.new_id("rb", secret.fingerprint, now), runbook="rb", runbook_path="/x/rb.yaml",
        created_at=now, updated_at=now, provider="openai", order="revoke-first",
        old_key=KeyRecord(fingerprint=secret.fingerprint, redacted=secret.redacted, source="env:K"),
    )


def test_record_is_private_atomic_and_round_trips(tmp_path, leaked_key):
    secret = Secret(leaked_key)
    store = IncidentStore(tmp_path / "incidents")
    incident = _incident(store, secret)
    directory = store.create(incident)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    record = directory / "incident.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert records.load(directory).old_key.fingerprint == secret.fingerprint
    assert set(json.loads(record.read_text())["steps"]) == set(records.STEPS)
    assert store.find_open("rb", secret.fingerprint) == directory


def test_a_record_holding_a_key_is_refused(tmp_path, leaked_key):
    secret = Secret(leaked_key)
    store = IncidentStore(tmp_path)
    incident = _incident(store, secret)
    directory = store.create(incident)
    before = (directory / "incident.json").read_bytes()
    incident.log("intake", f"oops {leaked_key}")
    with pytest.raises(SecretLeakError):
        records.save(incident, directory)
    assert (directory / "incident.json").read_bytes() == before


def test_step_context_records_failures_with_remediation(tmp_path, leaked_key):
    store = IncidentStore(tmp_path)
    incident = _incident(store, Secret(leaked_key))
    directory = store.create(incident)
    with pytest.raises(StoreError), records.step(incident, directory, "redeploy"):
        raise StoreError("vault secret/app: permission denied")
    saved = records.load(directory).steps["redeploy"]
    assert saved.status == "failed" and "permission denied" in saved.error and saved.remediation
    assert saved.started_at and saved.ended_at
    assert records.load(directory).exit_code() == 3


def test_a_second_responder_is_refused_and_a_stale_lock_taken_over(tmp_path, leaked_key):
    import json
    import os
    import subprocess

    from cauterize.incident import IncidentLocked, acquire_lock, release_lock

    directory = IncidentStore(tmp_path).create(_incident(IncidentStore(tmp_path), Secret(leaked_key)))
    other = subprocess.Popen(["sleep", "30"])
    try:
        (directory / "lock").write_text(json.dumps({"pid": other.pid, "started_at": "2026-11-26T00:00:00Z"}))
        with pytest.raises(IncidentLocked, match=f"process {other.pid}"):
            acquire_lock(directory)
    finally:
        other.kill()
        other.wait()
    acquire_lock(directory)  # the owner is gone: the lock is stale
    assert json.loads((directory / "lock").read_text())["pid"] == os.getpid()
    acquire_lock(directory)  # this process may take its own lock again
    release_lock(directory)
    assert not (directory / "lock").exists()
