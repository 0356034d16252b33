"""Scan a file tree for copies of the key: regular files, compressed files, archives, container
images and notebooks, each read once and never extracted to disk.

- Regular files are searched in chunks, whatever their size (every encoding, wrapped base64 too).
- gzip, bzip2 and xz files, tar archives (plain or compressed), zip archives (jar, whl) and any
  nesting of them are opened by their magic bytes, whatever their name (``archives.py``);
  ``location`` names the member: ``backup.tar.gz!gzip!tar:etc/app.env``, ``app.zip!zip:config/prod.env``.
- Container images saved as tarballs (``docker save``, OCI archives) or as OCI layout directories
  are searched layer by layer, and ``location`` names the layer digest and the file in the layer:
  ``image.tar!layer sha256:ab12…!/app/.env`` (``images.py``).
- Jupyter notebooks (``.ipynb``) name the cell and the part of it: ``nb.ipynb!cells[3].outputs``.

Every copy is a ``Finding(source="file", kind="file", path=<the file on disk>, location=...)``,
one per location and encoding, with ``first_seen`` None (a file's mtime says when it last
changed, not when the key arrived). Symlinks are not followed, special files (FIFOs, devices,
sockets) are not opened, and ``.git`` directories are left to the git source, which reads every
object of a repository. What cannot be searched, wholly or in part (an unreadable file or
directory, a corrupt archive, a decompression limit reached, see ``archives.FILE_LIMITS``), is
appended to ``errors``, one line each, and the scan goes on. Paths and member names are shown
with any copy of the key replaced by its fingerprint.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from cauterize.errors import InputError
from cauterize.locate.archives import FILE_LIMITS, Walk, walk_file
from cauterize.locate.findings import Finding
from cauterize.locate.images import layer_labels, relabel
from cauterize.locate.matcher import Budget, Limits, Matcher
from cauterize.secret import Secret

#: Notebooks up to this size are parsed to name the cell; larger ones are searched as plain files.
NOTEBOOK_BYTES = 256 << 20
#: Image metadata files (manifests, configs, indexes) read from an OCI layout directory.
_METADATA_BYTES = 4 << 20


def scan_tree(
    root: str | Path, secret: Secret, *, errors: list[str] | None = None, limits: Limits | None = None,
) -> list[Finding]:
    """Every copy of ``secret`` in the files under ``root`` (or in the file ``root``).

    ``errors`` (if given) receives one line per file or member that could not be searched in full;
    ``limits`` overrides ``archives.FILE_LIMITS`` (decompressed bytes per member and per file, nesting)."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"path {root}: no such file or directory")
    scan = _TreeScan(Matcher(secret), limits or FILE_LIMITS, errors if errors is not None else [])
    if root.is_dir():
        scan.tree(root)
    else:
        scan.file(root)
    return sorted(scan.findings.values(), key=lambda f: (f.location, f.encoding))


class _TreeScan:
    def __init__(self, matcher: Matcher, limits: Limits, errors: list[str]):
        self.matcher = matcher
        self.limits = limits
        self.errors = errors
        self.findings: dict[tuple[str, str], Finding] = {}

    def tree(self, root: Path) -> None:
        def unlistable(exc: OSError) -> None:
            self.error(f"{exc.filename}: cannot be listed ({exc.strerror or type(exc).__name__}); not searched")

        for directory, subdirs, files in os.walk(root, followlinks=False, onerror=unlistable):
            subdirs[:] = sorted(name for name in subdirs if name != ".git")
            here = Path(directory)
            if ("oci-layout" in files or "manifest.json" in files) and self.image_dir(here):
                subdirs[:] = []  # searched as an image, every file under it
                continue
            for name in sorted(files):
                self.file(here / name)

    def image_dir(self, layout: Path) -> bool:
        """Search an OCI layout (or extracted ``docker save``) directory layer by layer; False if it
        is not one. Files no manifest names are reported under their own path."""
        labels = layer_labels(lambda name: _small_file(layout / name))
        if not labels:
            return False
        for path in _regular_files(layout):
            walk = self.walk(path)
            for chain, encodings in walk.hits.items() if walk else ():
                where = relabel((f"tar:{path.relative_to(layout).as_posix()}", *chain), labels)
                shown = (str(path), *chain) if where[0].startswith("tar:") else (str(layout), *where)
                for encoding in encodings:
                    self.add(path, "!".join(shown), encoding)
        return True

    def file(self, path: Path) -> None:
        """Search one file (an image tarball layer by layer)."""
        walk = self.walk(path)
        if walk is None:
            return
        labels = layer_labels(walk.metadata.get) if walk.metadata else {}
        for chain, encodings in walk.hits.items():
            where = relabel(chain, labels) if labels else chain
            for encoding in encodings:
                self.add(path, "!".join((str(path), *where)), encoding)

    def walk(self, path: Path) -> Walk | None:
        """The hits of one regular file; None if it is not one (symlink, FIFO...) or cannot be read."""
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return None
            walk = Walk(self.matcher, Budget(self.limits), str(path), self.errors)
            if path.suffix == ".ipynb" and os.path.getsize(path) <= NOTEBOOK_BYTES:
                self.notebook(path, walk)
            else:
                walk_file(str(path), walk)
        except OSError as exc:
            self.error(f"{path}: cannot be read ({exc.strerror or type(exc).__name__}); not searched")
            return None
        return walk

    def notebook(self, path: Path, walk: Walk) -> None:
        """Name the cell (and its part: ``source``, ``outputs``...) of every copy in a notebook."""
        data = path.read_bytes()
        regions = _notebook_regions(data)
        if regions is None:  # not a notebook after all: a plain file
            walk_file(str(path), walk)
            return
        for match in self.matcher.find(data) + self.matcher.find_wrapped(data):
            inside = [(end - start, label) for label, start, end in regions if start <= match.offset < end]
            walk.hit((min(inside)[1],) if inside else (), match.encoding)

    def add(self, path: Path, location: str, encoding: str) -> None:
        location = self.matcher.redact(location)
        self.findings.setdefault((location, encoding), Finding(
            source="file", kind="file", path=self.matcher.redact(str(path)), location=location,
            encoding=encoding, first_seen=None,
        ))

    def error(self, text: str) -> None:
        self.errors.append(self.matcher.redact(text))


def _regular_files(root: Path) -> Iterator[Path]:
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs.sort()
        for name in sorted(files):
            yield Path(directory) / name


def _small_file(path: Path) -> bytes | None:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode) or os.path.getsize(path) > _METADATA_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


def _notebook_regions(data: bytes) -> list[tuple[str, int, int]] | None:
    """``(label, start, end)`` byte ranges of a notebook's top-level fields (``metadata``) and of
    each field of each cell (``cells[3].outputs``); None if ``data`` is no nbformat-4 notebook."""
    try:
        text = data.decode("utf-8")
        fields = list(_object_fields(text, _skip(text, 0)))
    except (ValueError, IndexError):  # UnicodeDecodeError and JSONDecodeError included
        return None
    cells = [(start, end) for key, start, end in fields if key == "cells"]
    if not cells or text[cells[0][0]] != "[":
        return None
    spans = [(key, start, end) for key, start, end in fields]
    try:
        for number, (cell_start, _) in enumerate(_array_items(text, cells[0][0])):
            if text[cell_start] == "{":
                spans.extend((f"cells[{number}].{key}", start, end) for key, start, end in _object_fields(text, cell_start))
    except (ValueError, IndexError):
        return None
    return _to_bytes(text, spans)


_DECODER = json.JSONDecoder()


def _skip(text: str, at: int) -> int:
    while text[at] in " \t\r\n":
        at += 1
    return at


def _object_fields(text: str, at: int) -> Iterator[tuple[str, int, int]]:
    """``(key, value start, value end)`` of each field of the JSON object at ``text[at]``."""
    if text[at] != "{":
        raise ValueError("not an object")
    at = _skip(text, at + 1)
    if text[at] == "}":
        return
    while True:
        key, at = _DECODER.raw_decode(text, at)
        at = _skip(text, at)
        if text[at] != ":":
            raise ValueError("no colon")
        start = _skip(text, at + 1)
        _, end = _DECODER.raw_decode(text, start)
        yield str(key), start, end
        at = _skip(text, end)
        if text[at] == "}":
            return
        if text[at] != ",":
            raise ValueError("no comma")
        at = _skip(text, at + 1)


def _array_items(text: str, at: int) -> Iterator[tuple[int, int]]:
    at = _skip(text, at + 1)
    if text[at] == "]":
        return
    while True:
        _, end = _DECODER.raw_decode(text, at)
        yield at, end
        at = _skip(text, end)
        if text[at] == "]":
            return
        if text[at] != ",":
            raise ValueError("no comma")
        at = _skip(text, at + 1)


def _to_bytes(text: str, spans: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Character offsets into ``text`` as byte offsets into its UTF-8 encoding."""
    if text.isascii():
        return spans
    points = sorted({offset for _, start, end in spans for offset in (start, end)})
    byte_at, previous, position = {}, 0, 0
    for point in points:
        position += len(text[previous:point].encode())
        byte_at[point], previous = position, point
    return [(label, byte_at[start], byte_at[end]) for label, start, end in spans]
