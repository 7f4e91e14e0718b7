"""Import the papers' official code at test time, never from the repository.

The official repositories' files lie under ``$MLLB_REFERENCE_CODE`` (an ``os.pathsep``-separated
list of folders; default ``../shared/reference`` beside the repository) in the layout
``<owner>__<repo>/<path in that repository>`` (see its PROVENANCE.md). Code whose repository
carries no license (LSAN, ATLOP) is not in shared/; fetch it yourself into the same layout in
another folder and add that folder to ``$MLLB_REFERENCE_CODE``. Tests that need a file skip when
it is absent (as in CI), so equality is proven wherever the code is present.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def reference_roots() -> list[Path]:
    """The folders searched for official code, in order."""
    spec = os.environ.get("MLLB_REFERENCE_CODE", str(REPO.parent / "shared" / "reference"))
    return [Path(p) for p in spec.split(os.pathsep) if p]


def official_file(repo: str, path: str) -> Path:
    """``<root>/<repo>/<path>`` from the first root that has it; skip the test otherwise."""
    for root in reference_roots():
        candidate = root / repo / path
        if candidate.is_file():
            return candidate
    pytest.skip(f"official code {repo}/{path} not found under $MLLB_REFERENCE_CODE "
                f"({os.pathsep.join(map(str, reference_roots()))})")


def import_official(repo: str, path: str, extra_paths: tuple[str, ...] = ()) -> ModuleType:
    """Import one official file as a fresh module (its own folder, plus ``extra_paths`` inside
    the repository, put first on ``sys.path`` while it imports, for its sibling imports)."""
    file = official_file(repo, path)
    base = file.parents[len(Path(path).parts) - 1]  # the repository folder
    name = f"official__{repo}__{path}".replace("/", "_").replace(".", "_").replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    added = [str(file.parent), *(str(base / p) for p in extra_paths)]
    sys.path[:0] = added
    try:
        spec.loader.exec_module(module)
    finally:
        for p in added:
            sys.path.remove(p)
    return module
