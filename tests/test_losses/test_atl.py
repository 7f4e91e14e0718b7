"""``atl`` (losses/atl.py) against ATLOP's official ``ATLoss`` (wzhouad/ATLOP losses.py, imported
at test time from ``$MLLB_REFERENCE_CODE``; those tests skip when it is absent), plus the
properties that need no official code: hand values, the declared rule, the scores."""

from __future__ import annotations

import pytest
import torch
from official import import_official

from losses import create_loss


def _batch(n: int, c: int, seed: int, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, generator=gen) * 3).to(dtype)
    targets = (torch.rand(n, c, generator=gen) < 0.2).float()
    targets[: n // 3] = 0.0  # rows without a positive (DocRED's no-relation pairs)
    targets[:, 0] = (targets[:, 1:].sum(1) == 0).float()  # ATLOP's labels: column 0 = "Na"
    return logits, targets


def _value_and_grad(fn, logits: torch.Tensor, targets: torch.Tensor):
    z = logits.clone().requires_grad_(True)
    value = fn(z, targets)
    (grad,) = torch.autograd.grad(value, z)
    return value, grad


@pytest.mark.parametrize("n,c,seed", [(1, 1, 0), (1, 2, 1), (7, 5, 2), (64, 97, 3)])
def test_equals_official_atloss(n: int, c: int, seed: int) -> None:
    official = import_official("wzhouad__ATLOP", "losses.py").ATLoss()
    logits, targets = _batch(n, c, seed)
    mine = create_loss("atl")
    # ATLoss writes labels[:, 0] = 0 into its argument: give it a copy
    ref_v, ref_g = _value_and_grad(lambda z, y: official(z, y.clone()), logits, targets)
    got_v, got_g = _value_and_grad(mine, logits, targets)
    torch.testing.assert_close(got_v, ref_v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_g, ref_g, rtol=1e-5, atol=1e-6)


def test_official_decoding_equals_declared_rule() -> None:
    """ATLoss.get_label(logits, num_labels=4) == the rule ``atl`` declares, applied by
    ``DecisionRule.decide`` to ``atl``'s scores."""
    from tasks.base import DecisionRule

    official = import_official("wzhouad__ATLOP", "losses.py").ATLoss()
    logits, _ = _batch(200, 12, 4)
    logits[:50, 0] -= 6.0  # many classes above TH: the top-4 cap binds
    loss = create_loss("atl")
    ref = official.get_label(logits, num_labels=4).bool()  # column 0 = "nothing predicted"
    rule = DecisionRule.from_declared(loss.decision_rule())
    got = rule.decide(loss.probabilities(logits).double().numpy())
    assert got[:, 1:].sum(1).max() == 4 and not got[:, 0].any()
    assert (torch.from_numpy(got[:, 1:]) == ref[:, 1:]).all()
    assert (torch.from_numpy(~got.any(1)) == ref[:, 0]).all()


def test_threshold_index_moves_the_threshold_column() -> None:
    logits, targets = _batch(9, 6, 5)
    perm = [3, 1, 2, 0, 4, 5]  # swap columns 0 and 3
    base = create_loss("atl")(logits, targets)
    moved = create_loss("atl", threshold_index=3)(logits[:, perm], targets[:, perm])
    torch.testing.assert_close(moved, base)


def test_hand_value() -> None:
    # one row, TH = column 0, positive class 1, negative class 2
    z = torch.tensor([[0.5, 2.0, -1.0]])
    y = torch.tensor([[0.0, 1.0, 0.0]])
    l1 = -torch.log_softmax(z[0, [0, 1]], 0)[1]
    l2 = -torch.log_softmax(z[0, [0, 2]], 0)[0]
    torch.testing.assert_close(create_loss("atl")(z, y), l1 + l2)
    # the TH column's own target is ignored (ATLOP zeroes it)
    torch.testing.assert_close(create_loss("atl")(z, torch.tensor([[1.0, 1.0, 0.0]])), l1 + l2)


def test_declared_rule_scores_and_checks() -> None:
    loss = create_loss("atl", threshold_index=2, top_k=3)
    assert loss.decision_rule() == {"policy": "threshold_class", "threshold_index": 2,
                                    "top_k": 3}
    assert create_loss("atl").decision_rule() == {"policy": "threshold_class",
                                                  "threshold_index": 0, "top_k": 4}
    z = torch.tensor([[40.0, 45.0, 39.0], [-3.0, 1.0, 2.0]])
    p = loss.probabilities(z)
    assert p.dtype == torch.float32 and (p[:, 2] == 0.5).all()
    # a large logit level does not saturate the comparison with TH (sigmoid(z) would tie)
    assert (p[0] > 0.5).tolist() == [True, True, False]
    assert ((p > p[:, 2:3]) == (z > z[:, 2:3])).all()
    with pytest.raises(ValueError, match="threshold_index"):
        create_loss("atl", threshold_index=3)(z, torch.zeros_like(z))
    with pytest.raises(ValueError, match="threshold_index"):
        create_loss("atl", threshold_index=-1)
    with pytest.raises(ValueError, match="top_k"):
        create_loss("atl", top_k=1.5)
    with pytest.raises(ValueError, match="reduction"):
        create_loss("atl", reduction="sum")
    with pytest.raises(ValueError, match="binary"):
        create_loss("atl")(z, torch.full_like(z, 0.5))


def test_docred_applies_the_declared_rule(tmp_path) -> None:
    """The DocRED task takes ``atl``'s rule through the Task contract: calibrate returns it
    (nothing tuned), evaluate and the predictions file predict the relations scoring above the
    Na column, at most top_k per pair, never Na."""
    import json
    from pathlib import Path

    from mllb_core.errors import UserError
    from tasks import create_task
    from tasks.base import DecisionRule

    fix = Path(__file__).resolve().parents[1] / "fixtures" / "docred_task"
    task = create_task("docred", data_dir=str(fix))
    assert task.declared_rules == ("threshold_class",)
    loss = create_loss("atl", top_k=1)
    task.check_declared_rule(loss.decision_rule())
    with pytest.raises(UserError, match="no-relation column"):
        task.check_declared_rule(create_loss("atl", threshold_index=2).decision_rule())
    y_dev = torch.cat([it["targets"] for it in task.items["dev"]]).float()
    rule = task.calibrate(torch.arange(len(y_dev)), torch.rand(y_dev.shape),
                          declared=loss.decision_rule())
    assert rule == DecisionRule("threshold_class", None, None, 0, 1)
    assert rule.to_json() == {"policy": "threshold_class", "value": None, "threshold_index": 0,
                              "top_k": 1}
    assert DecisionRule.from_json(rule.to_json()) == rule
    # test logits: gold relations 3 above Na, every other relation 1 below it
    y = torch.from_numpy(task.targets("test")).float()  # [24, 5]
    logits = 3.0 * y - 1.0
    logits[:, 0] = 0.0
    scores = loss.probabilities(logits)
    assert task.evaluate("test", torch.arange(len(y)), scores, rule)["f1"] == 1.0
    # two relations above Na in one pair: top_k=1 keeps the better one only
    logits[0, 1:3] = torch.tensor([2.0, 5.0])
    name = task.write_predictions("test", torch.arange(len(y)),
                                  loss.probabilities(logits), tmp_path / "a", rule)
    records = json.loads((tmp_path / name).read_text())
    first = task.items["test"][0]["pairs"][0].tolist()
    on_pair = [r["r"] for r in records if r["title"] == task.docs["test"][0].title
               and [r["h_idx"], r["t_idx"]] == first]
    assert on_pair == [task.schema.id2rel[2]]
    assert not y[0, 1:].any() and len(records) == int(y[:, 1:].sum()) + 1


def test_threshold_class_rule_is_checked() -> None:
    from tasks.base import DecisionRule

    for bad, message in ((("threshold_class", 0.5, None, 0, 4), "no global threshold"),
                         (("threshold_class", None, None, -1, 4), "threshold_index"),
                         (("threshold_class", None, None, 0, None), "top_k"),
                         (("fixed", 0.5, None, 0, 4), "belong to the policy")):
        with pytest.raises(ValueError, match=message):
            DecisionRule(*bad)
    with pytest.raises(ValueError, match="declared rule"):
        DecisionRule.from_declared({"policy": "threshold_class", "threshold_index": 0,
                                    "top_k": 4, "temperature": 2})
    rule = DecisionRule("threshold_class", None, None, 1, 0)  # top_k 0: no cap
    s = torch.tensor([[0.9, 0.5, 0.8, 0.7, 0.1]]).numpy()
    assert rule.decide(s).tolist() == [[True, False, True, True, False]]
    with pytest.raises(ValueError, match="not a column"):
        DecisionRule("threshold_class", None, None, 5, 0).decide(s)
