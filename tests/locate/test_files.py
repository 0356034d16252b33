"""scan_tree: regular files in every encoding, notebooks by cell, what it must not open or follow,
and what it could not read, counted. Keys are generated per run; nothing key-shaped is written here."""

from __future__ import annotations

import base64
import json
import os
import secrets
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest

from cauterize.errors import InputError
from cauterize.locate import archives
from cauterize.locate.files import scan_tree
from cauterize.locate.findings import ENCODINGS, Finding
from cauterize.secret import Secret

DESIGN_FIELDS = {"source", "location", "repo", "commit", "ref", "path", "reachable", "encoding", "first_seen"}


def fake_key() -> str:
    return "sk-proj-" + secrets.token_urlsafe(48)


def decoy_of(value: str) -> str:
    return value[:8] + secrets.token_urlsafe(48)[: len(value) - 8]


@pytest.fixture
def value() -> str:
    return fake_key()


def scan(root: Path, value: str) -> tuple[list[Finding], list[str]]:
    errors: list[str] = []
    findings = scan_tree(root, Secret(value), errors=errors)
    dumped = json.dumps([finding.to_dict() for finding in findings]) + "\n".join(errors)
    assert value not in dumped and base64.b64encode(value.encode()).decode()[:40] not in dumped
    return findings, errors


def where(findings: list[Finding], root: Path) -> set[tuple[str, str]]:
    return {(finding.location.removeprefix(f"{root}/"), finding.encoding) for finding in findings}


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def test_regular_files_in_every_encoding(tmp_path, value):
    decoy = decoy_of(value)
    write(tmp_path, {
        ".env": f"OPENAI_API_KEY={value}\n",
        "k8s/secret.yaml": f"kind: Secret\ndata:\n  key: {base64.b64encode(value.encode()).decode()}\n",
        "logs/access.log": f"GET /v1/models?api_key={quote(value, safe='')} 200\n",
        "config.json": json.dumps({"nested": json.dumps({"key": value})}),  # escaped twice: \" around it
        "decoy.env": f"OPENAI_API_KEY={decoy}\n",
        "decoy.b64": base64.b64encode(decoy.encode()).decode(),
        "empty": "",
    })
    findings, errors = scan(tmp_path, value)
    assert where(findings, tmp_path) == {
        (".env", "raw"), ("k8s/secret.yaml", "base64"), ("logs/access.log", "raw"), ("config.json", "raw"),
    }
    assert errors == []
    for finding in findings:
        assert set(finding.to_dict()) == DESIGN_FIELDS | {"object", "kind"}
        assert (finding.source, finding.kind, finding.first_seen, finding.encoding in ENCODINGS) == (
            "file", "file", None, True)
        assert finding.path == finding.location


def test_copy_across_read_chunks_is_found(tmp_path, value, monkeypatch):
    monkeypatch.setattr(archives, "CHUNK", 61)
    write(tmp_path, {"big.txt": "x" * 1000 + value + "y" * 1000, "pem.txt": _pem(value)})
    findings, _ = scan(tmp_path, value)
    assert where(findings, tmp_path) == {("big.txt", "raw"), ("pem.txt", "base64")}


def _pem(value: str) -> str:
    encoded = base64.b64encode(secrets.token_bytes(50) + value.encode()).decode()
    return "-----BEGIN SECRET-----\n" + "\n".join(encoded[i:i + 64] for i in range(0, len(encoded), 64)) + "\n"


def notebook(cells: list[dict], **metadata) -> str:
    return json.dumps({"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}, indent=1,
                      ensure_ascii=False)


def code_cell(source: str, *outputs: str) -> dict:
    return {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": source.splitlines(True),
            "outputs": [{"output_type": "stream", "name": "stdout", "text": [text]} for text in outputs]}


def test_notebook_cells_and_outputs(tmp_path, value):
    decoy = decoy_of(value)
    nb = notebook([
        {"cell_type": "markdown", "metadata": {}, "source": ["# Übersicht: café ☕\n"]},  # non-ASCII before the hits
        code_cell("import os\nclient = OpenAI(api_key=os.environ['KEY'])", f"Authorization: Bearer {value}\n"),
        code_cell(f"key = {json.dumps(value)}", "ok\n"),
        code_cell("print(other)", f"{decoy}\n"),
        code_cell("show()", base64.b64encode(b"blob:" + value.encode()).decode()),
    ], kernel=f"secret {value}")
    write(tmp_path, {"analysis.ipynb": nb, "broken.ipynb": '{"cells": [' + value})
    findings, errors = scan(tmp_path, value)
    assert where(findings, tmp_path) == {
        ("analysis.ipynb!cells[1].outputs", "raw"),
        ("analysis.ipynb!cells[2].source", "raw"),
        ("analysis.ipynb!cells[4].outputs", "base64"),
        ("analysis.ipynb!metadata", "raw"),
        ("broken.ipynb", "raw"),  # not JSON: searched as a plain file
    }
    assert errors == []


def test_notebook_json_escaped_key(tmp_path):
    value = "sk-test-" + secrets.token_hex(12) + '/"quoted"\\' + secrets.token_hex(12)
    write(tmp_path, {"nb.ipynb": notebook([code_cell("x = 1", f"{value}\n")])})
    findings, _ = scan(tmp_path, value)
    assert where(findings, tmp_path) == {("nb.ipynb!cells[0].outputs", "json")}


def test_git_directories_symlinks_and_special_files(tmp_path, value):
    outside = tmp_path / "outside"
    write(outside, {"k.env": value})
    tree = tmp_path / "tree"
    write(tree, {".git/config": value, "sub/.git/objects/x": value, "app/.env": value})
    (tree / "linked.env").symlink_to(outside / "k.env")
    (tree / "linked-dir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(tree / "pipe")  # opening it would block forever
    findings, errors = scan(tree, value)
    assert where(findings, tree) == {("app/.env", "raw")}
    assert errors == []


def test_root_may_be_a_single_file_or_missing(tmp_path, value):
    write(tmp_path, {"one.env": value})
    [found] = scan_tree(tmp_path / "one.env", Secret(value))
    assert found.location == str(tmp_path / "one.env")
    with pytest.raises(InputError, match="no such file"):
        scan_tree(tmp_path / "missing", Secret(value))


def test_unreadable_files_are_skipped_and_counted(tmp_path, value, monkeypatch):
    write(tmp_path, {"a.env": value, "locked.env": value, "z.env": value})
    locked = tmp_path / "locked.env"
    if os.geteuid() == 0:  # root reads through any mode: make the open itself fail
        real_open = open

        def refusing(path, *args, **kwargs):
            if str(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(archives, "open", refusing, raising=False)
    else:
        locked.chmod(0)
    findings, errors = scan(tmp_path, value)
    assert where(findings, tmp_path) == {("a.env", "raw"), ("z.env", "raw")}
    assert errors == [f"{locked}: cannot be read (Permission denied); not searched"]


def test_unlistable_directory_is_counted(tmp_path, value, monkeypatch):
    write(tmp_path, {"open/a.env": value, "closed/b.env": value})
    closed = tmp_path / "closed"
    real_scandir = os.scandir

    def refusing(path=".", *args, **kwargs):  # root lists any directory: refuse this one by hand
        if os.fspath(path) == os.fspath(closed):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", refusing)
    findings, errors = scan(tmp_path, value)
    assert where(findings, tmp_path) == {("open/a.env", "raw")}
    assert errors == [f"{closed}: cannot be listed (Permission denied); not searched"]


def test_names_holding_the_key_are_redacted(tmp_path, value):
    fingerprint = Secret(value).fingerprint
    write(tmp_path, {f"dump-{value}.txt": value})
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{value}.env", secrets.token_hex(100) + value)
    findings, _ = scan(tmp_path, value)
    assert where(findings, tmp_path) == {
        ("a.zip", "raw"),  # the member's name, in the zip's directory
        (f"a.zip!zip:[{fingerprint}].env", "raw"),
        (f"dump-[{fingerprint}].txt", "raw"),
    }


def test_the_other_key_is_found_only_when_searched_for(tmp_path, value):
    decoy = decoy_of(value)
    write(tmp_path, {"mine.env": value, "theirs.env": decoy})
    assert where(scan(tmp_path, value)[0], tmp_path) == {("mine.env", "raw")}
    assert where(scan(tmp_path, decoy)[0], tmp_path) == {("theirs.env", "raw")}
