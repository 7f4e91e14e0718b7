"""The generic training-recipe hooks: parameter groups, the step schedule, frozen parameters,
Adam's epsilon and loss-declared decision rules (what the papers' recipes need, no model names).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from torch import nn

import run_task
from engine.recipe import make_optimizer, make_scheduler
from losses import LOSSES, MultiLabelLoss
from losses.functional import bce_loss
from mllb_core.errors import UserError
from mllb_core.identity import run_identity
from mllb_core.runconfig import RunConfig
from models import MODELS

REPO = Path(__file__).resolve().parents[2]
TINY = ["--task.num_train", "64", "--task.num_dev", "32", "--task.num_test", "32",
        "--task.num_labels", "6", "--task.avg_positives", "2", "--task.num_features", "8",
        "--batch_size", "16", "--eval_batch_size", "32", "--loss", "bce"]


class TwoPart(nn.Module):
    """A body at the base lr, a head at ``head_lr``; the body frozen until ``unfreeze_at``."""

    def __init__(self, num_labels: int, in_features: int, head: str = "linear",
                 head_lr: float = 0.0, unfreeze_at: int = 0) -> None:
        super().__init__()
        self.body = nn.Linear(in_features, 4)
        self.out = nn.Linear(4, num_labels)
        self.head_lr, self.unfreeze_at = head_lr, unfreeze_at

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.body(features)))

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": list(self.body.parameters()), "lr": lr},
                {"params": list(self.out.parameters()), "lr": self.head_lr or lr}]

    def frozen_parameters(self, epoch: int) -> list[nn.Parameter]:
        return list(self.body.parameters()) if epoch < self.unfreeze_at else []


@pytest.fixture
def two_part():
    MODELS.add("two_part", TwoPart)
    yield
    MODELS._items.pop("two_part")


def test_param_groups_keep_their_lr_under_every_schedule() -> None:
    model = TwoPart(3, 5, head_lr=0.5)
    for scheduler in ("onecycle", "cosine", "constant", "step"):
        cfg = RunConfig(lr=0.1, scheduler=scheduler, warmup_ratio=0.0, epochs=4)
        opt = make_optimizer(cfg, model)
        sched = make_scheduler(cfg, opt, total=8)
        peak = [0.0, 0.0]
        for _ in range(8):
            body, head = (g["lr"] for g in opt.param_groups)
            assert head == pytest.approx(5 * body, rel=1e-9), scheduler  # the same shape
            peak = [max(peak[0], body), max(peak[1], head)]
            opt.step()
            sched.step()
        assert peak[1] <= 0.5 + 1e-12 and peak[1] > 0.4, (scheduler, peak)


# a results object's sections but its config: what run_identity reads besides the config
_SECTIONS = {"task": {"name": "t", "version": "1", "dataset": "d", "data_fingerprint": "f"},
             "model": {"name": "m", "kwargs": {}}, "loss": {"name": "bce", "kwargs": {}},
             "env": {"world_size": 1, "mixed_precision": "no"}, "seed": 0}


def _steps(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[torch.Tensor]:
    """150 steps under a moving schedule (lr, beta1 or momentum), gradients from 1e-1 to 1e-4
    and, every 7th step, none for one parameter (a frozen one); the parameters and every
    state tensor after them."""
    g = torch.Generator().manual_seed(1)
    params = list(model.parameters())
    for step in range(150):
        for i, p in enumerate(params):
            p.grad = (None if step % 7 == 0 and i == 1
                      else torch.randn(p.shape, generator=g) * 10.0 ** (-1 - step % 4))
        for group in optimizer.param_groups:
            group["lr"] *= 1.01
            if "betas" in group:
                group["betas"] = (0.85 + 0.1 * step / 150, group["betas"][1])
            if "momentum" in group:
                group["momentum"] = 0.85 + 0.1 * step / 150
        optimizer.step()
    return [p.detach().clone() for p in params] + [
        v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_the_optimizer_gives_torchs_default_bits_on_the_cpu(optimizer: str) -> None:
    # make_optimizer takes the multi-tensor implementation; the reference is torch's own
    # per-parameter loop (its CPU default), built by hand over the same groups
    cfg = RunConfig(optimizer=optimizer, adam_eps=1e-6, adam_beta2=0.98, momentum=0.9)

    def model() -> nn.Module:
        torch.manual_seed(0)
        return TwoPart(6, 8, head_lr=1e-4)

    ours = make_optimizer(cfg, m := model())
    got = _steps(ours, m)
    reference_model = model()
    groups = reference_model.param_groups(cfg.lr)
    wd = cfg.weight_decay
    if optimizer == "sgd":
        reference = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=wd,
                                    foreach=False)
    else:
        cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
        reference = cls(groups, lr=cfg.lr, weight_decay=wd, eps=1e-6, betas=(0.9, 0.98),
                        foreach=False)
    expected = _steps(reference, reference_model)
    assert len(got) == len(expected) > 4
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert all(group["foreach"] for group in ours.param_groups)


def test_param_groups_must_cover_every_parameter_once() -> None:
    model = TwoPart(3, 5)
    model.param_groups = lambda lr: [{"params": list(model.body.parameters())}]
    with pytest.raises(ValueError, match="exactly once"):
        make_optimizer(RunConfig(), model)


def test_step_schedule_is_torch_steplr_stepped_per_epoch() -> None:
    cfg = RunConfig(lr=1.0, scheduler="step", step_size=3, step_gamma=0.5, epochs=8)
    per_epoch = 5
    p = nn.Parameter(torch.zeros(1))
    ours = torch.optim.SGD([p], lr=cfg.lr)
    sched = make_scheduler(cfg, ours, total=cfg.epochs * per_epoch)
    ref_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    ref = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=3, gamma=0.5)
    for _ in range(cfg.epochs):
        for _ in range(per_epoch):
            assert ours.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"])
            ours.step()
            sched.step()
        ref_opt.step()
        ref.step()


def test_adam_eps_reaches_the_optimizer_and_the_identity_only_when_set() -> None:
    opt = make_optimizer(RunConfig(adam_eps=1e-6), nn.Linear(2, 2))
    assert opt.param_groups[0]["eps"] == 1e-6
    default = run_identity({**_SECTIONS, "config": RunConfig().to_dict()})
    assert "train.adam_eps" not in default and "train.step_size" not in default
    changed = run_identity({**_SECTIONS, "config": RunConfig(adam_eps=1e-6,
                                                            scheduler="step").to_dict()})
    assert changed["train.adam_eps"] == 1e-6 and changed["train.step_gamma"] == 0.1


@pytest.mark.parametrize("optimizer", ["adamw", "adam"])
def test_fused_optimizer_is_torchs_fused_kernel_and_part_of_the_identity(
        optimizer: str, tmp_path: Path) -> None:
    cfg = RunConfig(optimizer=optimizer, fused_optimizer=True)
    fused = make_optimizer(cfg, m := nn.Linear(8, 6))
    assert all(group["fused"] for group in fused.param_groups)
    # the reference: torch's fused kernel built by hand over the same parameters
    cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    torch.manual_seed(0)
    reference_model = nn.Linear(8, 6)
    reference = cls(reference_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                    eps=cfg.adam_eps, betas=(0.9, cfg.adam_beta2), fused=True)
    m.load_state_dict(reference_model.state_dict())
    got, expected = _steps(fused, m), _steps(reference, reference_model)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    # other bits than the default: the run identity says which one made a number
    default = run_identity({**_SECTIONS, "config": RunConfig(optimizer=optimizer).to_dict()})
    assert "train.fused_optimizer" not in default  # earlier run ids stay what they were
    assert run_identity({**_SECTIONS, "config": cfg.to_dict()})["train.fused_optimizer"] is True
    (res,) = run_task.main([*TINY, "--optimizer", optimizer, "--fused_optimizer", "true",
                            "--epochs", "1", "--output_dir", str(tmp_path)])
    assert res["identity"]["train.fused_optimizer"] is True


def test_fused_sgd_is_refused_with_one_message() -> None:
    proc = subprocess.run([sys.executable, "run_task.py", "--optimizer", "sgd",
                           "--fused_optimizer", "true"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --fused_optimizer works with adamw and adam")


def test_frozen_parameters_do_not_move_until_released(tmp_path: Path, two_part) -> None:
    args = [*TINY, "--model", "two_part", "--epochs", "2", "--keep_checkpoints",
            "--output_dir", str(tmp_path)]
    run_task.main([*args, "--model.unfreeze_at", "3"])  # frozen for both epochs
    run_task.main([*args, "--model.unfreeze_at", "2", "--output_dir", str(tmp_path / "b")])
    set_seed(0)  # as the engine seeds before it builds the model
    init = TwoPart(6, 8).state_dict()
    for out, body_moves in ((tmp_path, False), (tmp_path / "b", True)):
        (ckpt,) = (out / "checkpoints" / "synthetic").iterdir()
        final = load_file(ckpt / "epoch-0002" / "model.safetensors")
        assert not torch.equal(final["out.weight"], init["out.weight"])
        assert torch.equal(final["body.weight"], init["body.weight"]) != body_moves


class _Declares(MultiLabelLoss):
    name = "declares_rule"
    functional = staticmethod(bce_loss)

    def decision_rule(self) -> dict:
        return {"policy": "threshold_class", "threshold_index": 0, "top_k": 4}


def test_a_declared_rule_the_task_cannot_apply_stops_before_training(tmp_path: Path) -> None:
    LOSSES.add("declares_rule", _Declares)
    try:
        with pytest.raises(UserError, match="task 'synthetic' cannot apply the decision rule "
                                            "the loss declares \\('threshold_class'\\)"):
            run_task.main([*TINY, "--model", "tiny_mlp", "--loss", "bce,declares_rule",
                           "--epochs", "1", "--output_dir", str(tmp_path)])
    finally:
        LOSSES._items.pop("declares_rule")
    assert not list(tmp_path.rglob("*.json"))


def _one_cycle_pair(optimizer: str, cycle_momentum: bool, total: int):
    """(ours, its optimizer, torch's OneCycleLR, its optimizer) on identical two-group setups."""
    from engine.recipe import TabulatedOneCycleLR

    def setup(cls):
        params = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3))]
        groups = [{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.5}]
        opt = (torch.optim.AdamW(groups, lr=0.1) if optimizer == "adamw"
               else torch.optim.SGD(groups, lr=0.1, momentum=0.9))
        sched = cls(opt, max_lr=[0.1, 0.5], total_steps=total, pct_start=0.3,
                    cycle_momentum=cycle_momentum)
        return opt, sched

    opt, sched = setup(TabulatedOneCycleLR)
    ref_opt, ref = setup(torch.optim.lr_scheduler.OneCycleLR)
    return sched, opt, ref, ref_opt


def _same_groups(opt: torch.optim.Optimizer, ref_opt: torch.optim.Optimizer) -> None:
    for g, r in zip(opt.param_groups, ref_opt.param_groups, strict=True):
        for key in ("lr", "betas", "momentum"):
            assert g.get(key) == r.get(key), key  # the same floats, not approximately


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("cycle_momentum", [True, False])
def test_tabulated_one_cycle_sets_torchs_values_at_every_step(optimizer: str,
                                                              cycle_momentum: bool) -> None:
    total = 37
    sched, opt, ref, ref_opt = _one_cycle_pair(optimizer, cycle_momentum, total)
    _same_groups(opt, ref_opt)
    for _ in range(total):
        opt.step()
        ref_opt.step()
        sched.step()
        ref.step()
        _same_groups(opt, ref_opt)
        assert sched.get_last_lr() == ref.get_last_lr()
        assert sched.last_epoch == ref.last_epoch
    with pytest.raises(ValueError, match="Tried to step"):  # one step past total_steps
        sched.step()


def test_tabulated_one_cycle_resumes_from_its_state_dict() -> None:
    sched, opt, _, _ = _one_cycle_pair("adamw", True, 20)
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert "_table" not in state
    resumed, opt2, _, _ = _one_cycle_pair("adamw", True, 20)
    resumed.load_state_dict(state)
    opt2.load_state_dict(opt.state_dict())
    for _ in range(10):
        opt.step()
        opt2.step()
        sched.step()
        resumed.step()
        _same_groups(opt2, opt)
        assert resumed.get_last_lr() == sched.get_last_lr()


def test_tabulated_one_cycle_beyond_its_limit_steps_as_torch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.recipe import TabulatedOneCycleLR

    monkeypatch.setattr(TabulatedOneCycleLR, "max_tabulated_steps", 10)
    sched, opt, ref, ref_opt = _one_cycle_pair("adamw", True, 37)
    assert "_table" not in sched.__dict__
    for _ in range(37):
        opt.step()
        ref_opt.step()
        sched.step()
        ref.step()
        _same_groups(opt, ref_opt)
