"""`labs fetch`: lab packs from folders, git remotes and https tarballs, and what must be refused."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from grader import packs, registry
from grader.authoring import new_lab
from grader.packing import MANIFEST_NAME, PACK_FORMAT, PACK_FORMAT_VERSION, pack_labs
from grader.packs import PackError, PackLimits

LAB_YAML = """\
id: {id}
title: Demo lab {id}
summary: A lab used by the pack tests.
version: 1.0.0
difficulty: intro
minutes: 5
checks:
  - id: works
    title: It works
    points: 1
"""


def make_pack(root: Path, lab_ids: tuple[str, ...] = ("demo-lab",), *, manifest: bool = True) -> Path:
    for lab_id in lab_ids:
        lab = root / "labs" / lab_id
        (lab / "public").mkdir(parents=True)
        (lab / "lab.yaml").write_text(LAB_YAML.format(id=lab_id))
        (lab / "starter.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
        (lab / "public" / "data.csv").write_text("x,y\n1,2\n")
    if manifest:
        write_manifest(root)
    return root


def write_manifest(root: Path) -> None:
    """The manifest `labs pack` writes (grader/packing.py), for trees built by hand in these tests."""
    entries = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != MANIFEST_NAME:
            entries.append({"path": path.relative_to(root).as_posix(), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                            "size": path.stat().st_size})
    manifest = {"format": PACK_FORMAT, "format_version": PACK_FORMAT_VERSION, "kind": "student", "files": entries}
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))


def tar_gz(source_root: Path, archive: Path, prefix: str = "") -> str:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source_root, arcname=prefix or ".")
    return hashlib.sha256(archive.read_bytes()).hexdigest()


def crafted_tar(archive: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return archive


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv(registry.HOME_ENV, str(home))
    monkeypatch.delenv(registry.EXTRA_ROOTS_ENV, raising=False)
    return home


def installed(home: Path) -> list[str]:
    packs_dir = home / "packs"
    return sorted(p.name for p in packs_dir.iterdir()) if packs_dir.is_dir() else []


def assert_nothing_left(home: Path) -> None:
    assert installed(home) == []
    assert not any((home / ".incoming").iterdir()), "the staging folder was not cleaned up"


# ---------------------------------------------------------------- folders


def test_folder_with_manifest_installs_and_shows_its_origin(tmp_path: Path, home: Path) -> None:
    source = make_pack(tmp_path / "course-pack", ("alpha-lab", "beta-lab"))
    warnings: list[str] = []
    assert packs.fetch(str(source), home=home, warn=warnings.append) == ["alpha-lab", "beta-lab"]
    assert warnings == []
    assert (home / "packs" / "course-pack" / "labs" / "alpha-lab" / "public" / "data.csv").read_text() == "x,y\n1,2\n"
    origins = {lab.id: lab.origin for lab in registry.all_labs()}
    assert origins["alpha-lab"] == "pack:course-pack" and origins["beta-lab"] == "pack:course-pack"
    assert registry.find_lab("beta-lab").dir == home / "packs" / "course-pack" / "labs" / "beta-lab"


def test_folder_without_manifest_installs_with_a_warning(tmp_path: Path, home: Path) -> None:
    source = make_pack(tmp_path / "mine", manifest=False)
    warnings: list[str] = []
    assert packs.fetch(str(source), home=home, name="my-labs", warn=warnings.append) == ["demo-lab"]
    assert installed(home) == ["my-labs"]
    assert len(warnings) == 1 and MANIFEST_NAME in warnings[0]


def test_real_labs_pack_output_fetches(tmp_path: Path, home: Path) -> None:
    """Interop with `labs pack`: its student pack, as a folder and as a tarball, passes fetch's checks."""
    new_lab("interop-lab", root=tmp_path / "authoring")
    lab = registry.Lab(dir=tmp_path / "authoring" / "labs" / "interop-lab", root=tmp_path / "authoring", origin="test")
    pack_labs([lab], dest=tmp_path / "student-pack", kind="student")
    (tmp_path / "student-pack" / "labs" / "interop-lab" / "__pycache__").mkdir()  # droppings are ignored
    assert packs.fetch(str(tmp_path / "student-pack"), home=home, warn=pytest.fail) == ["interop-lab"]
    digest = tar_gz(tmp_path / "student-pack", tmp_path / "student.tar.gz", prefix="student-pack")
    tarball = str(tmp_path / "student.tar.gz")
    assert packs.fetch(tarball, sha256=digest, home=home, name="student-pack", warn=pytest.fail) == ["interop-lab"]
    assert installed(home) == ["student-pack"]
    assert not (home / "packs" / "student-pack" / "labs" / "interop-lab" / "checks").exists()


@pytest.mark.parametrize("change, message", [
    (lambda root: (root / "labs/demo-lab/lab.yaml").write_text(LAB_YAML.format(id="demo-lab") + "# edited\n"),
     "'labs/demo-lab/lab.yaml' does not match the manifest"),
    (lambda root: (root / "labs/demo-lab/conftest.py").write_text("import os\n"),
     "'labs/demo-lab/conftest.py' is in the pack but not in its manifest"),
    (lambda root: (root / "labs/demo-lab/public/data.csv").unlink(),
     "lists 'labs/demo-lab/public/data.csv' but the pack has no such file"),
    (lambda root: (root / MANIFEST_NAME).write_text('{"format": "gaplabs-pack", "format_version": 99, "files": []}'),
     "format"),
])
def test_manifest_mismatch_is_refused(tmp_path: Path, home: Path, change, message: str) -> None:
    source = make_pack(tmp_path / "pack")
    change(source)
    with pytest.raises(PackError, match=message.replace("(", r"\(")) as info:
        packs.fetch(str(source), home=home)
    assert info.value.fix
    assert_nothing_left(home)


def test_links_and_special_files_in_a_folder_are_refused(tmp_path: Path, home: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not ship")
    cases = {
        "leaves the pack": lambda lab: os.symlink("../../../../secret.txt", lab / "public" / "up.txt"),
        "absolute path": lambda lab: os.symlink(str(secret), lab / "public" / "abs.txt"),
        "fifo": lambda lab: os.mkfifo(lab / "public" / "pipe"),
        "hardlink": lambda lab: os.link(secret, lab / "public" / "hard.txt"),
    }
    for index, (message, plant) in enumerate(cases.items()):
        source = make_pack(tmp_path / f"pack{index}", manifest=False)
        plant(source / "labs" / "demo-lab")
        with pytest.raises(PackError, match=message):
            packs.fetch(str(source), home=home, warn=lambda _: None)
        assert_nothing_left(home)


def test_links_inside_the_pack_are_kept(tmp_path: Path, home: Path) -> None:
    source = make_pack(tmp_path / "pack", manifest=False)
    os.symlink("data.csv", source / "labs" / "demo-lab" / "public" / "alias.csv")
    os.link(source / "labs" / "demo-lab" / "public" / "data.csv", source / "labs" / "demo-lab" / "public" / "copy.csv")
    packs.fetch(str(source), home=home, warn=lambda _: None)
    public = home / "packs" / "pack" / "labs" / "demo-lab" / "public"
    assert (public / "alias.csv").read_text() == "x,y\n1,2\n" and (public / "copy.csv").read_text() == "x,y\n1,2\n"


def test_invalid_lab_yaml_is_refused_before_install(tmp_path: Path, home: Path) -> None:
    source = make_pack(tmp_path / "pack", manifest=False)
    (source / "labs" / "demo-lab" / "lab.yaml").write_text(LAB_YAML.format(id="demo-lab").replace("minutes: 5", "minutes: soon"))
    with pytest.raises(PackError, match="lab 'demo-lab' in the pack is invalid") as info:
        packs.fetch(str(source), home=home, warn=lambda _: None)
    assert "labs/demo-lab/lab.yaml" in info.value.where
    assert_nothing_left(home)


def test_refetch_replaces_and_a_failed_refetch_keeps_the_old_pack(tmp_path: Path, home: Path) -> None:
    source = make_pack(tmp_path / "pack", manifest=False)
    packs.fetch(str(source), home=home, warn=lambda _: None)
    (source / "labs" / "demo-lab" / "public" / "data.csv").write_text("v2\n")
    packs.fetch(str(source), home=home, warn=lambda _: None)
    data = home / "packs" / "pack" / "labs" / "demo-lab" / "public" / "data.csv"
    assert data.read_text() == "v2\n"
    (source / "labs" / "demo-lab" / "lab.yaml").write_text("id: [broken\n")
    with pytest.raises(PackError):
        packs.fetch(str(source), home=home, warn=lambda _: None)
    assert data.read_text() == "v2\n"
    assert installed(home) == ["pack"] and not any((home / ".incoming").iterdir())


def test_shadowed_lab_ids_are_warned_about(tmp_path: Path, home: Path) -> None:
    make_pack(tmp_path / "first", manifest=False)
    make_pack(tmp_path / "second", manifest=False)
    packs.fetch(str(tmp_path / "first"), home=home, warn=lambda _: None)
    warnings: list[str] = []
    packs.fetch(str(tmp_path / "second"), home=home, warn=warnings.append)
    assert any("'demo-lab' is also in pack 'first'" in w for w in warnings)


# ---------------------------------------------------------------- git


def git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main", *args],
                   cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    work = make_pack(tmp_path / "work", manifest=True)
    git("init", "-q", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "pack", cwd=work)
    git("clone", "-q", "--bare", str(work), str(tmp_path / "course-labs.git"))
    return tmp_path / "course-labs.git"


def test_git_remote_from_a_local_bare_repository(bare_repo: Path, home: Path) -> None:
    assert packs.fetch(str(bare_repo), home=home, warn=pytest.fail) == ["demo-lab"]
    assert installed(home) == ["course-labs"]
    assert not (home / "packs" / "course-labs" / ".git").exists()
    assert packs.fetch("git+" + bare_repo.as_uri(), home=home, name="course-labs", warn=pytest.fail) == ["demo-lab"]
    with pytest.raises(PackError, match="git clone failed"):
        packs.fetch(str(bare_repo.parent / "missing.git"), home=home)
    with pytest.raises(PackError, match="--sha256 checks tarballs"):
        packs.fetch(str(bare_repo), home=home, sha256="0" * 64)


# ---------------------------------------------------------------- http(s)


@pytest.fixture
def server(tmp_path: Path):
    """A static file server on loopback; yields (folder it serves, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_https_tarball_needs_and_checks_sha256(tmp_path: Path, home: Path, server) -> None:
    served, base = server
    digest = tar_gz(make_pack(tmp_path / "pack"), served / "course-2026.tar.gz", prefix="course-2026")
    url = f"{base}/course-2026.tar.gz"
    with pytest.raises(PackError, match="needs --sha256"):
        packs.fetch(url, home=home)
    with pytest.raises(PackError, match="sha256 mismatch"):
        packs.fetch(url, sha256="ab" * 32, home=home)
    with pytest.raises(PackError, match="not a sha256"):
        packs.fetch(url, sha256="abc", home=home)
    with pytest.raises(PackError, match="404"):
        packs.fetch(f"{base}/nope.tar.gz", sha256=digest, home=home)
    with pytest.raises(PackError, match="over the 0 MiB limit"):
        packs.fetch(url, sha256=digest, home=home, limits=PackLimits(max_archive_bytes=100))
    assert_nothing_left(home)
    assert packs.fetch(url, sha256=digest.upper(), home=home, warn=pytest.fail) == ["demo-lab"]
    assert installed(home) == ["course-2026"]


def test_tarball_without_manifest_is_refused(tmp_path: Path, home: Path, server) -> None:
    served, base = server
    digest = tar_gz(make_pack(tmp_path / "pack", manifest=False), served / "p.tar.gz")
    with pytest.raises(PackError, match=f"has no {MANIFEST_NAME}"):
        packs.fetch(f"{base}/p.tar.gz", sha256=digest, home=home)


# ---------------------------------------------------------------- hostile archives


@pytest.mark.parametrize("members, message", [
    ([(member("../evil.py"), b"x")], r"'\.\.' in its path"),
    ([(member("labs/a/../../evil.py"), b"x")], r"'\.\.' in its path"),
    ([(member("/etc/cron.d/evil"), b"x")], "absolute path"),
    ([(member("labs/x/passwd", tarfile.SYMTYPE, "/etc/passwd"), None)], "absolute path '/etc/passwd'"),
    ([(member("labs/x/up", tarfile.SYMTYPE, "../../../home"), None)], "outside the pack"),
    ([(member("labs/x/hard", tarfile.LNKTYPE, "../outside"), None)], "outside the pack"),
    ([(member("labs/x/tty", tarfile.CHRTYPE), None)], "device file"),
    ([(member("labs/x/pipe", tarfile.FIFOTYPE), None)], "device file or fifo"),
    ([(member("labs/x/hard", tarfile.LNKTYPE, "labs/x/missing"), None)], "hardlink to a missing member"),
])
def test_hostile_archive_members_are_refused(tmp_path: Path, home: Path, members, message: str) -> None:
    archive = crafted_tar(tmp_path / "hostile.tar.gz", members)
    with pytest.raises(PackError, match=message):
        packs.fetch(str(archive), home=home, name="hostile")
    assert_nothing_left(home)
    assert not (tmp_path / "evil.py").exists() and not (home / "evil.py").exists()


def test_archive_bombs_are_stopped_by_the_limits(tmp_path: Path, home: Path) -> None:
    big = crafted_tar(tmp_path / "big.tar.gz", [(member("labs/a/zeros.bin"), bytes(300_000))])
    assert big.stat().st_size < 2_000  # compresses to almost nothing: the unpacked size is what counts
    with pytest.raises(PackError, match="unpacked pack"):
        packs.fetch(str(big), home=home, limits=PackLimits(max_unpacked_bytes=200_000))
    many = crafted_tar(tmp_path / "many.tar.gz", [(member(f"labs/a/f{i}.txt"), b"") for i in range(30)])
    with pytest.raises(PackError, match="more than 20 files"):
        packs.fetch(str(many), home=home, limits=PackLimits(max_files=20))
    (tmp_path / "junk.tar.gz").write_bytes(b"not gzip at all")
    with pytest.raises(PackError, match="not a readable .tar.gz"):
        packs.fetch(str(tmp_path / "junk.tar.gz"), home=home)
    assert_nothing_left(home)


# ---------------------------------------------------------------- sources and names


def test_classify_source(tmp_path: Path) -> None:
    pack = make_pack(tmp_path / "pack", manifest=False)
    assert packs.classify_source(str(pack)) == ("dir", str(pack))
    assert packs.classify_source("https://example.org/p.tar.gz") == ("http", "https://example.org/p.tar.gz")
    assert packs.classify_source("https://github.com/org/labs.git") == ("git", "https://github.com/org/labs.git")
    assert packs.classify_source("git+https://github.com/org/labs") == ("git", "https://github.com/org/labs")
    assert packs.classify_source("git@github.com:org/labs.git")[0] == "git"
    with pytest.raises(PackError, match="no labs/ folder"):
        packs.classify_source(str(tmp_path))
    with pytest.raises(PackError, match="cannot tell"):
        packs.classify_source(str(tmp_path / "nothing-here"))


def test_pack_names_are_checked(tmp_path: Path, home: Path) -> None:
    source = make_pack(tmp_path / "pack", manifest=False)
    with pytest.raises(PackError, match="not a usable pack name"):
        packs.fetch(str(source), home=home, name="../escape")
    with pytest.raises(PackError, match="checks tarballs"):
        packs.fetch(str(source), home=home, sha256="a" * 64)
    shutil.rmtree(home, ignore_errors=True)
    assert not (tmp_path / "escape").exists()


def test_cli_fetch(tmp_path: Path, home: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    source = make_pack(tmp_path / "pack", manifest=False)
    result = CliRunner().invoke(app, ["fetch", str(source), "--name", "course"])
    assert result.exit_code == 0, result.output
    assert "installed 1 lab(s)" in result.output and "demo-lab" in result.output
    assert installed(home) == ["course"]
    refused = CliRunner().invoke(app, ["fetch", "https://127.0.0.1:9/p.tar.gz"])
    assert refused.exit_code == 2 and "needs --sha256" in refused.output


def test_tokens_in_urls_stay_out_of_messages(home: Path) -> None:
    with pytest.raises(PackError) as info:
        packs.fetch("git+https://x-access-token:s3cret@127.0.0.1:9/org/labs.git", home=home)
    assert "s3cret" not in str(info.value) and "***@127.0.0.1:9" in info.value.where
