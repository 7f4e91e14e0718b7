"""asl_adaptive's state: checkpointed through state_dict, identical on every DDP rank."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from losses import create_loss


def _batch(seed: int, n: int = 6, c: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, (torch.rand(n, c, generator=g) < 0.3).float()


def _delta_p(z: torch.Tensor, y: torch.Tensor) -> float:
    """Eq. 10 over a batch, in float64: mean p of positives - mean (1 - p) of negatives."""
    p = torch.sigmoid(z.double())
    pos = y > 0.5
    return float(p[pos].mean() - (1 - p[~pos]).mean())


def test_state_dict_round_trip() -> None:
    a = create_loss("asl_adaptive", step_size=0.5)
    a.train()
    for seed in range(3):
        a(*_batch(seed))
    b = create_loss("asl_adaptive", step_size=0.5)
    assert b.gamma_neg == 4.0
    b.load_state_dict(a.state_dict())
    assert (b.gamma_neg, b.delta_p) == (a.gamma_neg, a.delta_p)
    assert b.gamma_neg != 4.0


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        loss = create_loss("asl_adaptive", step_size=0.5, delta_p_target=0.2)
        loss.train()
        z, y = _batch(10 + rank)  # each rank sees a different shard
        loss(z, y)
        out[rank] = loss.gamma_neg
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_ranks_agree_and_use_the_global_batch() -> None:
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    z = torch.cat([_batch(10)[0], _batch(11)[0]])
    y = torch.cat([_batch(10)[1], _batch(11)[1]])
    expected = 4.0 + 0.5 * (0.2 - _delta_p(z, y))
    assert out[0] == out[1]
    assert out[0] == pytest.approx(expected, abs=1e-6)
