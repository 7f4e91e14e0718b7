"""Run a sweep's cells as jobs: one SLURM job array (``--launcher submitit``) or local processes
(``--launcher local``), both through submitit (optional extra ``mllb[slurm]``).

The launching process plans every cell exactly as an in-process run does (registries, options,
output directory, run identity): cells whose results already exist with the same ``run_id`` are
skipped, the others become one job each, running ``accelerate launch [--multi_gpu
--num_processes G] run_task.py <the cell's options>``. A job is an ordinary single-cell run, so
checkpoints, ``--resume`` and the results files are those of a local run; resubmitting the same
command after a failure or a time-out runs only what is missing (add ``--resume`` to continue
the interrupted cells from their checkpoints). With ``--leaderboard`` the launcher refreshes the
leaderboard once every job has ended.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from mllb_core.errors import UserError
from mllb_core.runconfig import RunConfig, cell_argv


def launch_cells(sweeps: list[tuple[str, list[str], RunConfig]], base: RunConfig,
                 repo: Path) -> list[dict[str, Any]]:
    """Plan every cell here, submit the unfinished ones as jobs, wait, return all results.

    The run identity is computed with the jobs' world size (``gpus_per_job`` processes), so a
    cell counts as done exactly when a job would find it done.
    """
    from accelerate import Accelerator

    from engine.outputs import environment, refresh_leaderboard
    from engine.plan import plan
    from leaderboard.schema import read_results

    acc = Accelerator(cpu=True)
    env = {**environment(acc), "world_size": max(1, base.gpus_per_job)}
    cells, commands = [], []
    for _, sweep_argv, sweep in sweeps:
        for cfg in sweep.cells():
            cells.append(cfg)
            commands.append(job_command(sweep_argv, cfg))
    planned = plan(cells, _Planner(max(1, base.gpus_per_job)), env)
    todo = [(p.path.stem, cmd) for p, cmd in zip(planned, commands, strict=True)
            if p.finished is None]
    for p in planned:
        if p.finished is not None:
            print(f"skip {p.path} (same run_id {p.run_id})")
    if todo:
        print(f"submitting {len(todo)} jobs ({base.launcher})", file=sys.stderr)
        wait(submit(todo, base, repo), [label for label, _ in todo])
    results = [read_results(p.path) for p in planned]
    if base.leaderboard:
        print(f"leaderboard: {refresh_leaderboard(Path(base.output_dir))}")
    return results


class _Planner:
    """What :func:`engine.plan.plan` asks of an Accelerator: the jobs' process count."""

    def __init__(self, num_processes: int) -> None:
        self.num_processes = num_processes
        self.is_main_process = True


def job_command(sweep_argv: list[str], cell: RunConfig) -> list[str]:
    """The ``accelerate launch`` command of one cell (multi-GPU when the job has several)."""
    launch = ["accelerate", "launch"]
    if cell.gpus_per_job > 1:
        launch += ["--multi_gpu", "--num_processes", str(cell.gpus_per_job)]
    else:
        launch += ["--num_processes", "1"]
    kept = cell_argv(sweep_argv, cell)  # the launcher's own options left out
    return [*launch, "run_task.py", *kept]


def make_executor(cfg: RunConfig) -> Any:
    """The submitit executor of ``cfg.launcher`` with the job options applied."""
    try:
        import submitit
    except ImportError:
        raise UserError(f"--launcher {cfg.launcher} needs submitit: pip install -e "
                        f"'.[slurm]'") from None
    folder = Path(cfg.submitit_dir or Path(cfg.output_dir) / "submitit")
    if cfg.launcher == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=cfg.slurm_time, gpus_per_node=cfg.gpus_per_job)
        return executor
    if shutil.which("sbatch") is None:
        raise UserError("--launcher submitit submits SLURM jobs, but sbatch is not on PATH; run "
                        "on the cluster's login node, or use --launcher local on this machine")
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params: dict[str, Any] = {"timeout_min": cfg.slurm_time, "gpus_per_node": cfg.gpus_per_job,
                              "tasks_per_node": 1, "name": "mllb",
                              "slurm_array_parallelism": cfg.array_parallelism}
    if cfg.slurm_partition:
        params["slurm_partition"] = cfg.slurm_partition
    executor.update_parameters(**params)
    return executor


def submit(jobs: list[tuple[str, list[str]]], cfg: RunConfig, cwd: Path) -> list[Any]:
    """Submit one job per ``(label, command)`` as one array; return the submitit jobs."""
    from submitit.helpers import CommandFunction

    executor = make_executor(cfg)
    functions = [CommandFunction(command, cwd=str(cwd), verbose=False) for _, command in jobs]
    with executor.batch():  # one SLURM job array (local: one process per job)
        handles = [executor.submit(fn) for fn in functions]
    return handles


def wait(handles: list[Any], labels: list[str]) -> None:
    """Block until every job ended; ONE UserError naming the failed cells and their logs."""
    failed = []
    for job, label in zip(handles, labels, strict=True):
        try:
            job.result()
        except Exception as exc:  # submitit re-raises the job's failure here
            log = getattr(job, "paths", None)
            where = f" (log: {log.stderr})" if log is not None else ""
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            failed.append(f"{label}{where}: {last}")
    if failed:
        raise UserError(f"{len(failed)} of {len(handles)} jobs failed; resubmit the same command "
                        f"(with --resume) to run only those: " + "; ".join(failed))
    print(f"{len(handles)} jobs done", file=sys.stderr)
