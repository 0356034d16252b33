"""Container images saved as tarballs or OCI layout directories: name layers by their digest.

Three shapes are recognised, as tarballs (``docker save``, ``skopeo copy oci-archive:``) or as
directories (``skopeo copy oci:``, an extracted ``docker save``):

- ``docker save`` before Docker 25: ``manifest.json`` lists ``Config`` (``<hex>.json``) and
  ``Layers`` (``<id>/layer.tar``); a layer's digest is the config's ``rootfs.diff_ids`` entry at
  the same index (the sha256 of the uncompressed layer tar, as ``docker inspect`` shows it);
- ``docker save`` since Docker 25: the same ``manifest.json``, with layers at ``blobs/sha256/<hex>``;
- OCI image layout: ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>``, where the index
  points at manifests (or nested indexes) that name the config and the (usually gzip'd) layers.

The archive walker searches every layer like any nested tar; this module only turns the chain
``("tar:blobs/sha256/ab12…", "gzip", "tar:app/.env")`` into ``("layer sha256:ab12…", "/app/.env")``.
Layers are searched one by one, so a file deleted by a later layer (a whiteout) is still found in
the layer that added it: it is still in the image, and in every registry that serves it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_BLOB = re.compile(r"blobs/([a-z0-9]+)/([0-9a-f]{32,128})")
_HEX_JSON = re.compile(r"([0-9a-f]{64})\.json")
_COMPRESSIONS = ("gzip", "bzip2", "xz")
Reader = Callable[[str], bytes | None]


def layer_labels(read: Reader) -> dict[str, str]:
    """Member path to label (``layer sha256:…``, ``config sha256:…``, ``manifest sha256:…``) for
    the image whose small files ``read(path)`` returns (``None`` when absent); ``{}`` if no image."""
    labels: dict[str, str] = {}
    manifest = _json(read("manifest.json"))
    if isinstance(manifest, list):
        for image in manifest:
            if isinstance(image, dict):
                _docker_image(image, read, labels)
    index = _json(read("index.json"))
    if isinstance(index, dict) and (read("oci-layout") is not None or labels):
        _oci_index(index, read, labels, depth=0)
    return labels


def relabel(chain: tuple[str, ...], labels: dict[str, str]) -> tuple[str, ...]:
    """A walker chain with the image's member named by its label, and a layer's own tar member
    shown as an absolute path. Chains outside an image come back unchanged."""
    first = 1 if chain[:1] and chain[0] in _COMPRESSIONS else 0  # a compressed image tarball
    if len(chain) <= first or not chain[first].startswith("tar:"):
        return chain
    name = _norm(chain[first][4:])
    rest = chain[first + 1:]
    label = labels.get(name)
    blob = _BLOB.fullmatch(name)
    if label is None and blob and labels and rest and (rest[0] in _COMPRESSIONS or rest[0].startswith("tar:")):
        label = f"layer {blob.group(1)}:{blob.group(2)}"  # a layer no manifest names (a second image)
    if label is None:
        return chain
    if label.startswith("layer "):
        if rest[:1] and rest[0] in _COMPRESSIONS:
            rest = rest[1:]
        if rest[:1] and rest[0].startswith("tar:"):
            rest = ("/" + _norm(rest[0][4:]), *rest[1:])
    return (*chain[:first], label, *rest)


def _docker_image(image: dict[str, Any], read: Reader, labels: dict[str, str]) -> None:
    config_name = image.get("Config")
    diff_ids: list[Any] = []
    if isinstance(config_name, str):
        labels[_norm(config_name)] = f"config {_digest_of(config_name) or config_name}"
        config = _json(read(_norm(config_name)))
        if isinstance(config, dict):
            rootfs = config.get("rootfs")
            diff_ids = rootfs.get("diff_ids", []) if isinstance(rootfs, dict) else []
    layers = image.get("Layers")
    for position, layer in enumerate(layers if isinstance(layers, list) else []):
        if not isinstance(layer, str):
            continue
        digest = _digest_of(layer)
        if digest is None and position < len(diff_ids) and isinstance(diff_ids[position], str):
            digest = diff_ids[position]
        labels[_norm(layer)] = f"layer {digest or layer}"


def _oci_index(index: dict[str, Any], read: Reader, labels: dict[str, str], depth: int) -> None:
    for descriptor in _descriptors(index.get("manifests")):
        path = _blob_path(descriptor)
        document = _json(read(path)) if path and depth < 4 else None
        if not isinstance(document, dict):
            continue
        if "manifests" in document:
            labels.setdefault(path, f"index {descriptor['digest']}")
            _oci_index(document, read, labels, depth + 1)
            continue
        labels.setdefault(path, f"manifest {descriptor['digest']}")
        config = document.get("config")
        for kind, items in (("config", [config]), ("layer", document.get("layers"))):
            for item in _descriptors(items):
                target = _blob_path(item)
                if target:
                    labels.setdefault(target, f"{kind} {item['digest']}")


def _descriptors(items: Any) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict) and isinstance(item.get("digest"), str)]


def _blob_path(descriptor: dict[str, Any]) -> str | None:
    algorithm, _, hexdigest = descriptor["digest"].partition(":")
    path = f"blobs/{algorithm}/{hexdigest}"
    return path if _BLOB.fullmatch(path) else None


def _digest_of(name: str) -> str | None:
    """``sha256:<hex>`` from a blob path or a ``<hex>.json`` config name."""
    name = _norm(name)
    blob = _BLOB.fullmatch(name)
    if blob:
        return f"{blob.group(1)}:{blob.group(2)}"
    config = _HEX_JSON.fullmatch(name.rsplit("/", 1)[-1])
    return f"sha256:{config.group(1)}" if config else None


def _json(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:  # UnicodeDecodeError included
        return None


def _norm(name: str) -> str:
    return name.removeprefix("./").lstrip("/")
