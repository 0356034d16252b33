import re
from datetime import UTC, datetime, timedelta

import pytest
from test_evidence import MONDAY, seasonal_usage

from cauterize import incident as records
from cauterize.errors import SecretLeakError
from cauterize.evidence import analyze
from cauterize.incident import ActionItem, Incident, KeyRecord, utcnow
from cauterize.report import LESSONS, duration, render, write_reports
from cauterize.secret import Secret

SECTIONS = ("Status", "Summary", "Impact", "Root causes", "Trigger", "Resolution", "Detection", "Action items",
            "Lessons learned", "Timeline")


def _incident(secret: Secret, **extra) -> Incident:
    now = utcnow()
    return Incident(
        id="20261126T000000Z-rb-abcdef12", runbook="rb", runbook_path="/x/rb.yaml", created_at=now, updated_at=now,
        provider="openai", order="revoke-first",
        old_key=KeyRecord(fingerprint=secret.fingerprint, redacted=secret.redacted), **extra,
    )


def full_incident(secret: Secret, replacement: Secret) -> Incident:
    """A record as the whole flow leaves it: identity, findings, purge, evidence, events, follow-ups."""
    exposed = MONDAY + timedelta(days=14, hours=9)
    spike = (exposed + timedelta(hours=6), exposed + timedelta(hours=42))
    opened = exposed + timedelta(days=2, hours=3)
    revoked = opened + timedelta(minutes=4)
    evidence = analyze(seasonal_usage(2, days=17, spike=spike), window_start=exposed, window_end=revoked, provider="openai")
    evidence["bucket"] = "1h"
    incident = Incident(
        id="20260318T120000Z-support-bot-abcdef12", runbook="support-bot", runbook_path="/srv/rb.yaml",
        created_at=opened, updated_at=revoked, provider="openai", order="revoke-first", mode="respond",
        old_key=KeyRecord(fingerprint=secret.fingerprint, redacted=secret.redacted, source="env:LEAKED",
                          liveness="dead", identity={"provider": "openai", "key_id": "key_LeakedOne", "project": "proj_support",
                                                     "owner_type": "user", "owner_id": "user-dana", "name": "laptop key",
                                                     "notes": ["found on the second page of keys"]}),
        new_key=KeyRecord(fingerprint=replacement.fingerprint, redacted=replacement.redacted, source="store:0"),
        revoked_at=revoked, exposure_start=exposed, evidence=evidence,
        findings=[{"source": "git", "location": "app:config.py@5ad3f7f2d374", "repo": "/srv/repos/app",
                   "commit": "5ad3f7f2d3746c7916ae664d6a95b911b528fbb4", "ref": "refs/heads/main", "path": "config.py",
                   "reachable": True, "encoding": "raw", "first_seen": exposed.isoformat(), "object": None, "kind": "blob"},
                  {"source": "file", "location": "/srv/app/.env", "path": "/srv/app/.env", "encoding": "raw",
                   "reachable": None, "first_seen": None}],
        purge=[{"repo": "/srv/repos/app", "commits_rewritten": 2, "refs_changed": ["refs/heads/main"], "pushed": True,
                "verified": True, "refused_refs": ["refs/pull/1/head"], "leftovers": []}],
        action_items=[ActionItem(step="purge", text="Ask the forge to drop refs/pull/* <now>"),
                      ActionItem(step="purge", text="re-clone /srv/repos/app", done=True)],
    )
    clock = opened
    for name in records.STEPS:
        step = incident.steps[name]
        step.status, step.started_at, step.ended_at = "ok", clock, clock + timedelta(seconds=20)
        step.summary = {"revoke": "deleted-key: key_LeakedOne", "rotate": "minted key_New",
                        "purge": "rewrote 2 commit(s) in 1 repo(s)"}.get(name, f"{name} done")
        incident.events += [records.Event(at=clock, step=name, message="started"),
                            records.Event(at=clock + timedelta(seconds=20), step=name, message=f"ok: {step.summary}")]
        clock += timedelta(seconds=30)
    incident.steps["redeploy"].details["stores"] = [{"store": "vault secret/openai", "fingerprint": replacement.fingerprint,
                                                     "version": 7}]
    return verified(incident, at=clock)


def verified(incident: Incident, *, at=None, old="dead") -> Incident:
    """The end verification as verification.py records it: the old key's verdict, the stores, the new key."""
    incident.verification = {
        "at": (at or utcnow()).isoformat(), "old_key": {"state": old, "reason": "401 invalid_api_key"},
        "stores": [{"store": "vault secret/openai", "primary": True, "holds_new_key": True}],
        "new_key": {"state": "live", "reason": "200"}, "contained": old == "dead", "recovered": True,
        "reopened": [], "why": [],
    }
    return incident


def _section(text: str, title: str, fmt: str) -> str:
    pattern = rf"## {title}\n(.*?)(?=\n## |\Z)" if fmt == "md" else rf"<h2 id=\"[^\"]+\">{title}</h2>(.*?)(?=<h2|\Z)"
    match = re.search(pattern, text, re.DOTALL)
    assert match, f"no section {title}"
    return match.group(1)


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_an_empty_record_renders(fmt, leaked_key):
    text = render(_incident(Secret(leaked_key)), fmt)
    assert "not identified" in text and "incomplete" in text.lower()
    assert "No usage evidence was collected".lower() in text.lower()
    assert leaked_key not in text


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_a_full_record_renders_every_section(fmt, leaked_key):
    secret = Secret(leaked_key)
    now = utcnow()
    incident = _incident(
        secret,
        exposure_start=now - timedelta(days=2, hours=3),
        revoked_at=now,
        findings=[{"source": "git", "location": "app:config.py@abc", "encoding": "raw", "reachable": True,
                   "first_seen": "2026-11-24T00:00:00Z", "repo": "app"}],
        purge=[{"repo": "app", "commits_rewritten": 2, "refs_changed": ["refs/heads/main"], "pushed": True,
                "verified": True, "refused_refs": ["refs/pull/1/head"], "leftovers": []}],
        evidence={"window": {"start": "a", "end": "b"}, "totals": {"requests": 5, "input_tokens": 1000,
                  "output_tokens": 10, "cost_usd": 1.5}, "baseline": {"median_tokens": 3, "buckets": 4},
                  "anomalous_buckets": 1, "excess_tokens": 900, "limitations": ["cost is daily only"],
                  "buckets": [{"start": "s", "requests": 5, "input_tokens": 1000, "output_tokens": 10,
                               "anomalous": True, "score": 9.1}]},
        action_items=[ActionItem(step="purge", text="re-clone app <script>")],
    )
    for name in incident.steps:
        incident.steps[name].status = "ok"
    text = render(verified(incident), fmt)
    assert "contained" in text.lower() and "2 d 3 h" in text and "refs/pull/1/head" in text and "$1.50" in text
    assert ("&lt;script&gt;" in text) == (fmt == "html")
    assert "No chart" in text, "an evidence section too old to draw says so instead of failing"
    assert leaked_key not in text


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_every_section_holds_the_records_real_values(fmt, make_key):
    secret, replacement = Secret(make_key()), Secret(make_key("sk-svcacct-"))
    incident = full_incident(secret, replacement)
    text = render(incident, fmt)
    ev = incident.evidence
    sections = {title: _section(text, title, fmt) for title in SECTIONS}
    assert "Contained" in sections["Status"] and "action item(s) open" in sections["Status"]
    assert "key_LeakedOne" in sections["Summary"] and "hourly bucket(s) were anomalous" in sections["Summary"]
    impact = sections["Impact"]
    assert f"{ev['totals']['requests']:,}" in impact and f"{ev['totals']['input_tokens']:,}" in impact
    assert f"${ev['totals']['cost_usd']:,.2f}" in impact and "(estimate)" in impact
    assert "proj_support" in impact and "user-dana" in impact and "laptop key" in impact
    assert "36 anomalous bucket(s)" in impact and "Limitation: cost is an estimate" in impact
    assert ("usage.png" in impact) if fmt == "md" else ("data:image/png;base64," in impact)
    assert "config.py" in sections["Root causes"] and "5ad3f7f2d374" in sections["Root causes"]
    assert "/srv/app/.env" in sections["Root causes"]
    assert "2026-03-16 09:00 UTC" in sections["Trigger"] and "6 h 0 min after the exposure start" in sections["Trigger"]
    resolution = sections["Resolution"]
    assert all(step in resolution for step in ("revoke", "rotate", "redeploy", "purge"))
    assert "deleted-key: key_LeakedOne" in resolution and "vault secret/openai" in resolution
    assert "refs/pull/1/head" in resolution and "2026-03-18 12:00 UTC" in resolution
    assert "2 d 3 h 0 min after the exposure start" in sections["Detection"]
    actions = sections["Action items"]
    assert "pre-commit secret scanner" in actions and "cauterize watch --provider openai" in actions
    assert "done" in actions and "prevent" in actions and "detect" in actions and "owners of /srv/repos/app" in actions
    assert "Not written yet" in sections["Lessons learned"]
    timeline = sections["Timeline"]
    assert timeline.count("started") == len(records.STEPS) and "first anomalous usage bucket" in timeline
    assert timeline.index("the key is first seen") < timeline.index("first anomalous") < timeline.index("started")
    assert secret.reveal() not in text and replacement.reveal() not in text


def test_lessons_are_kept_across_re_renders(tmp_path, make_key):
    incident = full_incident(Secret(make_key()), Secret(make_key()))
    paths = write_reports(incident, tmp_path)
    lessons = tmp_path / LESSONS
    assert paths["lessons"] == str(lessons) and "## What went well" in lessons.read_text()
    assert (tmp_path / "usage.png").read_bytes().startswith(b"\x89PNG") and paths["chart"] == str(tmp_path / "usage.png")
    assert "](usage.png)" in (tmp_path / "postmortem.md").read_text()
    assert (lessons.stat().st_mode & 0o777) == 0o600

    words = lessons.read_text().replace(
        "<!-- What made the response fast or safe? Which alert, runbook or tool helped? -->",
        "- Revocation took **four minutes** from the page.\n- <script>alert(1)</script> stays text.",
    )
    lessons.write_text(words)
    for _ in range(2):
        write_reports(incident, tmp_path)
        assert lessons.read_text() == words, "re-rendering never touches the people's file"
    md, html = (tmp_path / "postmortem.md").read_text(), (tmp_path / "postmortem.html").read_text()
    assert "### What went well" in md and "Revocation took **four minutes** from the page." in md
    assert "<h3>What went well</h3>" in html and "<strong>four minutes</strong>" in html
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "What made the response fast" not in md, "the prompts are not part of the report"
    assert "Not written yet: the review" not in md
    assert "### What went wrong\n\n_Not written yet._" in md, "a section nobody wrote in says so"


def test_a_live_key_pasted_into_the_lessons_stops_the_report(tmp_path, make_key):
    secret = Secret(make_key())
    incident = full_incident(secret, Secret(make_key()))
    write_reports(incident, tmp_path)
    (tmp_path / LESSONS).write_text(f"## What went wrong\n\nthe key was {secret.reveal()}\n")
    with pytest.raises(SecretLeakError):
        write_reports(incident, tmp_path)
    assert secret.reveal() not in (tmp_path / "postmortem.md").read_text()


@pytest.mark.parametrize("stopped_after", ["intake", "locate", "evidence"])
def test_an_incident_that_stopped_early_renders_and_writes(tmp_path, make_key, stopped_after):
    incident = full_incident(Secret(make_key()), Secret(make_key()))
    later = list(records.STEPS)[list(records.STEPS).index(stopped_after) + 1:]
    for name in later:
        incident.steps[name] = records.StepRecord()
    incident.steps[stopped_after].status, incident.steps[stopped_after].error = "failed", "the admin key was rejected"
    if stopped_after == "intake":
        incident.old_key.identity, incident.new_key, incident.revoked_at = None, None, None
    if stopped_after in ("intake", "locate"):
        incident.findings, incident.purge, incident.exposure_start, incident.evidence = [], [], None, None
    incident.steps["redeploy"].details = {}
    paths = write_reports(incident, tmp_path)
    md = (tmp_path / "postmortem.md").read_text()
    assert "Incomplete" in md and f"finish the {stopped_after} step (failed): the admin key was rejected" in md
    assert all(f"## {title}" in md for title in SECTIONS)
    assert ("chart" in paths) == (incident.evidence is not None)
    assert (tmp_path / "postmortem.html").read_text().startswith("<!doctype html>")


def test_duration():
    now = utcnow()
    assert duration(None, now) == "—"
    assert duration(now - timedelta(minutes=61), now) == "1 h 1 min"
    assert duration("2026-03-01T00:00:00Z", datetime(2026, 3, 2, 0, 30, tzinfo=UTC)) == "1 d 30 min"


def test_re_rendering_from_the_record_alone_merges_the_lessons(tmp_path, make_key):
    """What `cauterize report INCIDENT_DIR` does: load the record, render (no directory given)."""
    incident = full_incident(Secret(make_key()), Secret(make_key()))
    incident.report = write_reports(incident, tmp_path)
    records.save(incident, tmp_path)
    (tmp_path / LESSONS).write_text("## What went wrong\n\nThe key sat in config.py for two days.\n")
    again = render(records.load(tmp_path), "md")
    assert "The key sat in config.py for two days." in again and "](usage.png)" in again


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_contained_only_when_the_world_agreed_at_the_end(fmt, leaked_key):
    """Every step ok is not enough: without a verification, or with the old key answering live at
    the end, the post-mortem says incomplete and the exit code is 3."""
    incident = full_incident(Secret(leaked_key), Secret(leaked_key[::-1]))
    assert "Contained." in render(incident, fmt) and incident.exit_code() == 0
    assert "Verified at" in render(incident, fmt) and "old key dead" in render(incident, fmt)
    incident.verification = None
    assert "Contained." not in render(incident, fmt) and incident.exit_code() == 3
    verified(incident, old="live")
    text = render(incident, fmt)
    assert "Contained." not in text and "treat the leak as live" in text and incident.exit_code() == 3
