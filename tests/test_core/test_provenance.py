"""The code version recorded with results and printed by benchmarks (mllb_core/provenance.py),
checked against the commit read from the repository's own files, not from the code under test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mllb_core.provenance import code_version, git_state

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _run_git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   check=True, capture_output=True)


def _head_from_files(repo: Path) -> str:
    """HEAD's commit as git stores it: .git/HEAD names a branch whose ref file holds the id."""
    head = (repo / ".git" / "HEAD").read_text().strip()
    assert head.startswith("ref: ")
    return (repo / ".git" / head.removeprefix("ref: ")).read_text().strip()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    _run_git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    _run_git(tmp_path, "add", "a.txt")
    _run_git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_clean_checkout_names_its_commit(repo: Path) -> None:
    sha = _head_from_files(repo)
    assert len(sha) == 40
    assert git_state(repo) == (sha, False)
    assert code_version(repo) == f"code {sha[:12]}"


def test_a_changed_tracked_file_marks_the_tree_dirty(repo: Path) -> None:
    (repo / "a.txt").write_text("two\n")
    sha = _head_from_files(repo)
    assert git_state(repo) == (sha, True)
    assert code_version(repo) == f"code {sha[:12]} + uncommitted changes"


def test_an_untracked_file_marks_the_tree_dirty(repo: Path) -> None:
    (repo / "new.py").write_text("x = 1\n")
    assert git_state(repo)[1] is True


def test_a_new_commit_is_named(repo: Path) -> None:
    first = _head_from_files(repo)
    (repo / "a.txt").write_text("two\n")
    _run_git(repo, "commit", "-q", "-am", "second")
    second = _head_from_files(repo)
    assert second != first
    assert git_state(repo) == (second, False)


def test_outside_a_checkout_the_code_is_unknown_and_never_clean(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # git would otherwise find a checkout that happens to enclose the temporary directory
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_state(tmp_path) == ("unknown", True)
    assert code_version(tmp_path) == "code unknown"
