"""Purge a key planted the way leaks happen on top of a real public history: cauterize side by side
with a mirror clone plus plain git-filter-repo, and what each one changed.

    .venv/bin/python bench/purge_real.py --source /work/.mirror/psf+requests/repo [--runs 3]
                                         [--workdir /tmp/cauterize-bench-real] [--commits 30]

``--source`` is a bare repository (``fetch github:psf/requests`` gives one: 11k commits, 162 tags,
4k ``refs/pull/*``). Its copy is the pristine remote; on it, ``--commits`` new commits on the
default branch carry the key: a settings file (then edited), a Kubernetes Secret holding it in
base64, a file named with it, a commit message, a branch and an annotated tag named with it.
Every timed run works on a fresh copy of that remote (the copy is not timed).

Contenders, child processes, interleaved run by run:
  * cauterize: ``cauterize purge --key-env K --repo REMOTE --push --yes --json``: mirror clone, search,
    plan, rewrite of the affected range only, verification, push, verification of a fresh clone.
  * floor: ``git clone --mirror`` then ``git filter-repo --replace-text FILE`` (pushes and checks nothing).

Reports the medians and ratios, cauterize's time per step, and what changed: commits rewritten,
refs whose value changed, refs created or deleted, signed commits left signed, and the copies a
fresh clone of the remote still holds afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import locate as synthetic  # the key shape
import purge as bench  # the contenders, shared with bench/purge.py


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    env = {**bench.env_with_key(""), "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.invalid",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.invalid"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, input=input, capture_output=True, check=True)
    return done.stdout.decode("utf-8", "replace").strip()


class _Objects:
    """Read objects through one ``git cat-file --batch``; write loose ones directly."""

    def __init__(self, repo: Path):
        self.repo = repo
        self.proc = subprocess.Popen(["git", "cat-file", "--batch"], cwd=repo, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)

    def read(self, oid: str) -> tuple[str, bytes]:
        self.proc.stdin.write(oid.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        data = self.proc.stdout.read(int(header[2]))
        self.proc.stdout.read(1)
        return header[1].decode(), data

    def write(self, kind: str, data: bytes) -> str:
        raw = b"%s %d\0" % (kind.encode(), len(data)) + data
        oid = hashlib.sha1(raw).hexdigest()
        path = self.repo / "objects" / oid[:2] / oid[2:]
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(zlib.compress(raw))
        return oid


def complete(repo: Path) -> None:
    """A snapshot may lack its largest blobs (``fetch`` says so), and then no clone of it works:
    each missing blob is replaced by a placeholder, and the trees, commits and tags above it are
    rewritten (their other headers, signatures included, kept as they are)."""
    fsck = subprocess.run(["git", "fsck", "--connectivity-only"], cwd=repo, capture_output=True, check=False)
    missing = {line.split()[2] for line in fsck.stdout.decode().splitlines() if line.startswith("missing blob")}
    if not missing:
        return
    store = _Objects(repo)
    placeholder = store.write("blob", b"(absent from the snapshot this benchmark was built from)\n")
    trees: dict[str, str] = {}

    def fix_tree(oid: str) -> str:
        if oid not in trees:
            _, data = store.read(oid)
            out, at, changed = [], 0, False
            while at < len(data):
                nul = data.index(b"\0", at)
                mode, name = data[at:nul].split(b" ", 1)
                entry = data[nul + 1:nul + 21].hex()
                if mode == b"40000":
                    fixed = fix_tree(entry)
                elif entry in missing:
                    fixed = placeholder
                else:
                    fixed = entry
                changed |= fixed != entry
                out.append(mode + b" " + name + b"\0" + bytes.fromhex(fixed))
                at = nul + 21
            trees[oid] = store.write("tree", b"".join(out)) if changed else oid
        return trees[oid]

    commits: dict[str, str] = {}
    for oid in git(repo, "rev-list", "--all", "--topo-order", "--reverse").split():
        _, data = store.read(oid)
        header, _, message = data.partition(b"\n\n")
        lines = []
        for line in header.split(b"\n"):
            if line.startswith(b"tree "):
                line = b"tree " + fix_tree(line[5:].decode()).encode()
            elif line.startswith(b"parent "):
                line = b"parent " + commits[line[7:].decode()].encode()
            lines.append(line)
        rebuilt = b"\n".join(lines) + b"\n\n" + message
        commits[oid] = oid if rebuilt == data else store.write("commit", rebuilt)
    updates = []
    for line in git(repo, "for-each-ref", "--format=%(objectname) %(objecttype) %(refname)").splitlines():
        oid, kind, name = line.split(" ", 2)
        new = commits.get(oid, oid)
        if kind == "tag":
            _, data = store.read(oid)
            target = data.split(b"\n", 1)[0][7:].decode()
            if commits.get(target, target) != target:
                new = store.write("tag", data.replace(target.encode(), commits[target].encode(), 1))
        if new != oid:
            updates.append(f"update {name} {new} {oid}\n")
    store.proc.stdin.close()
    store.proc.wait()
    git(repo, "update-ref", "--stdin", input="".join(updates).encode())
    git(repo, "repack", "-a", "-d", "-q")


def plant(source: Path, workdir: Path, commits: int) -> tuple[Path, str]:
    """The pristine remote: a copy of ``source`` with the leak on top of its default branch."""
    pristine = workdir / "pristine.git"
    meta = workdir / "planted.json"
    if meta.exists():
        return pristine, json.loads(meta.read_text())["key"]
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    workdir.chmod(0o700)
    subprocess.run(["cp", "-a", str(source), str(pristine)], check=True)
    complete(pristine)
    key = synthetic.make_key()
    work = workdir / "work"
    git(workdir, "clone", "-q", pristine.as_uri(), str(work))
    branch = git(work, "rev-parse", "--abbrev-ref", "HEAD")
    secret_b64 = __import__("base64").b64encode(f"OPENAI_API_KEY={key}\n".encode()).decode()

    def change(path: str, text: str, message: str) -> None:
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        git(work, "add", path)
        git(work, "commit", "-q", "-m", message)

    change("deploy/settings.py", f"OPENAI_API_KEY = '{key}'\n", "add deploy settings")
    change("deploy/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\ndata:\n"
           f"  env: {secret_b64}\n", "k8s secret")
    change(f"deploy/leak-{key}.txt", "scratch notes\n", "notes")
    for number in range(max(0, commits - 5)):
        change("deploy/CHANGES.txt", "".join(f"change {n}\n" for n in range(number + 1)), f"change {number}")
    change("deploy/debug.txt", "tried it\n", f"debug: tried {key}")
    change("deploy/settings.py", "OPENAI_API_KEY = os.environ['OPENAI_API_KEY']\n", "read the key from the env")
    git(work, "branch", f"backup-{key}")
    git(work, "tag", "-a", f"t-{key}", "-m", "a tag named with the key")
    git(work, "push", "-q", "origin", branch, f"backup-{key}", f"refs/tags/t-{key}")
    shutil.rmtree(work)
    meta.write_text(json.dumps({"key": key}))
    meta.chmod(0o600)
    return pristine, key


def refs(repo: Path) -> dict[str, str]:
    return dict(line.split(" ", 1)[::-1] for line in git(repo, "for-each-ref", "--format=%(objectname) %(refname)")
                .splitlines())


def signed_commits(repo: Path) -> set[str]:
    ids = git(repo, "rev-list", "--all")
    raw = subprocess.run(["git", "cat-file", "--batch"], cwd=repo, input=(ids + "\n").encode(), capture_output=True,
                         check=True).stdout
    signed, at = set(), 0
    while at < len(raw):
        end = raw.index(b"\n", at)
        oid, _, size = raw[at:end].split()
        body = raw[end + 1:end + 1 + int(size)]
        if b"\ngpgsig" in body.partition(b"\n\n")[0]:
            signed.add(oid.decode())
        at = end + 1 + int(size) + 1
    return signed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--commits", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cauterize-bench-real"))
    args = parser.parse_args()
    base = args.workdir / args.source.parent.name
    pristine, key = plant(args.source.resolve(), base, args.commits)
    remote, scratch = base / "remote.git", base / "scratch"
    scratch.mkdir(exist_ok=True)
    cauterize, floor = bench.Timings(), bench.Timings()
    before = refs(pristine)
    signed_before = signed_commits(pristine)
    result: dict = {}
    for _ in range(args.runs):
        bench.run_cauterize(bench.fresh_remote(pristine, remote), key, cauterize)
        after = refs(remote)
        signed_after = signed_commits(remote)
        result = {"changed": sum(1 for ref in before if after.get(ref) not in (None, before[ref])),
                  "deleted": sorted(ref.replace(key, "<KEY>") for ref in before.keys() - after.keys()),
                  "created": sorted(after.keys() - before.keys()),
                  "signed kept": len(signed_before & signed_after), "signed before": len(signed_before)}
        bench.run_filter_repo(bench.fresh_remote(pristine, remote), key, scratch, floor)
    shutil.rmtree(remote, ignore_errors=True)
    report(args, before, cauterize, floor, result)


def report(args, before: dict, cauterize: bench.Timings, floor: bench.Timings, changes: dict) -> None:
    ours, theirs = statistics.median(cauterize.runs), statistics.median(floor.runs)
    rewrite = statistics.median(floor.parts["git filter-repo --replace-text"])
    print(f"{args.source.parent.name}: {len(before)} refs; leak in the last {args.commits} commits; "
          f"median of {args.runs} interleaved runs ({time.strftime('%Y-%m-%d')})")
    print(f"  cauterize purge --push: {ours:.2f} s ({min(cauterize.runs):.2f}-{max(cauterize.runs):.2f})")
    print(f"  floor (clone + filter-repo): {theirs:.2f} s (filter-repo alone {rewrite:.2f} s)")
    print(f"  ratio: {ours / theirs:.2f}x the floor, {ours / rewrite:.2f}x filter-repo alone")
    for step, seconds in cauterize.parts.items():
        print(f"    {step}: {statistics.median(seconds):.2f} s")
    print(f"  cauterize changed {changes['changed']} ref values, deleted {changes['deleted']}, created "
          f"{[name for name in changes['created']]}; signed commits kept: {changes['signed kept']} of "
          f"{changes['signed before']}; left in a fresh clone: cauterize {cauterize.left}, floor {floor.left}")


if __name__ == "__main__":
    main()
