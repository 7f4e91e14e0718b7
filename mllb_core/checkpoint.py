"""Kill-safe training checkpoints, on one process and under DDP.

Layout of one run's checkpoint directory (``<output_dir>/checkpoints/<task>/<stem>/``)::

    epoch-0003/            accelerate's save_state files (model, optimizer, scheduler, sampler,
                           random_states_<rank>.pkl of EVERY rank), extras.pt (stateful loss, EMA),
                           best.pt (the selected weights so far), and LAST:
                           complete.json  (run_id, identity, trainer state, world size and every
                                           file's name and size)

A save writes a fresh ``epoch-NNNN`` directory, waits until every rank has written its files (a
barrier), then the main process writes ``complete.json`` atomically, and only then deletes the
older directories. A resume takes the newest directory with a readable ``complete.json`` and
refuses (:class:`CheckpointError`) when that checkpoint belongs to another run (naming the
differing identity keys) or when any file it lists, or any rank's RNG state, is missing, resized
or unreadable -- never silently inexact. So a kill at any instant leaves either the previous
complete checkpoint (plus an incomplete newer directory, ignored and later removed) or the new
one.

Why not ``ProjectConfiguration(automatic_checkpoint_naming=True, total_limit=...)``: it loads the
newest directory whether or not it was completely written, and rotates without a barrier.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from mllb_core.errors import UserError
from mllb_core.identity import describe_difference
from mllb_core.io import write_json_atomic

MARKER = "complete.json"
_EPOCH_DIR = re.compile(r"^epoch-(\d{4,})$")


class CheckpointError(UserError):
    """A checkpoint that cannot be resumed exactly (another run, or a missing/unreadable file)."""


class Checkpoints:
    """The checkpoints of one run (one results file) in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def epoch_dirs(self) -> list[Path]:
        """Every ``epoch-NNNN`` directory, oldest first, complete or not."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and _EPOCH_DIR.match(p.name)]
        return sorted(found, key=lambda p: int(_EPOCH_DIR.match(p.name).group(1)))

    def latest_complete(self) -> Path | None:
        """The newest directory whose completion marker exists (the marker is written last)."""
        for path in reversed(self.epoch_dirs()):
            if (path / MARKER).is_file():
                return path
        return None

    def clear(self, accelerator: Accelerator | None = None) -> None:
        """Delete every checkpoint of this run and the directories left empty (main process)."""
        if accelerator is None or accelerator.is_main_process:
            shutil.rmtree(self.root, ignore_errors=True)
            for parent in (self.root.parent, self.root.parent.parent):
                with contextlib.suppress(OSError):  # not empty: other runs' checkpoints
                    parent.rmdir()
        if accelerator is not None:
            accelerator.wait_for_everyone()

    def save(self, accelerator: Accelerator, epoch: int, meta: dict[str, Any],
             extras: dict[str, Any], best_state: dict[str, torch.Tensor] | None) -> Path:
        """Write epoch ``epoch``'s checkpoint; ``best_state`` None keeps the previous best.pt."""
        target = self.root / f"epoch-{epoch:04d}"
        previous = self.latest_complete()
        if accelerator.is_main_process:
            if target.exists():  # an incomplete save of this epoch by a killed run
                shutil.rmtree(target)
            target.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(target))
        if accelerator.is_main_process:
            torch.save({k: obj.state_dict() for k, obj in extras.items()}, target / "extras.pt")
            if best_state is not None:
                torch.save(best_state, target / "best.pt")
            elif previous is not None:
                _link_or_copy(previous / "best.pt", target / "best.pt")
        accelerator.wait_for_everyone()  # every rank's files are on disk before the marker
        if accelerator.is_main_process:
            files = {p.name: p.stat().st_size for p in sorted(target.iterdir()) if p.is_file()}
            write_json_atomic(target / MARKER, {**meta, "epoch": epoch, "files": files,
                                                "world_size": accelerator.num_processes})
            for old in self.epoch_dirs():
                if old != target:
                    shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return target

    def restore(self, accelerator: Accelerator, identity: dict[str, Any], run_id: str,
                extras: dict[str, Any]) -> dict[str, Any] | None:
        """Load the newest complete checkpoint of this run; its marker dict, or None if none.

        Raises:
            CheckpointError: another run's checkpoint, or a missing/resized/unreadable file.
        """
        path = self.latest_complete()
        if path is None:
            return None
        meta = read_marker(path)
        if meta.get("run_id") != run_id:
            raise CheckpointError(
                f"{path}: checkpoint of another run (run_id {meta.get('run_id')} != {run_id}): "
                f"{describe_difference(meta.get('identity', {}), identity)}. Resume it with its "
                f"own settings, or start over without --resume (or use another --output_dir)")
        verify(path, meta, accelerator.num_processes)
        accelerator.load_state(str(path))
        saved = torch.load(path / "extras.pt", weights_only=True)
        for key, obj in extras.items():
            obj.load_state_dict(saved[key])
        return meta


def read_marker(path: Path) -> dict[str, Any]:
    """The completion marker of a checkpoint directory (CheckpointError if unreadable)."""
    import json

    try:
        return json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path / MARKER}: unreadable checkpoint marker ({exc}); delete "
                              f"{path} to resume from the checkpoint before it") from None


def verify(path: Path, meta: dict[str, Any], world_size: int) -> None:
    """Every file the marker lists exists with its size; every rank's RNG state loads."""
    files: dict[str, int] = meta.get("files", {})
    expected_rng = {f"random_states_{r}.pkl" for r in range(world_size)}
    for name in sorted(expected_rng - set(files)):
        raise CheckpointError(f"{path}: {name} was never written (checkpoint of "
                              f"{meta.get('world_size')} processes, resuming with {world_size})")
    for name, size in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing from a complete checkpoint; the resume "
                                  f"would not be exact. Delete {path} to resume from an older "
                                  f"checkpoint, or start over without --resume")
        if file.stat().st_size != size:
            raise CheckpointError(f"{file}: {file.stat().st_size} bytes, {size} when written")
    for name in sorted(expected_rng):
        try:
            torch.load(path / name, weights_only=False)  # accelerate's own format (pickled RNG)
        except Exception as exc:  # any unpickling failure means an inexact resume
            raise CheckpointError(f"{path / name}: unreadable RNG state ({type(exc).__name__}: "
                                  f"{exc})") from None


def _link_or_copy(src: Path, dst: Path) -> None:
    # a hard link costs no space and cannot be half-written; copy across filesystems
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
