"""ATL: the adaptive-thresholding loss of ATLOP.

Zhou, Huang, Ma and Huang, "Document-Level Relation Extraction with Adaptive Thresholding and
Localized Context Pooling", AAAI 2021, section "Adaptive Thresholding" (the losses L1, L2
and L = L1 + L2 of that section). One column ``k = threshold_index`` of the outputs is a
learnable threshold class TH (ATLOP: column 0, DocRED's ``Na``). With P_T the positive classes
of a row and N_T its negative classes (the TH column is neither, whatever its target says)::

    L1 = - sum_{r in P_T} log( exp(z_r) / sum_{r' in P_T + {TH}} exp(z_r') )
    L2 = - log( exp(z_TH) / sum_{r' in N_T + {TH}} exp(z_r') )
    L  = mean over rows of (L1 + L2)

L1 pushes every positive class above TH, L2 pushes TH above every negative class. At test time
a class is predicted when it scores above TH, at most ``top_k`` per row (ATLOP's
``get_label(logits, num_labels=4)``): :meth:`AdaptiveThresholdingLoss.decision_rule` declares
that rule, and a task that lists the policy ``"threshold_class"`` in ``Task.declared_rules``
(DocRED) applies it instead of tuning a global threshold.

Official code: wzhouad/ATLOP ``losses.py`` (``ATLoss.forward`` and ``ATLoss.get_label``).
``tests/test_losses/test_atl.py`` imports that file at test time (``tests/official.py``; skips
when it is absent) and finds value and gradient equal on the same tensors.

Deviations from the official code, none of which changes a value on valid inputs:

* ATLoss writes ``labels[:, 0] = 0`` into the caller's tensor; here the targets are not
  modified (a loss must not change its inputs).
* ATLoss excludes classes from a softmax by subtracting 1e30; here they are excluded by
  ``-inf`` inside ``logsumexp`` (the same value: exp(-1e30 - max) is 0 in float32).
* Targets must be binary (0/1): with a soft target ATLoss's 1e30 mask drops the class from the
  softmax of L1 yet still weights its (about -1e30) log-probability, so the value is meaningless;
  here a non-binary target is a ``ValueError``.
* The threshold column is a hyper-parameter (``threshold_index``, default 0 as ATLOP).
* Computed in float32 (float64 stays float64) whatever the input dtype; ATLOP calls
  ``logits.float()`` before the loss, the same.
* Only ``reduction="mean"`` (the official ``loss.mean()``): the loss is one number per row, not
  one per (row, class) element, so the contract's ``none``/``sum``/``batchmean`` over [N, C]
  elements have no meaning here.

Scores: :meth:`AdaptiveThresholdingLoss.probabilities` returns ``sigmoid(z - z_TH)``, the
probability that a class beats TH in a two-way softmax. It is monotone in ``z`` within a row, so
"above the threshold class" and the top-k order are those of the logits; the TH column is
exactly 0.5. Unlike ``sigmoid(z)`` it does not saturate when the logits' level is large (the
loss is invariant to adding a constant to a row, so that level is arbitrary): a float32
``sigmoid`` rounds every logit above ~17 to 1.0, which would make a class tie with TH. It still
saturates when a class beats TH by more than ~17 (ties among such classes; the task breaks them
by column order when it caps a row at ``top_k``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from losses._kernel import check_inputs, compute_dtype
from losses.base import LOSSES, MultiLabelLoss, require


def atl_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    threshold_index: int = 0,
    top_k: int = 4,
    reduction: str = "mean",
) -> Tensor:
    """ATLOP's adaptive-thresholding loss (see the module docstring), mean over rows.

    Args:
        logits: [N, C] scores of C classes, one of which (``threshold_index``) is TH.
        targets: [N, C] binary; the TH column's targets are ignored.
        threshold_index: the column of the threshold class TH, in [0, C).
        top_k: not used by the loss; the decision rule's cap (predictions per row), recorded
            with the loss so that the rule the loss declares is in its hyper-parameters.
        reduction: "mean" (over rows) only.

    Returns:
        The scalar loss (float32; float64 for float64 logits).
    """
    check_inputs("atl", logits, targets, reduction)
    require(reduction == "mean", "atl", "reduction", "'mean' (one value per row)", reduction)
    c = logits.shape[1]
    require(0 <= threshold_index < c, "atl", "threshold_index",
            f"a column of the outputs, in [0, {c})", threshold_index)
    z = logits.to(compute_dtype(logits))  # [N, C]
    y = targets.detach().to(z.dtype)  # [N, C]
    if ((y != 0) & (y != 1)).any():
        raise ValueError("atl: targets must be binary (0/1); ATLOP's loss has no meaning for "
                         "soft targets")
    th = torch.zeros(c, dtype=torch.bool, device=z.device)
    th[threshold_index] = True  # [C]
    pos = (y > 0) & ~th  # [N, C] P_T (TH is never a positive)
    neg = ~pos  # [N, C] N_T + {TH}
    # L1: each positive against P_T + {TH}
    lse_pos = z.masked_fill(~(pos | th), float("-inf")).logsumexp(1)  # [N]
    loss1 = ((lse_pos[:, None] - z) * pos).sum(1)  # [N]
    # L2: TH against N_T + {TH}
    lse_neg = z.masked_fill(~neg, float("-inf")).logsumexp(1)  # [N]
    loss2 = lse_neg - z[:, threshold_index]  # [N]
    return (loss1 + loss2).mean()


@LOSSES.register("atl")
class AdaptiveThresholdingLoss(MultiLabelLoss):
    """ATLOP's adaptive-thresholding loss; see :func:`atl_loss` and the module docstring."""

    name = "atl"
    functional = staticmethod(atl_loss)
    # one term per row, rows independent: the mean does not depend on how rows are batched
    decomposable = True
    reductions: ClassVar[tuple[str, ...]] = ("mean",)

    @classmethod
    def check_hparams(cls, hp: dict[str, Any]) -> None:
        k, top = hp["threshold_index"], hp["top_k"]
        require(isinstance(k, int) and not isinstance(k, bool) and k >= 0, cls.name,
                "threshold_index", "an integer >= 0", k)
        require(isinstance(top, int) and not isinstance(top, bool) and top >= 0, cls.name,
                "top_k", "an integer >= 0 (0: no cap)", top)

    def decision_rule(self) -> dict[str, Any]:
        """ATLOP's decoding: a class is predicted when it scores above the threshold column,
        at most ``top_k`` per row (``get_label(logits, num_labels=4)``; 0: no cap)."""
        return {"policy": "threshold_class", "threshold_index": self._hparams["threshold_index"],
                "top_k": self._hparams["top_k"]}

    def probabilities(self, outputs: Tensor) -> Tensor:
        """``sigmoid(z - z_TH)`` [N, C] in float32: monotone in ``z`` within a row (so the
        decisions are those of the logits) and exactly 0.5 at the threshold column."""
        z = outputs.float()
        k = self._hparams["threshold_index"]
        return torch.sigmoid(z - z[:, k:k + 1])
