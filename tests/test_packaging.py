"""The distribution: license, metadata, and an sdist that holds what its files refer to."""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> tuple[dict[str, bytes], email.message.Message]:
    pytest.importorskip("build", reason="the dev extra installs it")
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (archive,) = out.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        files = {
            str(PurePosixPath(*PurePosixPath(m.name).parts[1:])): tar.extractfile(m).read()
            for m in tar.getmembers()
            if m.isfile()
        }
    return files, email.message_from_bytes(files["PKG-INFO"])


def test_license_is_bsd_3_clause():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Neither the name of the copyright holder" in text


def test_metadata(sdist):
    _, meta = sdist
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Author"] or meta["Author-email"]
    classifiers = meta.get_all("Classifier")
    for wanted in [
        "Development Status :: 3 - Alpha",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Framework :: Django :: 5.2",
        "Framework :: Django :: 6.0",
        "Framework :: Django :: 6.1",
    ]:
        assert wanted in classifiers
    trove = pytest.importorskip("trove_classifiers", reason="the dev extra installs it")
    assert not [c for c in classifiers if c not in trove.classifiers]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert urls["Documentation"].endswith("docs/guide/README.md")
    assert urls["Source"].startswith("https://")


def test_sdist_holds_the_package_and_what_its_documents_link_to(sdist):
    files, _ = sdist
    tracked = subprocess.run(
        ["git", "ls-files", "vinyl"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(tracked) <= set(files)
    assert {"LICENSE", "README.md", "vinyl/py.typed", "docs/guide/README.md"} <= set(files)
    assert not [name for name in files if name.startswith(("tests/", "demo/", "bench/"))]
    missing = []
    for name, data in files.items():
        if not name.endswith(".md"):
            continue
        for target in LINK.findall(data.decode()):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = PurePosixPath(name).parent / target
            parts: list[str] = []
            for part in resolved.parts:
                if part == "..":
                    parts.pop()
                elif part != ".":
                    parts.append(part)
            path = "/".join(parts)
            if path not in files and not any(f.startswith(path.rstrip("/") + "/") for f in files):
                missing.append(f"{name} -> {target}")
    assert not missing, missing
