"""Trust nothing on disk that cauterize did not write (issue 17, item 7).

The report directory, each incident directory and its ``.work/`` are made 0700 and, when they exist,
checked: a link, another user's directory or one others may write is refused with exit 2 and the one
command that fixes it, before any provider call. Incident files are never written or read through a
link planted in their place. Incident ids end in a random part, so a directory planted for a
predicted id is never used. Scratch that may hold the key in clear (filter-repo's expressions, the
pre-purge mirror) does not outlive a crash or the incident.
"""

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cauterize import incident as records
from cauterize.errors import IncidentDirError
from cauterize.incident import Incident, IncidentStore, KeyRecord, utcnow
from cauterize.sandbox.world import LEAKED_ENV, build_world
from cauterize.secret import Secret, encoded_forms

NOBODY = 65534
ID = re.compile(r"^\d{8}T\d{6}Z-rb-[0-9a-f]{8}-[0-9a-f]{8}$")


def _incident(store: IncidentStore, secret: Secret, now=None) -> Incident:
    now = now or utcnow()
    return Incident(
        id=store.new_id("rb", secret.fingerprint, now), runbook="rb", runbook_path="/x/rb.yaml",
        created_at=now, updated_at=now, provider="openai", order="revoke-first",
        old_key=KeyRecord(fingerprint=secret.fingerprint, redacted=secret.redacted, source="env:K"),
    )


def _can_chown() -> bool:
    return hasattr(os, "chown") and os.geteuid() == 0


def _holding_key(root: Path, key: str) -> list[str]:
    """Every file under ``root`` holding ``key`` raw or in any encoding (base64, URL, JSON)."""
    forms = [form for group in encoded_forms(key).values() for form in group]
    held = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(form in data for form in forms):
                held.append(str(path.relative_to(root)))
    return held


# -- ids ----------------------------------------------------------------------------------------------


def test_ids_carry_a_random_part_and_differ_within_one_second(tmp_path, leaked_key):
    secret = Secret(leaked_key)
    store = IncidentStore(tmp_path / "incidents")
    now = utcnow()
    first, second = _incident(store, secret, now), _incident(store, secret, now)
    assert ID.match(first.id) and ID.match(second.id), first.id
    assert first.id != second.id
    assert first.id.rsplit("-", 1)[0] == second.id.rsplit("-", 1)[0], "the readable prefix is kept"
    assert store.create(first) != store.create(second)
    assert len(list(store.root.iterdir())) == 2


def test_a_directory_planted_for_a_predicted_id_is_never_used(tmp_path, leaked_key, monkeypatch):
    secret = Secret(leaked_key)
    store = IncidentStore(tmp_path / "incidents")
    incident = _incident(store, secret)
    predicted = store.directory(incident.id)
    predicted.mkdir(parents=True, mode=0o700)
    (predicted / "incident.json").write_text("planted")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    second = _incident(store, secret)
    store.directory(second.id).symlink_to(outside)  # a link with the next predicted name
    draws = iter([second.id.rsplit("-", 1)[1], "0123abcd"])
    monkeypatch.setattr(records.secrets, "token_hex", lambda n: next(draws))
    directory = store.create(incident)
    assert directory.name == incident.id and directory.name.endswith("-0123abcd")
    assert (predicted / "incident.json").read_text() == "planted"
    assert list(outside.iterdir()) == []
    assert records.load(directory).id == incident.id
    assert any("cauterize did not make it" in event.message for event in incident.events)


def test_ids_taken_again_and_again_are_refused(tmp_path, leaked_key, monkeypatch):
    store = IncidentStore(tmp_path / "incidents")
    incident = _incident(store, Secret(leaked_key))
    monkeypatch.setattr(records.secrets, "token_hex", lambda n: "deadbeef")
    incident.id = f"{incident.id.rsplit('-', 1)[0]}-deadbeef"
    store.directory(incident.id).mkdir(parents=True)
    with pytest.raises(IncidentDirError, match="taken already"):
        store.create(incident)


# -- directories --------------------------------------------------------------------------------------


def test_directories_are_made_private(tmp_path, leaked_key):
    store = IncidentStore(tmp_path / "deep" / "incidents")
    directory = store.create(_incident(store, Secret(leaked_key)))
    work = records.work_dir(directory)
    for path in (store.root, directory, work):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert stat.S_IMODE((directory / "incident.json").stat().st_mode) == 0o600


def _spoil(path: Path, how: str) -> None:
    if how == "chown":
        if not _can_chown():
            pytest.skip("changing a directory's owner needs root")
        os.chown(path, NOBODY, -1)
    else:
        os.chmod(path, int(how, 8))


@pytest.mark.parametrize("how, fix", [("777", "chmod 700"), ("770", "chmod 700"), ("703", "chmod 700"),
                                      ("chown", "chown")])
@pytest.mark.parametrize("where", ["root", "incident", "work"])
def test_a_directory_others_may_change_is_refused(tmp_path, leaked_key, where, how, fix):
    store = IncidentStore(tmp_path / "incidents")
    directory = store.create(_incident(store, Secret(leaked_key)))
    work = records.work_dir(directory)
    target = {"root": store.root, "incident": directory, "work": work}[where]
    _spoil(target, how)
    attempts = {
        "root": [lambda: IncidentStore(store.root), lambda: store.create(_incident(store, Secret(leaked_key)))],
        "incident": [lambda: records.load(directory), lambda: records.save(records.Incident.model_validate_json(
            (directory / "incident.json").read_bytes()), directory)],
        "work": [lambda: records.work_dir(directory), lambda: records.clear_work(directory)],
    }[where]
    for attempt in attempts:
        with pytest.raises(IncidentDirError) as caught:
            attempt()
        assert fix in caught.value.remediation and str(target) in caught.value.remediation
        assert caught.value.exit_code == 2


def test_a_record_others_may_write_or_not_ours_is_refused(tmp_path, leaked_key):
    store = IncidentStore(tmp_path / "incidents")
    directory = store.create(_incident(store, Secret(leaked_key)))
    record = directory / "incident.json"
    os.chmod(record, 0o620)
    with pytest.raises(IncidentDirError, match="may be written by its group") as caught:
        records.load(directory)
    assert caught.value.remediation == f"chmod 600 {record}"
    os.chmod(record, 0o600)
    if _can_chown():
        os.chown(record, NOBODY, -1)
        with pytest.raises(IncidentDirError, match=f"owned by uid {NOBODY}"):
            records.load(directory)


# -- links planted in place of incident files ---------------------------------------------------------


@pytest.fixture
def opened(tmp_path, leaked_key):
    store = IncidentStore(tmp_path / "incidents")
    directory = store.create(_incident(store, Secret(leaked_key)))
    target = tmp_path / "precious"
    target.write_text("do not touch\n")
    return directory, target


def _plant(link: Path, target: Path) -> None:
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def test_a_linked_record_is_refused_and_its_target_untouched(opened):
    directory, target = opened
    incident = records.load(directory)
    _plant(directory / "incident.json", target)
    with pytest.raises(IncidentDirError, match="symbolic link"):
        records.load(directory)
    with pytest.raises(IncidentDirError, match="symbolic link"):
        records.save(incident, directory)
    assert target.read_text() == "do not touch\n"
    assert (directory / "incident.json").is_symlink(), "refused, not replaced"


def test_a_linked_incident_directory_is_refused(opened, tmp_path):
    directory, _ = opened
    elsewhere = tmp_path / "elsewhere"
    directory.rename(elsewhere)
    directory.symlink_to(elsewhere)
    with pytest.raises(IncidentDirError, match="symbolic link"):
        records.load(directory)
    with pytest.raises(IncidentDirError, match="symbolic link"):
        IncidentStore(directory.parent).find_open("rb", records.load(elsewhere).old_key.fingerprint)


def test_a_linked_lock_is_refused_and_its_target_untouched(opened):
    directory, target = opened
    _plant(directory / "lock", target)
    with pytest.raises(IncidentDirError, match="symbolic link"):
        records.acquire_lock(directory)
    records.release_lock(directory)
    assert target.read_text() == "do not touch\n"


def test_a_linked_key_lock_is_refused(opened, leaked_key):
    directory, target = opened
    fingerprint = Secret(leaked_key).fingerprint
    locks = directory.parent / ".locks"
    locks.mkdir(mode=0o700)
    _plant(locks / f"rb-{fingerprint.removeprefix('sha256:')}", target)
    with pytest.raises(IncidentDirError, match="symbolic link"):
        records.hold_key_lock(directory.parent, "rb", fingerprint)
    assert target.read_text() == "do not touch\n"


@pytest.mark.parametrize("name", ["postmortem.md", "postmortem.html", "lessons.md"])
def test_linked_report_files_are_refused(opened, name):
    from cauterize.report import write_reports

    directory, target = opened
    _plant(directory / name, target)
    with pytest.raises(IncidentDirError, match="symbolic link"):
        write_reports(records.load(directory), directory)
    assert target.read_text() == "do not touch\n"


def test_a_linked_drill_history_and_leaked_list_are_refused(opened):
    from cauterize import drill
    from cauterize.guard import add_leaked_fingerprint

    directory, target = opened
    _plant(directory.parent / drill.HISTORY, target)
    with pytest.raises(IncidentDirError, match="symbolic link"):
        drill.append_history(directory.parent, {"runbook": "rb", "ok": True})
    with pytest.raises(IncidentDirError, match="symbolic link"):
        drill.read_history(directory.parent)
    _plant(directory.parent / "leaked-fingerprints", target)
    with pytest.raises(IncidentDirError, match="not a regular file"):
        add_leaked_fingerprint("sha256:0123456789abcdef", directory.parent / "leaked-fingerprints")
    assert target.read_text() == "do not touch\n"


# -- scratch ------------------------------------------------------------------------------------------


def test_scratch_is_removed_on_resume_and_on_completion_without_following_links(opened, leaked_key, tmp_path):
    directory, target = opened
    work = records.work_dir(directory)
    (work / "tmpcrashed" / "expressions-x").mkdir(parents=True)
    (work / "tmpcrashed" / "expressions-x" / "replacements.txt").write_text(f"literal:{leaked_key}==>x\n")
    (work / "link").symlink_to(target.parent)
    records.acquire_lock(directory)  # a resumed run takes the lock: the crashed run's leftovers go
    assert not work.exists() and target.read_text() == "do not touch\n"
    records.release_lock(directory)

    incident = records.load(directory)
    scratch = records.work_dir(directory) / "tmpstep"
    scratch.mkdir()
    (scratch / "mirror").write_text(leaked_key)
    records.save(incident, directory)
    assert scratch.exists(), "an incomplete incident keeps the scratch of the step under way"
    for step in incident.steps.values():
        step.status = "ok"
    records.save(incident, directory)
    assert not work.exists(), "a complete incident keeps no scratch"
    assert _holding_key(directory, leaked_key) == []


# -- through the command line -------------------------------------------------------------------------


def _respond(world, tmp_path, fault=None):
    env = {**os.environ, **world.env, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": ""}
    env.pop("CAUTERIZE_FAULT", None)
    if fault:
        env["CAUTERIZE_FAULT"] = fault
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cauterize.cli import entry; entry()", "respond", str(world.runbook), "--yes", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
        start_new_session=True,
    )
    out = {}
    reader = threading.Thread(target=lambda: out.setdefault("stdout", proc.stdout.read()), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=300)
    finally:
        try:  # a SIGKILL leaves Prefect's server child behind: end the whole group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reader.join(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.get("stdout", ""), proc.stderr.read())


def _assert_refused(done, words):
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert words in done.stderr, done.stderr[-2000:]


@pytest.fixture
def world(tmp_path):
    world = build_world(tmp_path / "w")
    yield world
    world.close()


slow = pytest.mark.slow


@slow
@pytest.mark.parametrize("how, words", [("777", "chmod 700"), ("chown", "chown")])
def test_respond_refuses_a_report_dir_others_may_change_before_any_provider_call(world, tmp_path, how, words):
    incidents = world.root / "incidents"
    incidents.mkdir(mode=0o700)
    _spoil(incidents, how)
    done = _respond(world, tmp_path)
    _assert_refused(done, words)
    assert str(incidents) in done.stderr
    assert world.emulator.requests == [], "no provider call before the report directory is trusted"
    assert world.emulator.is_live(world.env[LEAKED_ENV])
    assert list(incidents.iterdir()) == []


@slow
@pytest.mark.parametrize("name", ["incident.json", "lock"])
def test_respond_refuses_a_linked_incident_file_and_leaves_its_target_alone(world, tmp_path, name):
    killed = _respond(world, tmp_path, fault="kill-after:intake")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    [directory] = [p for p in (world.root / "incidents").iterdir() if (p / "incident.json").exists()]
    target = tmp_path / "decoy"
    target.write_bytes((directory / name).read_bytes() if (directory / name).exists() else b"{}")
    before = target.read_bytes()
    _plant(directory / name, target)
    deletes = len(world.emulator.calls("DELETE"))
    done = _respond(world, tmp_path)
    _assert_refused(done, "symbolic link")
    assert target.read_bytes() == before
    assert len(world.emulator.calls("DELETE")) == deletes and world.emulator.is_live(world.env[LEAKED_ENV])
    assert [p.name for p in (world.root / "incidents").iterdir() if p.name not in (".locks",)] == [directory.name]


@slow
def test_a_purge_killed_with_the_key_on_disk_leaves_nothing_after_the_rerun(world, tmp_path):
    killed = _respond(world, tmp_path, fault="kill-after:purge-expressions")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    incidents = world.root / "incidents"
    [directory] = [p for p in incidents.iterdir() if (p / "incident.json").exists()]
    key = world.env[LEAKED_ENV]
    left = _holding_key(directory, key)
    assert any(path.startswith(".work/") for path in left), f"the kill left no scratch behind: {left}"
    planted = directory / ".work" / "tmpplanted"
    planted.mkdir()
    (planted / "clone.txt").write_text(key)
    identity = records.load(directory).id

    done = _respond(world, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    assert record["id"] == identity, "the same incident, the same id"
    minted = [a.name for a in world.emulator.service_accounts.values() if a.name.startswith("cauterize-")]
    assert minted == [f"cauterize-{identity[:15].lower()}"]
    assert not (directory / ".work").exists()
    assert _holding_key(incidents, key) == []
    assert record["purge"] and record["purge"][0]["verified"]
