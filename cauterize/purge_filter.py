"""Rewrite a mirror with git-filter-repo's Python API in a child process, each copy of the key
replaced in its own encoding by ``cauterize.scrub``, the key never on a command line.

The parent (``run_filter``) writes a spec (mode 0600, ``O_EXCL|O_NOFOLLOW``, in a fresh 0700
directory under the purge's scratch) holding the key, the placeholders, the blob ids to rewrite
and to strip, and the revisions to rewrite; it runs ``python -m cauterize.purge_filter SPEC`` in
the mirror and always deletes the directory afterwards. The child reads the spec, deletes it at
once, and runs::

    git filter-repo --sensitive-data-removal --no-gc --force --quiet
                    [--strip-blobs-with-ids FILE] [--refs REV...]

with these callbacks (no ``--replace-text``: nothing else edits blob contents):

- file contents: a file change whose blob (by original id) is listed to rewrite gets a new blob
  holding ``scrub(data)`` (each listed blob read and scrubbed once); every other file change is
  passed on after one set lookup. This is filter-repo's ``file_info_callback``, not its
  ``blob_callback``: with no blob callback filter-repo runs ``git fast-export --no-data`` and
  reads only the listed blobs (``git cat-file``), where a blob callback makes every blob of the
  history travel through Python (about 7 times slower on a 640 MB history, for the same result);
- commit and tag messages: ``scrub`` with the placeholder;
- author, committer and tagger names and emails: ``scrub`` with the name placeholder (a key pasted
  as an email stays a valid ident: no spaces, ``<`` or ``>``);
- paths: ``scrub_name`` (``leak-<KEY>.txt`` and a directory named with the key are renamed, in
  additions and deletions alike: filter-repo applies it to every file change before the
  file-info callback sees it);
- ref names are left alone: the caller renames refs whose names hold the key.

An annotated tag of a listed blob gets the scrubbed blob (``tag_callback``). A lightweight tag of
a blob is a ref filter-repo never exports, so it keeps the old blob, as it does with
``--replace-text``: the caller's verification after the rewrite is what proves the key gone.

Flags: ``--force`` because the mirror is cauterize's own scratch clone (filter-repo's fresh-clone
check guards people's working repositories, and would stop a purge whose mirror was touched
first); ``--no-gc`` so the old objects stay for the push (see ``purge``); ``--refs`` limits the
rewrite to those revisions (``refs/heads/main ^<parent of the leak>``): commits outside keep their
ids and signatures (filter-repo passes ``--reference-excluded-parents`` to fast-export). Its
records are written as without ``--refs``: ``filter-repo/commit-map`` (only commits in the range;
a commit dropped because it became empty maps to 40 zeros), ``ref-map``, ``changed-refs``,
``first-changed-commits``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cauterize import faults
from cauterize.errors import PurgeError
from cauterize.locate.gitcmd import private_dir, run
from cauterize.scrub import Scrubber
from cauterize.secret import Secret

SPEC = "filter-spec.json"
STRIP_IDS = "strip-blob-ids.txt"
_IDENT_UNSAFE = b" <>\n\0/"


def run_filter(
    mirror: Path,
    secret: Secret,
    *,
    placeholder: bytes,
    name_placeholder: bytes,
    rewrite_blobs: set[str],
    strip_blobs: set[str],
    revs: list[str] | None,
    scratch: Path,
    label: str,
    redact: Callable[[str], str],
) -> None:
    """Rewrite ``mirror`` (a bare clone): blobs in ``rewrite_blobs`` scrubbed, those in
    ``strip_blobs`` removed, messages, idents and paths scrubbed; only ``revs`` if given (else
    every ref). ``PurgeError`` (its message redacted) if git-filter-repo fails."""
    key = secret.reveal().encode()
    _check_placeholders(key, placeholder, name_placeholder)
    if revs is not None and (not revs or any(not rev or rev.startswith("-") for rev in revs)):
        raise PurgeError(f"purge of {label}: the revisions to rewrite must be a non-empty list of refs and ^<commit>s")
    private = private_dir(scratch, "filter-")
    try:
        strip = None
        if strip_blobs:
            strip = private / STRIP_IDS
            write_private(strip, "".join(f"{oid}\n" for oid in sorted(strip_blobs)).encode())
        spec = private / SPEC
        write_private(spec, json.dumps({
            "key": secret.reveal(),
            "placeholder": base64.b64encode(placeholder).decode(),
            "name_placeholder": base64.b64encode(name_placeholder).decode(),
            "rewrite_blobs": sorted(rewrite_blobs),
            "strip_blobs": str(strip) if strip else None,
            "revs": revs,
        }).encode())
        faults.point("purge-expressions")  # the crash tests: killed while the key is on disk in clear
        run([sys.executable, "-m", "cauterize.purge_filter", spec], verb="git filter-repo", repo=label, cwd=mirror,
            error=PurgeError, redact=redact, message_lines=3)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by this user only (0600); refuse to reuse an existing file or a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _check_placeholders(key: bytes, placeholder: bytes, name_placeholder: bytes) -> None:
    if not placeholder or any(byte in placeholder for byte in b"\n\0"):
        raise PurgeError("the replacement marker must be one non-empty line")
    if not name_placeholder or any(byte in name_placeholder for byte in _IDENT_UNSAFE):
        raise PurgeError("the name placeholder must be non-empty, without spaces, '/', '<' or '>'")
    if key in placeholder or key in name_placeholder:
        raise PurgeError("the replacement marker must not contain the key")


# -- the child ----------------------------------------------------------------------------------------


def filter_options(revs: list[str] | None, strip_ids: str | None) -> list[str]:
    """The git-filter-repo options the child parses (``--refs`` last: it takes every word after it)."""
    options = ["--sensitive-data-removal", "--no-gc", "--force", "--quiet"]
    if strip_ids:
        options += ["--strip-blobs-with-ids", strip_ids]
    if revs:
        options += ["--refs", *revs]
    return options


def callbacks(
    key: bytes,
    placeholder: bytes,
    name_placeholder: bytes,
    rewrite_blobs: set[bytes],
    *,
    read_blob: Callable[[bytes], bytes],
    insert_blob: Callable[[bytes], int],
) -> dict:
    """The ``RepoFilter`` callbacks for one key. ``read_blob`` and ``insert_blob`` serve the rare
    annotated tag of a blob (file contents go through filter-repo's own file-info helpers)."""
    contents = Scrubber(key, placeholder)
    names = Scrubber(key, name_placeholder)
    rewrite = frozenset(rewrite_blobs)
    rewritten: dict[bytes, bytes | int] = {}

    def new_blob(oid: bytes, read: Callable[[bytes], bytes], insert: Callable[[bytes], int]) -> bytes | int:
        """The scrubbed blob of ``oid`` (a mark), made once; ``oid`` itself if nothing changed."""
        if oid not in rewritten:
            data, found = contents.scrub(read(oid))
            rewritten[oid] = insert(data) if found else oid
        return rewritten[oid]

    def file_info_callback(filename: bytes, mode: bytes, blob_id: bytes | int, value) -> tuple:
        if blob_id not in rewrite:  # the hot path: every file change of every commit comes here
            return filename, mode, blob_id
        return filename, mode, new_blob(blob_id, value.get_contents_by_identifier, value.insert_file_with_contents)

    def tag_callback(tag, _metadata) -> None:
        if tag.from_ref in rewrite:  # a tag of a blob, not of a commit
            tag.from_ref = new_blob(tag.from_ref, read_blob, insert_blob)

    def message_callback(message: bytes) -> bytes:
        return contents.scrub(message)[0]

    def ident_callback(value: bytes) -> bytes:
        return names.scrub(value)[0]

    def filename_callback(filename: bytes | None) -> bytes | None:
        return None if filename is None else names.scrub_name(filename)

    return {"file_info_callback": file_info_callback, "tag_callback": tag_callback,
            "message_callback": message_callback, "name_callback": ident_callback, "email_callback": ident_callback,
            "filename_callback": filename_callback}


def main(argv: list[str] | None = None) -> int:
    """``python -m cauterize.purge_filter SPEC``, in the repository to rewrite."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cauterize.purge_filter SPEC", file=sys.stderr)
        return 2
    path = Path(args[0])
    spec = json.loads(path.read_bytes())
    path.unlink()  # the key is on disk no longer than it takes to read it
    key = spec["key"].encode()
    placeholder = base64.b64decode(spec["placeholder"])
    safe = Scrubber(key, placeholder)
    try:
        import git_filter_repo as fr

        def insert_blob(data: bytes) -> int:
            blob = fr.Blob(data)
            repo_filter.insert(blob)  # bound below, before the run that calls this
            return blob.id

        def read_blob(oid: bytes) -> bytes:
            return subprocess.run(["git", "cat-file", "blob", oid.decode()], capture_output=True, check=True).stdout

        hooks = callbacks(key, placeholder, base64.b64decode(spec["name_placeholder"]),
                          {oid.encode() for oid in spec["rewrite_blobs"]}, read_blob=read_blob, insert_blob=insert_blob)
        options = fr.FilteringOptions.parse_args(filter_options(spec["revs"], spec["strip_blobs"]))
        repo_filter = fr.RepoFilter(options, **hooks)
        repo_filter.run()
    except SystemExit as exc:  # git-filter-repo reports its errors so
        if exc.code in (None, 0):
            return 0
        print(_safe(safe, str(exc.code)) if not isinstance(exc.code, int) else "git-filter-repo failed",
              file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001 - one line, scrubbed, instead of a traceback with data in it
        print(f"cauterize.purge_filter: {type(exc).__name__}: {_safe(safe, str(exc))}", file=sys.stderr)
        return 1
    return 0


def _safe(scrubber: Scrubber, text: str) -> str:
    return scrubber.scrub(text.encode("utf-8", "replace"))[0].decode("utf-8", "replace")


if __name__ == "__main__":
    sys.exit(main())
