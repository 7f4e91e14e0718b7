"""Which code made a number: the git state of the checkout, for results files and benchmarks.

Every results JSON records it (``engine.outputs.environment``: ``env.git_commit`` and
``env.git_dirty``), and every benchmark report names it in its header (``code_version``), so a
figure in BENCHMARKS.md can be traced to the commit it was measured at, and a figure measured on
uncommitted code says so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNKNOWN = "unknown"


def _git(repo: Path, *args: str) -> str | None:
    """stdout of ``git -C repo args`` (stripped), or None where git or the checkout is missing."""
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_state(repo: Path = REPO) -> tuple[str, bool]:
    """(HEAD commit, whether the work tree differs from it) of the checkout at ``repo``.

    Outside a checkout (or without git) the commit is ``"unknown"`` and the tree counts as
    dirty: code that cannot be named cannot be called the committed code. Untracked files that
    git does not ignore count as a difference, as ``git status`` reports them.
    """
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain")
    if not commit or status is None:
        return UNKNOWN, True
    return commit, status != ""


def code_version(repo: Path = REPO) -> str:
    """One phrase for a benchmark header: ``code <12-digit commit>``, with ``+ uncommitted
    changes`` where the work tree differs, or ``code unknown`` outside a checkout."""
    commit, dirty = git_state(repo)
    if commit == UNKNOWN:
        return f"code {UNKNOWN}"
    return f"code {commit[:12]}" + (" + uncommitted changes" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()`` or the machine
    type): benchmark headers name it, since one machine type came as Intel and AMD hosts."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
