"""Containers: the matcher opens gzip, zip and tar from bytes (git blobs); the file scanner streams
archives and container images member by member and layer by layer. Every container is built here,
at test time, and every key is generated per run."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import lzma
import secrets
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from cauterize.locate.archives import FILE_LIMITS
from cauterize.locate.files import scan_tree
from cauterize.locate.findings import Finding
from cauterize.locate.matcher import Budget, Limits, Match, Matcher, container_kind
from cauterize.secret import Secret


def fake_key() -> str:
    return "sk-proj-" + secrets.token_urlsafe(48)


def decoy_of(value: str) -> str:
    """Another key of the same shape: same prefix and length, different characters."""
    return value[:8] + secrets.token_urlsafe(48)[: len(value) - 8]


@pytest.fixture
def value() -> str:
    return fake_key()


@pytest.fixture
def matcher(value) -> Matcher:
    return Matcher(Secret(value))


def zip_bytes(members: dict[str, bytes], *, stored: bool = False) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], *, mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_600_000_000
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def noisy(text: str) -> bytes:
    """Text that compresses poorly around the key, so no raw copy survives in a deflate stream by chance."""
    return secrets.token_hex(200).encode() + b"\n" + text.encode() + b"\n" + secrets.token_hex(200).encode()


def assert_clean(value: str, findings: list[Finding], errors: list[str] = ()) -> None:  # type: ignore[assignment]
    text = json.dumps([finding.to_dict() for finding in findings]) + "\n".join(errors)
    assert value not in text
    assert base64.b64encode(value.encode()).decode()[:40] not in text


# ---- the matcher on bytes ---------------------------------------------------------------------


def test_zip_member_deflated(value, matcher):
    data = zip_bytes({"README": b"hello", "config/prod.env": noisy(f"OPENAI_API_KEY={value}")})
    assert value.encode() not in data
    assert [(m.encoding, m.container) for m in matcher.scan(data)] == [("raw", "zip:config/prod.env")]
    assert matcher.find(data) == []  # the hot path alone cannot see it: the container must be opened
    assert matcher.scan_containers(data) == matcher.scan(data)


def test_stored_zip_member_reported_once_inside_the_member(value, matcher):
    data = zip_bytes({"a.env": f"K={value}\n".encode()}, stored=True)
    assert value.encode() in data
    assert matcher.scan(data) == [Match("raw", 2, "zip:a.env", len(value))]


def test_gzip_inside_zip_and_zip_inside_tar(value, matcher):
    log = gzip.compress(noisy(f"token={value}"))
    bundle = zip_bytes({"logs/app.log.gz": log, "base64.txt": base64.b64encode(b"k=" + value.encode())})
    containers = {(m.encoding, m.container) for m in matcher.scan(bundle)}
    assert containers == {("raw", "zip:logs/app.log.gz!gzip"), ("base64", "zip:base64.txt")}
    tarball = tar_bytes({"dist/bundle.zip": zip_bytes({"config/prod.env": noisy(value)})})
    assert container_kind(tarball) == "tar"
    assert [m.container for m in matcher.scan(tarball)] == ["tar:dist/bundle.zip!zip:config/prod.env"]
    compressed = gzip.compress(tarball)
    assert [m.container for m in matcher.scan(compressed)] == ["gzip!tar:dist/bundle.zip!zip:config/prod.env"]


def test_nesting_deeper_than_the_limit_is_reported(value, matcher):
    deep = zip_bytes({"inner.zip": zip_bytes({"k.txt": noisy(value)})})
    errors: list[str] = []
    assert matcher.scan(deep, errors=errors, budget=Budget(Limits(depth=1))) == []
    assert errors == ["zip:inner.zip!zip: nested deeper than 1 containers; not opened"]
    assert [m.container for m in matcher.scan(deep)] == ["zip:inner.zip!zip:k.txt"]


def test_member_over_the_cap_is_cut_and_reported(value, matcher):
    late = b"\0" * (2 << 20) + value.encode()  # the key sits past the cap
    early = value.encode() + b"\0" * (2 << 20)
    errors: list[str] = []
    budget = Budget(Limits(member=1 << 20, total=64 << 20))
    found = matcher.scan(zip_bytes({"late.bin": late, "early.bin": early}), errors=errors, budget=budget)
    assert [m.container for m in found] == ["zip:early.bin"]
    assert errors == [
        "zip:late.bin: decompresses past the per-member limit of 1 MiB; only the first 1 MiB were searched",
        "zip:early.bin: decompresses past the per-member limit of 1 MiB; only the first 1 MiB were searched",
    ]
    errors.clear()
    assert matcher.scan(gzip.compress(late), errors=errors, budget=Budget(Limits(member=1 << 20))) == []
    assert errors == ["gzip: decompresses past the per-member limit of 1 MiB; only the first 1 MiB were searched"]


def test_total_cap_stops_opening_members(value, matcher):
    members = {f"part{n}.bin": b"\0" * (600 << 10) for n in range(3)} | {"z.env": value.encode()}
    errors: list[str] = []
    found = matcher.scan(zip_bytes(members), errors=errors, budget=Budget(Limits(member=1 << 20, total=1 << 20)))
    assert found == []
    assert errors[0].startswith("zip:part1.bin: decompresses past the total limit of 1 MiB")
    assert errors[1] == "zip:part2.bin: the total limit of 1 MiB decompressed was reached; not searched"


def test_corrupt_containers_are_reported_and_raw_bytes_still_searched(value, matcher):
    errors: list[str] = []
    truncated = zip_bytes({"a.env": f"K={value}".encode()}, stored=True)[:-30]
    assert [(m.encoding, m.container) for m in matcher.scan(truncated, errors=errors)] == [("raw", None)]
    assert errors and errors[0].startswith("zip: not a readable zip archive")
    errors.clear()
    cut_gzip = gzip.compress(noisy(value))[:-8]
    assert [m.container for m in matcher.scan(cut_gzip, errors=errors)] == ["gzip"]
    assert errors[0].startswith("gzip: corrupt or truncated")


def test_member_names_holding_the_key_are_redacted(value, matcher):
    data = zip_bytes({f"backup-{value}.txt": noisy(value)})
    found = matcher.scan(data)
    # The name itself is a copy, in the zip's directory; the member is named with the fingerprint.
    assert [m.container for m in found] == [None, f"zip:backup-[{matcher.fingerprint}].txt"]


@pytest.mark.parametrize("width", [64, 76])
@pytest.mark.parametrize("align", [0, 1, 2])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_wrapped_base64(value, matcher, width, align, newline):
    """PEM (64) and MIME (76) line wrapping, at every byte alignment of the key in the stream."""
    payload = secrets.token_bytes(17 + align) + value.encode() + secrets.token_bytes(40)
    lines = textwrap.wrap(base64.b64encode(payload).decode(), width)
    pem = f"-----BEGIN DATA-----{newline}{newline.join(lines)}{newline}-----END DATA-----{newline}".encode()
    assert [m.encoding for m in matcher.scan(pem)] == ["base64"]
    indented = ("data: |\n" + "".join(f"    {line}\n" for line in lines)).encode()  # a YAML block scalar
    assert [m.encoding for m in matcher.scan(indented)] == ["base64"]


def test_wrapped_decoy_and_unwrapped_copies_are_not_double_counted(value, matcher):
    decoy = base64.b64encode(decoy_of(value).encode()).decode()
    assert matcher.scan("\n".join(textwrap.wrap(decoy, 64)).encode()) == []
    plain = base64.b64encode(value.encode())
    assert [m.encoding for m in matcher.scan(b"x: " + plain + b"\n")] == ["base64"]


# ---- archives on disk ------------------------------------------------------------------------


def scan(path: Path, value: str, **kwargs) -> tuple[list[Finding], list[str]]:
    errors: list[str] = []
    findings = scan_tree(path, Secret(value), errors=errors, **kwargs)
    assert_clean(value, findings, errors)
    return findings, errors


def locations(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(finding.location, finding.encoding) for finding in findings}


def test_archive_files(tmp_path, value):
    decoy = decoy_of(value)
    env = noisy(f"OPENAI_API_KEY={value}\nOTHER={decoy}")
    (tmp_path / "app.zip").write_bytes(zip_bytes({"config/prod.env": env, "decoy.env": noisy(decoy)}))
    (tmp_path / "app.jar").write_bytes(zip_bytes({"BOOT-INF/classes/application.properties": env}))
    (tmp_path / "backup.tar").write_bytes(tar_bytes({"./etc/app.env": env}))
    (tmp_path / "backup.tar.gz").write_bytes(gzip.compress(tar_bytes({"etc/app.env": env})))
    (tmp_path / "backup.tgz").write_bytes(tar_bytes({"etc/app.env": env}, mode="w:gz"))
    (tmp_path / "backup.tar.xz").write_bytes(lzma.compress(tar_bytes({"etc/app.env": env})))
    (tmp_path / "app.log.gz").write_bytes(gzip.compress(env))
    (tmp_path / "nested.tar").write_bytes(tar_bytes({"dist/bundle.zip": zip_bytes({"prod.env": env})}))
    (tmp_path / "logs.zip").write_bytes(zip_bytes({"2024/app.log.gz": gzip.compress(env)}))
    findings, errors = scan(tmp_path, value)
    root = str(tmp_path)
    assert locations(findings) == {
        (f"{root}/app.zip!zip:config/prod.env", "raw"),
        (f"{root}/app.jar!zip:BOOT-INF/classes/application.properties", "raw"),
        (f"{root}/backup.tar!tar:./etc/app.env", "raw"),
        (f"{root}/backup.tar.gz!gzip!tar:etc/app.env", "raw"),
        (f"{root}/backup.tgz!gzip!tar:etc/app.env", "raw"),
        (f"{root}/backup.tar.xz!xz!tar:etc/app.env", "raw"),
        (f"{root}/app.log.gz!gzip", "raw"),
        (f"{root}/nested.tar!tar:dist/bundle.zip!zip:prod.env", "raw"),
        (f"{root}/logs.zip!zip:2024/app.log.gz!gzip", "raw"),
    }
    assert errors == []
    for finding in findings:
        assert (finding.source, finding.kind, finding.first_seen, finding.reachable) == ("file", "file", None, None)
        assert finding.location.startswith(finding.path + "!")


def test_decompression_bomb_is_an_error_not_silence(tmp_path, value):
    (tmp_path / "bomb.zip").write_bytes(zip_bytes({"bomb.bin": b"\0" * (3 << 20), "ok.env": value.encode()}))
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(b"\0" * (3 << 20) + value.encode()))
    findings, errors = scan(tmp_path, value, limits=Limits(member=1 << 20, total=64 << 20, depth=6))
    assert locations(findings) == {(f"{tmp_path}/bomb.zip!zip:ok.env", "raw")}
    cap = "decompresses past the per-member limit of 1 MiB; only the first 1 MiB were searched"
    assert errors == [f"{tmp_path}/bomb.gz!gzip: {cap}", f"{tmp_path}/bomb.zip!zip:bomb.bin: {cap}"]


def test_total_limit_per_file_stops_the_file(tmp_path, value):
    layers = {f"layer{n}.bin": b"\0" * (600 << 10) for n in range(3)} | {"z.env": value.encode()}
    (tmp_path / "big.tar.gz").write_bytes(gzip.compress(tar_bytes(layers)))
    findings, errors = scan(tmp_path, value, limits=Limits(member=8 << 20, total=1 << 20, depth=6))
    assert findings == []
    assert errors[0] == (f"{tmp_path}/big.tar.gz!gzip: decompresses past the total limit of 1 MiB decompressed "
                         "per file; only the first 1 MiB were searched; nothing after it in this file was searched")


def test_corrupt_archives_are_reported(tmp_path, value):
    (tmp_path / "cut.tar.gz").write_bytes(gzip.compress(tar_bytes({"a.env": noisy(value), "b": b"x" * 5000}))[:-40])
    (tmp_path / "cut.zip").write_bytes(zip_bytes({"a.env": f"K={value}".encode()}, stored=True)[:-30])
    findings, errors = scan(tmp_path, value)
    assert locations(findings) == {(f"{tmp_path}/cut.tar.gz!gzip!tar:a.env", "raw"), (f"{tmp_path}/cut.zip", "raw")}
    assert any(error.startswith(f"{tmp_path}/cut.tar.gz!gzip") for error in errors)
    assert any(error.startswith(f"{tmp_path}/cut.zip: zip unreadable (BadZipFile)") for error in errors)


def test_defaults_are_documented_caps():
    assert (FILE_LIMITS.member, FILE_LIMITS.total, FILE_LIMITS.depth) == (4 << 30, 16 << 30, 6)
    assert (Limits().member, Limits().total, Limits().depth) == (64 << 20, 256 << 20, 3)


# ---- container images ------------------------------------------------------------------------


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def two_layers(value: str) -> tuple[bytes, bytes]:
    """Layer 1 adds /app/.env with the key; layer 2 deletes it (a whiteout) and adds a k8s Secret."""
    secret_yaml = f"kind: Secret\ndata:\n  OPENAI_API_KEY: {base64.b64encode(value.encode()).decode()}\n"
    first = tar_bytes({"app/.env": noisy(f"OPENAI_API_KEY={value}"), "app/main.py": b"print('hi')\n"})
    second = tar_bytes({"app/.wh..env": b"", "deploy/secret.yaml": secret_yaml.encode()})
    return first, second


def docker_save_legacy(value: str) -> tuple[bytes, list[str]]:
    """A ``docker save`` tarball as Docker before 25 wrote it: ``<id>/layer.tar`` + manifest.json."""
    first, second = two_layers(value)
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [digest(first), digest(second)]},
                         "config": {"Env": ["PATH=/usr/bin"]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    ids = [secrets.token_hex(32) for _ in range(2)]
    manifest = [{"Config": config_name, "RepoTags": ["app:latest"], "Layers": [f"{i}/layer.tar" for i in ids]}]
    members = {f"{ids[0]}/VERSION": b"1.0", f"{ids[0]}/layer.tar": first, f"{ids[1]}/layer.tar": second,
               config_name: config, "manifest.json": json.dumps(manifest).encode()}  # manifest last, as Docker does
    return tar_bytes(members), [digest(first), digest(second)]


def oci_layout(value: str, *, env_in_config: bool = False) -> tuple[dict[str, bytes], list[str]]:
    """The files of an OCI image layout: gzip'd layer blobs, a config, a manifest and an index."""
    blobs = [gzip.compress(layer) for layer in two_layers(value)]
    env = [f"OPENAI_API_KEY={value}"] if env_in_config else ["PATH=/usr/bin"]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": []}, "config": {"Env": env}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"digest": digest(config), "size": len(config)},
        "layers": [{"digest": digest(blob), "size": len(blob),
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"} for blob in blobs],
    }).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{"digest": digest(manifest), "size": len(manifest)}]})
    files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index.encode()}
    for blob in (*blobs, config, manifest):
        files[f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}"] = blob
    return files, [digest(blob) for blob in blobs] + [digest(config)]


def test_docker_save_two_layers(tmp_path, value):
    tarball, (first, second) = docker_save_legacy(value)
    (tmp_path / "image.tar").write_bytes(tarball)
    (tmp_path / "image.tar.gz").write_bytes(gzip.compress(tarball))
    findings, errors = scan(tmp_path, value)
    image, zipped = f"{tmp_path}/image.tar", f"{tmp_path}/image.tar.gz"
    assert locations(findings) == {
        (f"{image}!layer {first}!/app/.env", "raw"),
        (f"{image}!layer {second}!/deploy/secret.yaml", "base64"),
        (f"{zipped}!gzip!layer {first}!/app/.env", "raw"),
        (f"{zipped}!gzip!layer {second}!/deploy/secret.yaml", "base64"),
    }
    assert errors == []
    assert {finding.path for finding in findings} == {image, zipped}


def test_oci_layout_directory_and_tarball(tmp_path, value):
    files, (first, second, config) = oci_layout(value, env_in_config=True)
    layout = tmp_path / "layout"
    for name, data in files.items():
        (layout / name).parent.mkdir(parents=True, exist_ok=True)
        (layout / name).write_bytes(data)
    (tmp_path / "oci.tar").write_bytes(tar_bytes(files))
    findings, errors = scan(tmp_path, value)
    archive = f"{tmp_path}/oci.tar"
    assert locations(findings) == {
        (f"{layout}!layer {first}!/app/.env", "raw"),
        (f"{layout}!layer {second}!/deploy/secret.yaml", "base64"),
        (f"{layout}!config {config}", "raw"),  # ENV in the image config: the key is in every container
        (f"{archive}!layer {first}!/app/.env", "raw"),
        (f"{archive}!layer {second}!/deploy/secret.yaml", "base64"),
        (f"{archive}!config {config}", "raw"),
    }
    assert errors == []
    [blob] = [f.path for f in findings if f.location.endswith("/app/.env") and f.location.startswith(str(layout))]
    assert blob == str(layout / "blobs" / "sha256" / first.removeprefix("sha256:"))


def test_docker_save_since_docker_25_uses_blobs(tmp_path, value):
    files, (first, second, _) = oci_layout(value)
    layers = [name for name in files if name.startswith("blobs/") and digest(files[name]) in (first, second)]
    manifest = [{"Config": "blobs/sha256/" + "0" * 64, "RepoTags": ["app:1"], "Layers": sorted(layers)}]
    (tmp_path / "image.tar").write_bytes(tar_bytes(files | {"manifest.json": json.dumps(manifest).encode()}))
    findings, _ = scan(tmp_path, value)
    assert {f.location.split("!")[1] for f in findings} == {f"layer {first}", f"layer {second}"}


def test_a_tarball_that_is_no_image_keeps_member_names(tmp_path, value):
    (tmp_path / "plain.tar").write_bytes(tar_bytes({"layer.tar": tar_bytes({"app/.env": value.encode()})}))
    findings, _ = scan(tmp_path, value)
    assert locations(findings) == {(f"{tmp_path}/plain.tar!tar:layer.tar!tar:app/.env", "raw")}
