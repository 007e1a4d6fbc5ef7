"""Lab packs: `labs fetch SOURCE` installs labs from a folder, a git remote or an https tarball.

A pack is a pack root (`labs/<id>/...`, optional `solutions/<id>/...`) and, when built by
`labs pack`, a manifest `gaplabs-pack.json` with the sha256 of every file. Installed packs live in

    <home>/packs/<name>/          home = $GAPLABS_HOME, or ~/.gaplabs (grader.registry.gaplabs_home)

where grader.registry finds them and `labs list` shows them as `pack:<name>`.

What fetch refuses, each with its own message: a tarball without --sha256 or with another hash,
a file the manifest does not list or lists with another hash, absolute paths, `..` in a path,
symlinks or hardlinks that leave the pack, device files, fifos and sockets, archives larger than
the limits (compressed and unpacked), and a lab.yaml that does not validate. Tarballs must carry
a manifest; a folder or a git remote without one is accepted with a warning (you chose it).

How it installs: everything is copied, checked file by file, into a staging folder under
`<home>/.incoming/` (same filesystem), then renamed to `<home>/packs/<name>/`. Refetching a name
renames the old copy away first, so for an instant neither exists; a reader never sees half a pack.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from grader.errors import GaplabsError, LabFormatError
from grader.labspec import LAB_ID, load_lab_spec
from grader.packing import IGNORED_PARTS, IGNORED_SUFFIXES, MANIFEST_NAME, PACK_FORMAT, PACK_FORMAT_VERSION, sha256_of
from grader.registry import bundled_root, pack_roots

# Caches an editor or interpreter leaves in a pack folder; `labs pack` leaves them out, so do we.
SKIPPED_NAMES = set(IGNORED_PARTS)
GIT_TIMEOUT_S = 300
DOWNLOAD_TIMEOUT_S = 60


class PackError(GaplabsError):
    """A pack cannot be fetched or installed: bad source, hash, manifest, path or size."""


@dataclass(frozen=True)
class PackLimits:
    max_archive_bytes: int = 200 * 2**20  # a download or local tarball, compressed
    max_unpacked_bytes: int = 200 * 2**20  # all files of the pack together
    max_files: int = 10_000  # a pack of labs has tens of files; a million tiny ones is an attack


def _warn_to_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------- what SOURCE is


def _is_git_dir(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def classify_source(source: str) -> tuple[str, str]:
    """(kind, location): kind is "http" (a tarball URL), "git" (a clone URL), "dir" or "archive" (local)."""
    if source.startswith("git+"):
        return "git", source[len("git+"):]
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        return ("git", source) if parsed.path.rstrip("/").endswith(".git") else ("http", source)
    if parsed.scheme in ("ssh", "git") or re.match(r"^[\w.-]+@[\w.-]+:", source):
        return "git", source
    if parsed.scheme == "file":
        source = urllib.parse.unquote(parsed.path)
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "labs").is_dir():
            return "dir", str(path)
        if _is_git_dir(path) or _is_git_dir(path / ".git"):
            return "git", path.resolve().as_uri()  # file:// so --depth 1 applies and nothing is hardlinked
        raise PackError("this folder is not a lab pack: it has no labs/ folder", where=str(path),
                        fix="point at the pack root (the folder holding labs/<id>/lab.yaml)")
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return "archive", str(path)
    if source.endswith(".git"):
        return "git", source
    raise PackError(f"cannot tell what {source!r} is", where="SOURCE",
                    fix="give a pack folder, a git remote (…/name.git or git+URL), "
                        "an https URL of a .tar.gz with --sha256, or a local .tar.gz")


def _redact(location: str) -> str:
    """A URL without its user:token part, for messages that end up in CI logs."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme and "@" in parsed.netloc:
        return parsed._replace(netloc="***@" + parsed.netloc.rsplit("@", 1)[1]).geturl()
    return location


def _default_name(kind: str, location: str) -> str:
    tail = urllib.parse.urlparse(location).path if kind in ("http", "git") else location
    base = PurePosixPath(tail.replace("\\", "/").rstrip("/")).name or "pack"
    for suffix in (".tar.gz", ".tgz", ".tar", ".git"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")


# ---------------------------------------------------------------- getting the bytes


def _check_sha256(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise PackError(f"--sha256 {text!r} is not a sha256 (64 hex digits)", where="--sha256",
                        fix="copy the hash from the pack's release page, or run `sha256sum pack.tar.gz`")
    return text


def _download(url: str, dest: Path, limits: PackLimits) -> None:
    """Stream `url` into `dest`, stopping as soon as it passes the size limit."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310 (scheme checked)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_archive_bytes:
                raise _too_big(_redact(url), int(declared), limits.max_archive_bytes, "download")
            received = 0
            with open(dest, "wb") as handle:
                while chunk := response.read(1 << 16):
                    received += len(chunk)
                    if received > limits.max_archive_bytes:
                        raise _too_big(_redact(url), received, limits.max_archive_bytes, "download")
                    handle.write(chunk)
    except urllib.error.HTTPError as exc:
        raise PackError(f"the server answered {exc.code} {exc.reason}", where=_redact(url),
                        fix="check the URL (a release asset, not its HTML page)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PackError(f"cannot download the pack: {reason}", where=_redact(url),
                        fix="check the URL and your network, or download it and fetch the local file") from None


def _too_big(where: str, size: int, limit: int, what: str) -> PackError:
    return PackError(f"the {what} is {size / 2**20:.1f} MiB or more, over the {limit / 2**20:.0f} MiB limit",
                     where=where, fix="a lab pack holds notebooks and small data; ship large data separately")


def _clone(url: str, dest: Path) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # a private repo must fail, not hang on a prompt
    command = ["git", "clone", "--depth", "1", "--quiet", "--no-tags", "--", url, str(dest)]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except FileNotFoundError:
        raise PackError("git is not installed", where=_redact(url), fix="install git, or fetch a .tar.gz of the pack") from None
    except subprocess.TimeoutExpired:
        raise PackError(f"git clone took more than {GIT_TIMEOUT_S} s", where=_redact(url), fix="check the remote") from None
    if done.returncode != 0:
        detail = " ".join(done.stderr.strip().splitlines()[-2:]).replace(url, _redact(url))
        raise PackError(f"git clone failed: {detail}", where=_redact(url),
                        fix="check the URL and that you can read the repository (`git ls-remote URL`)")


# ---------------------------------------------------------------- archives


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why this archive member must not be unpacked, in words, or None."""
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "has '..' in its path (path traversal)"
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device file or fifo"
    if member.issym() or member.islnk():
        link = member.linkname
        if link.startswith("/") or re.match(r"^[A-Za-z]:", link):
            return f"is a link to the absolute path {link!r}"
        # a symlink is relative to its folder, a hardlink to the archive root
        start = PurePosixPath(name).parent if member.issym() else PurePosixPath()
        target = os.path.normpath(str(start / link))
        if target == ".." or target.startswith("../"):
            return f"is a link to {link!r}, outside the pack"
    return None


def _unpack(archive: Path, dest: Path, limits: PackLimits) -> None:
    if not hasattr(tarfile, "data_filter"):
        raise PackError("this Python cannot unpack archives safely (no tarfile data filter)", where=str(archive),
                        fix="use Python 3.10.12+, 3.11.4+ or 3.12+, or fetch the pack from a folder or git")
    size = archive.stat().st_size
    if size > limits.max_archive_bytes:
        raise _too_big(str(archive), size, limits.max_archive_bytes, "archive")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members, total = [], 0
            for member in tar:  # streamed: a tar bomb stops at the limit instead of filling the disk
                problem = _member_problem(member)
                if problem:
                    raise PackError(f"the archive member {member.name!r} {problem}", where=str(archive),
                                    fix="rebuild the pack with `labs pack`; do not install archives you did not expect")
                total += max(member.size, 0)
                if total > limits.max_unpacked_bytes:
                    raise _too_big(str(archive), total, limits.max_unpacked_bytes, "unpacked pack")
                if len(members) >= limits.max_files:
                    raise PackError(f"the archive has more than {limits.max_files} files", where=str(archive),
                                    fix="a lab pack holds tens of files; check that this is the right archive")
                members.append(member)
            # The "data" filter is the second line of defence: it also drops setuid bits and odd owners.
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise PackError(f"unsafe archive member: {exc}", where=str(archive), fix="rebuild the pack with `labs pack`") from None
    except KeyError as exc:  # tarfile's way of saying a hardlink names a member that is not there
        raise PackError(f"the archive has a hardlink to a missing member: {exc.args[0] if exc.args else exc}",
                        where=str(archive), fix="rebuild the pack with `labs pack`") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise PackError(f"not a readable .tar.gz: {exc}", where=str(archive),
                        fix="check that the URL or file is the pack archive and that the download completed") from None


def _pack_root(tree: Path, where: str) -> Path:
    """The folder holding labs/: the tree itself or its single top-level folder (GitHub-style tarballs)."""
    if (tree / "labs").is_dir():
        return tree
    entries = [entry for entry in tree.iterdir() if entry.name not in SKIPPED_NAMES]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink() and (entries[0] / "labs").is_dir():
        return entries[0]
    raise PackError("the pack has no labs/ folder", where=where,
                    fix="a pack root holds labs/<id>/lab.yaml (and optionally solutions/<id>/)")


# ---------------------------------------------------------------- copying with checks


@dataclass
class _Tally:
    files: int = 0
    bytes: int = 0


def _copy_checked(source_root: Path, dest_root: Path, limits: PackLimits, where: str) -> None:
    """Copy a pack tree, refusing what must not be installed; hardlinks become independent files.

    A hardlink is only seen as a link count above one, so "leaves the pack" is checked by counting:
    every name of an inode must be inside the pack, otherwise some name of it lives elsewhere.
    """
    real_root = os.path.realpath(source_root)
    inodes: dict[tuple[int, int], list] = {}
    tally = _Tally()

    def refuse(relative: str, problem: str) -> PackError:
        return PackError(f"{relative!r} {problem}", where=where,
                         fix="remove it from the pack; a pack holds plain files and folders only")

    def walk(source: Path, dest: Path, relative: PurePosixPath) -> None:
        dest.mkdir(exist_ok=True)
        for entry in sorted(os.scandir(source), key=lambda e: e.name):
            rel = relative / entry.name
            if (entry.name in SKIPPED_NAMES or os.path.splitext(entry.name)[1] in IGNORED_SUFFIXES
                    or (not relative.parts and entry.name == ".git")):
                continue
            info = entry.stat(follow_symlinks=False)
            target = dest / entry.name
            if stat.S_ISLNK(info.st_mode):
                link = os.readlink(entry.path)
                if os.path.isabs(link):
                    raise refuse(str(rel), f"is a symlink to the absolute path {link!r}")
                # Inside both as written (so the copy points inside the copy) and once resolved.
                lexical = os.path.normpath(os.path.join(str(relative), link))
                resolved = os.path.realpath(entry.path)
                if lexical == ".." or lexical.startswith("../") or os.path.commonpath([real_root, resolved]) != real_root:
                    raise refuse(str(rel), f"is a symlink to {link!r}, which leaves the pack")
                os.symlink(link, target)
            elif stat.S_ISDIR(info.st_mode):
                walk(Path(entry.path), target, rel)
            elif stat.S_ISREG(info.st_mode):
                tally.files += 1
                tally.bytes += info.st_size
                if tally.files > limits.max_files:
                    raise PackError(f"the pack has more than {limits.max_files} files", where=where,
                                    fix="a lab pack holds tens of files; check that this is the right folder")
                if tally.bytes > limits.max_unpacked_bytes:
                    raise _too_big(where, tally.bytes, limits.max_unpacked_bytes, "pack")
                if info.st_nlink > 1:
                    inodes.setdefault((info.st_dev, info.st_ino), [info.st_nlink, 0, str(rel)])[1] += 1
                shutil.copyfile(entry.path, target)
                os.chmod(target, 0o755 if info.st_mode & stat.S_IXUSR else 0o644)
            else:
                raise refuse(str(rel), "is a device file, fifo or socket")

    walk(source_root, dest_root, PurePosixPath())
    for links, seen, relative in inodes.values():
        if seen < links:
            raise refuse(relative, f"is a hardlink with {links - seen} more name(s) outside the pack")


# ---------------------------------------------------------------- manifest


def _pack_files(root: Path) -> dict[str, Path]:
    """Every regular file and symlink of an installed-to-be tree, by its POSIX path relative to root."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or path.is_file():
            found[path.relative_to(root).as_posix()] = path
    return found


def verify_manifest(root: Path, *, where: str) -> dict:
    """Check gaplabs-pack.json against the tree: same file set, same sha256 for each file."""
    manifest_path = root / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackError(f"{MANIFEST_NAME} is not valid JSON ({exc})", where=where,
                        fix="rebuild the pack with `labs pack`") from None
    if not isinstance(manifest, dict) or (manifest.get("format"), manifest.get("format_version")) != (
            PACK_FORMAT, PACK_FORMAT_VERSION):
        found = (manifest.get("format"), manifest.get("format_version")) if isinstance(manifest, dict) else manifest
        raise PackError(f"{MANIFEST_NAME} has format {found!r}, this gaplabs reads "
                        f"({PACK_FORMAT!r}, {PACK_FORMAT_VERSION})", where=where,
                        fix="upgrade gaplabs (`pip install -U gaplabs`) or rebuild the pack with this version's `labs pack`")
    listed = _manifest_files(manifest, where)
    present = {name: path for name, path in _pack_files(root).items() if name != MANIFEST_NAME}
    for name in sorted(set(listed) - set(present)):
        raise PackError(f"the manifest lists {name!r} but the pack has no such file", where=where,
                        fix="the pack is incomplete: download it again or rebuild it with `labs pack`")
    for name in sorted(set(present) - set(listed)):
        raise PackError(f"{name!r} is in the pack but not in its manifest", where=where,
                        fix="a file was added after packing: rebuild the pack with `labs pack`")
    for name, expected in sorted(listed.items()):
        path = present[name]
        if path.is_symlink():
            raise PackError(f"{name!r} is a symlink; a manifest lists plain files", where=where,
                            fix="rebuild the pack with `labs pack`")
        got = sha256_of(path)
        if got != expected:
            raise PackError(f"{name!r} does not match the manifest: expected sha256 {expected[:12]}…, got {got[:12]}…",
                            where=where, fix="the file changed after packing: download it again or rebuild the pack")
    return manifest


def _manifest_files(manifest: object, where: str) -> dict[str, str]:
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list):
        raise PackError(f"{MANIFEST_NAME} has no 'files' list", where=where, fix="rebuild the pack with `labs pack`")
    listed = {}
    for entry in files:
        name = entry.get("path") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise PackError(f"{MANIFEST_NAME} has a malformed entry: {entry!r}", where=where,
                            fix="each file needs a 'path' and a 'sha256' (64 lowercase hex digits)")
        if name.startswith("/") or ".." in PurePosixPath(name).parts:
            raise PackError(f"{MANIFEST_NAME} lists the unsafe path {name!r}", where=where,
                            fix="manifest paths are relative to the pack root, without '..'")
        listed[name] = digest
    return listed


# ---------------------------------------------------------------- labs


def _validate_labs(root: Path, where: str) -> list[str]:
    labs_dir = root / "labs"
    ids = []
    for lab_dir in sorted(labs_dir.iterdir()):
        if not lab_dir.is_dir():
            continue
        try:
            load_lab_spec(lab_dir / "lab.yaml")
        except LabFormatError as exc:
            raise PackError(f"lab {lab_dir.name!r} in the pack is invalid: {exc.what}",
                            where=f"{where}: labs/{lab_dir.name}/lab.yaml", fix=exc.fix) from None
        ids.append(lab_dir.name)
    if not ids:
        raise PackError("the pack's labs/ folder holds no labs", where=where,
                        fix="a pack root holds labs/<id>/lab.yaml for each lab")
    return ids


def _shadowing(ids: list[str], home: Path, name: str) -> list[str]:
    """Warnings for lab ids that another root already provides (the first root in search order wins)."""
    other_roots = [(root, f"GAPLABS_LABS_PATH entry {root}") for root, origin in pack_roots() if origin.startswith("path:")]
    other_roots.append((bundled_root(), "the bundled catalog"))
    packs = home / "packs"
    if packs.is_dir():
        other_roots += [(pack, f"pack {pack.name!r}") for pack in sorted(packs.iterdir()) if pack.name != name]
    notes = []
    for lab_id in ids:
        for root, label in other_roots:
            if (root / "labs" / lab_id / "lab.yaml").is_file():
                notes.append(f"lab {lab_id!r} is also in {label}; `labs` uses the first one it finds "
                             "(GAPLABS_LABS_PATH, then bundled, then packs by name)")
    return notes


# ---------------------------------------------------------------- fetch


def fetch(source: str, *, sha256: str | None = None, home: Path, name: str | None = None,
          limits: PackLimits | None = None, warn: Callable[[str], None] = _warn_to_stderr) -> list[str]:
    """Install the pack at `source` as `<home>/packs/<name>/`; returns the ids of the labs installed."""
    limits = limits or PackLimits()
    kind, location = classify_source(source)
    where = _redact(location)
    sha256 = _check_sha256(sha256)
    if kind == "http" and sha256 is None:
        raise PackError("an http(s) pack needs --sha256", where=where,
                        fix="pass the hash published with the pack: --sha256 <64 hex digits>; "
                            "for a git repository write git+https://… or a URL ending in .git")
    if kind in ("git", "dir") and sha256 is not None:
        raise PackError(f"--sha256 checks tarballs; a {'git remote' if kind == 'git' else 'folder'} has no single file to hash",
                        where="--sha256", fix="drop --sha256 (the pack's manifest is still verified)")
    name = name or _default_name(kind, location)
    if not LAB_ID.match(name or ""):
        raise PackError(f"{name!r} is not a usable pack name", where="--name",
                        fix="pass --name with lowercase words joined by hyphens, e.g. --name ml-course-2026")

    home = Path(home).expanduser()
    incoming = home / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=incoming))
    try:
        raw = staging / "raw"
        if kind == "http":
            archive = staging / "pack.tar.gz"
            _download(location, archive, limits)
        elif kind == "archive":
            archive = Path(location)
        if kind in ("http", "archive"):
            got = sha256_of(archive)
            if sha256 is not None and got != sha256:
                raise PackError(f"sha256 mismatch: expected {sha256}, got {got}", where=where,
                                fix="the file is not the one published: download it again, or ask for the right hash")
            raw.mkdir()
            _unpack(archive, raw, limits)
            tree = _pack_root(raw, where)
        elif kind == "git":
            _clone(location, raw)
            tree = _pack_root(raw, where)
        else:
            tree = _pack_root(Path(location), location)

        pack = staging / "pack"
        _copy_checked(tree, pack, limits, where=where)
        if (pack / MANIFEST_NAME).is_file():
            verify_manifest(pack, where=where)
        elif kind in ("http", "archive"):
            raise PackError(f"the archive has no {MANIFEST_NAME}", where=where,
                            fix="build packs with `labs pack`, which writes the manifest fetch verifies")
        else:
            warn(f"{where} has no {MANIFEST_NAME}: installing without a file check "
                 "(fine for your own folder or repository; packs from others should come from `labs pack`)")
        ids = _validate_labs(pack, where)
        for note in _shadowing(ids, home, name):
            warn(note)
        _install(pack, home / "packs" / name, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ids


def _install(pack: Path, target: Path, staging: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = staging / "previous"
    if target.exists() or target.is_symlink():
        os.rename(target, previous)  # removed with the staging folder once the new copy is in place
    try:
        os.rename(pack, target)
    except OSError:
        if previous.exists():
            os.rename(previous, target)
        raise
