"""Loss and gradient curves of the registered losses, like APL Figs. 1-3 and ASL Figs. 2-3.

Every curve is computed by the registered loss itself (``create_loss``), never by a copy of its
formula: the loss is evaluated on a float64 grid of probabilities p in [1e-3, 1 - 1e-3], once with
all targets 1 (the positive loss L+) and once with all targets 0 (the negative loss L-), and the
gradient comes from autograd. Two figures are written::

    loss_curves.png      L+(p) and L-(p)
    gradient_curves.png  dL+/dz and dL-/dz versus p, z = logit(p)

Usage::

    python -m losses.figures -o DIR [--losses bce,asl,apl@apl_aapd,...] [--points 400] [--dpi 120]

``name@preset`` applies a published preset. The reduction is forced to ``"none"`` (a preset's
``sum``/``batchmean`` is overridden), so the curves are per-element values. The gradients are the
raw dL/dz; the ASL paper's Fig. 3 normalizes the negatives' gradient, these are not normalized.
For ``aam`` (input_kind ``"cosine"``) the model input is the cosine: the x-axis is
p = ``loss.probabilities(cos)`` = sigmoid(s (cos - m)) and the gradient is dL/dcos.

The output is deterministic (byte-identical PNGs across runs): Agg canvas, matplotlib's default
style whatever the user's matplotlibrc says, fixed size and colours, no version in the metadata.

Design rule: ``losses`` imports only torch and the standard library at import time, so matplotlib
is imported inside the plotting function and this module is not imported by ``losses/__init__``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from losses import LOSSES, MultiLabelLoss, create_loss

if TYPE_CHECKING:  # numpy only for annotations: losses/ imports torch and the stdlib only
    import numpy as np

__all__ = [
    "DEFAULT_SPECS",
    "CurveSpec",
    "build_loss",
    "curve_data",
    "main",
    "parse_spec",
    "plot_losses",
]

# Probabilities 0 and 1 are infinite logits (and -log 0 = inf); stop this far from them.
P_MIN = 1e-3
LOSS_FILE = "loss_curves.png"
GRADIENT_FILE = "gradient_curves.png"
FIGSIZE = (12.0, 5.0)
# tab10, written out so that a user's rcParams cannot change the order of the colours.
COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)
# Line styles cycle too: several losses share a branch (asl@asl_coco and apl@apl_coco have the
# same L-, bce and ASL with gamma+ = 0 the same L+), and dashes keep the hidden curves visible.
LINESTYLES = ("-", "--", "-.", ":")


@dataclass(frozen=True)
class CurveSpec:
    """One curve: a registered loss, an optional preset and keyword overrides.

    Attributes:
        name: registered loss name (``list_losses()``).
        preset: optional preset name (``preset_names()``) for this loss.
        kwargs: hyper-parameters overriding the preset's / the defaults (``reduction`` is always
            replaced by ``"none"``).
        label: legend text; empty: ``name@preset`` plus the overrides.
    """

    name: str
    preset: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def display(self) -> str:
        """The legend text of this curve."""
        if self.label:
            return self.label
        text = self.name if self.preset is None else f"{self.name}@{self.preset}"
        if self.kwargs:
            text += " (" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                     for k, v in self.kwargs.items()) + ")"
        return text


DEFAULT_SPECS: tuple[CurveSpec, ...] = (
    CurveSpec("bce"),
    CurveSpec("focal", kwargs={"gamma": 2.0}),
    CurveSpec("asl", label="asl (defaults)"),
    CurveSpec("asl", preset="asl_coco"),
    CurveSpec("apl", preset="apl_aapd"),
    CurveSpec("apl", preset="apl_coco"),
    CurveSpec("aam", preset="aam_coco"),
)


def parse_spec(text: str) -> CurveSpec:
    """``"name"`` or ``"name@preset"`` -> :class:`CurveSpec` (validated by :func:`build_loss`)."""
    name, sep, preset = text.strip().partition("@")
    if not name or (sep and not preset):
        raise ValueError(f"bad loss spec {text!r}: expected 'name' or 'name@preset'")
    return CurveSpec(name.strip(), preset.strip() or None)


def build_loss(spec: CurveSpec | str) -> MultiLabelLoss:
    """The registered loss of ``spec`` with reduction ``"none"``, in eval mode.

    Raises:
        RegistryError: unknown loss name (the registry's message, with a suggestion).
        KeyError: unknown preset (the presets' message).
        ValueError: a loss that is not per-element (no ``"none"`` reduction, or not
            decomposable, e.g. zlpr, two_way), or a preset of another loss.
    """
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    cls = LOSSES.get(spec.name)  # unknown name: the registry's RegistryError
    if not cls.decomposable or "none" not in cls.reductions:
        # Per-element curves only make sense for a sum of independent per-element terms.
        raise ValueError(
            f"loss {spec.name!r} is not a per-element loss (decomposable={cls.decomposable}, "
            f"reductions={cls.reductions}); it has no per-element curve L(p) to plot"
        )
    loss = create_loss(spec.name, preset=spec.preset, **{**spec.kwargs, "reduction": "none"})
    # eval(): a stateful loss (asl_adaptive) must not update its state while being plotted.
    return loss.eval()


def _inputs_for(loss: MultiLabelLoss, p: torch.Tensor) -> torch.Tensor:
    """Model inputs whose probabilities are ``p`` (float64)."""
    if loss.input_kind == "logits":
        return torch.logit(p)
    # Other inputs (aam's cosines in [-1, 1]): invert the loss's own, increasing, probabilities()
    # by bisection instead of re-implementing its formula.
    lo = torch.full_like(p, -1.0)
    hi = torch.full_like(p, 1.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = loss.probabilities(mid[None, :])[0].double() < p
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _side(loss: MultiLabelLoss, x: torch.Tensor, target: float) -> tuple[torch.Tensor, ...]:
    """(per-element loss, d loss / d input) at inputs ``x`` [K], every target = ``target``."""
    leaf = x.detach().clone()[None, :].requires_grad_(True)  # [1, K]
    out = loss(leaf, torch.full_like(leaf, target))
    if out.shape != leaf.shape:
        raise RuntimeError(
            f"loss {type(loss).name!r} returned shape {tuple(out.shape)} with reduction 'none', "
            f"expected {tuple(leaf.shape)}"
        )
    # Elements are independent, so the gradient of the sum is the per-element gradient.
    out.sum().backward()
    assert leaf.grad is not None
    return out.detach()[0].double(), leaf.grad[0].double()


def curve_data(spec: CurveSpec | str, points: int = 400) -> dict[str, np.ndarray]:
    """The curves of one loss on ``points`` probabilities in [1e-3, 1 - 1e-3].

    Returns:
        float64 arrays [points]: ``p`` (x-axis), ``x`` (model input: logit, or cosine for aam),
        ``loss_pos``/``loss_neg`` (per-element loss with target 1/0) and ``grad_pos``/
        ``grad_neg`` (its derivative with respect to ``x``).
    """
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    loss = build_loss(spec)
    p = torch.linspace(P_MIN, 1.0 - P_MIN, points, dtype=torch.float64)
    x = _inputs_for(loss, p)
    if loss.input_kind != "logits":
        # The x-axis is what the loss calls its probability (aam: sigmoid(s (cos - m))).
        p = loss.probabilities(x[None, :])[0].double()
    loss_pos, grad_pos = _side(loss, x, 1.0)
    loss_neg, grad_neg = _side(loss, x, 0.0)
    tensors = {"p": p, "x": x, "loss_pos": loss_pos, "loss_neg": loss_neg,
               "grad_pos": grad_pos, "grad_neg": grad_neg}
    return {k: v.detach().numpy().copy() for k, v in tensors.items()}


_CAPTION = (
    "Computed by the registered losses (losses.create_loss) with reduction forced to 'none': "
    "per-element values, presets' sum/batchmean overridden. p in [1e-3, 1-1e-3], float64.\n"
    "aam: the input is the cosine, p = loss.probabilities(cos) = sigmoid(s (cos - m)); "
    "its loss carries the factors k/s and (1-k)/s of eq. 1"
)


def plot_losses(
    specs: Sequence[CurveSpec | str], out_dir: str | Path, points: int = 400, dpi: int = 120
) -> list[Path]:
    """Write ``loss_curves.png`` and ``gradient_curves.png`` for ``specs`` into ``out_dir``.

    Every spec is validated (and its curves computed) before anything is drawn, so a bad spec
    leaves no partial output. Returns the written paths.
    """
    if not specs:
        raise ValueError("no losses to plot")
    data = [(s if isinstance(s, CurveSpec) else parse_spec(s), curve_data(s, points))
            for s in specs]

    # Imported here: `import losses` must not import matplotlib (losses -> torch only).
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    panels = {
        LOSS_FILE: (
            "Per-element loss vs p (reduction='none')",
            (("loss_pos", "positive loss L+ (target 1)", "L+"),
             ("loss_neg", "negative loss L- (target 0)", "L-")),
        ),
        GRADIENT_FILE: (
            "Raw gradient dL/dz vs p, z = logit(p) (not normalized, unlike ASL Fig. 3; "
            "aam: dL/dcos); reduction='none'",
            (("grad_pos", "positives: dL+/dz", "dL+/dz  (aam: dL+/dcos)"),
             ("grad_neg", "negatives: dL-/dz", "dL-/dz  (aam: dL-/dcos)")),
        ),
    }
    written: list[Path] = []
    # The default style, not the user's matplotlibrc, so the bytes do not depend on the machine's
    # configuration; a Figure on an Agg canvas (no pyplot) leaves the global backend alone.
    with matplotlib.style.context("default"):
        for filename, (title, axes_spec) in panels.items():
            fig = Figure(figsize=FIGSIZE)
            FigureCanvasAgg(fig)
            axes = fig.subplots(1, 2)
            for ax, (key, ax_title, ylabel) in zip(axes, axes_spec, strict=True):
                for i, (spec, curves) in enumerate(data):
                    ax.plot(curves["p"], curves[key], color=COLORS[i % len(COLORS)],
                            linestyle=LINESTYLES[i % len(LINESTYLES)],
                            linewidth=1.6, label=spec.display())
                ax.set_title(ax_title)
                ax.set_xlabel("probability p")
                ax.set_ylabel(ylabel)
                ax.set_xlim(0.0, 1.0)
                ax.axhline(0.0, color="black", linewidth=0.6)
                ax.grid(True, alpha=0.3)
            axes[0].legend(fontsize=8, loc="best")
            fig.suptitle(title, fontsize=11)
            fig.text(0.5, 0.01, _CAPTION, ha="center", va="bottom", fontsize=7.5)
            # A fixed layout rather than tight_layout(): no extra draw pass, and the axes do not
            # move with the length of the labels.
            fig.subplots_adjust(left=0.06, right=0.985, bottom=0.19, top=0.85, wspace=0.2)
            path = out / filename
            # No "Software" key: the PNG then carries no matplotlib version (Agg writes no time).
            fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Command line entry point; returns the written paths (errors exit with status 2)."""
    parser = argparse.ArgumentParser(
        prog="python -m losses.figures",
        description="Plot per-element loss and gradient curves of the registered losses.",
    )
    parser.add_argument("-o", "--out-dir", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--losses", default=None,
        help="comma-separated 'name' or 'name@preset' (default: "
        + ",".join(s.display() for s in DEFAULT_SPECS) + ")",
    )
    parser.add_argument("--points", type=int, default=400, help="probabilities per curve")
    parser.add_argument("--dpi", type=int, default=120, help="PNG resolution")
    args = parser.parse_args(argv)
    if args.points < 2:
        parser.error(f"--points must be >= 2, got {args.points}")
    if args.dpi < 1:
        parser.error(f"--dpi must be >= 1, got {args.dpi}")
    try:
        specs: Sequence[CurveSpec] = DEFAULT_SPECS
        if args.losses is not None:
            specs = [parse_spec(s) for s in args.losses.split(",") if s.strip()]
        return plot_losses(specs, args.out_dir, points=args.points, dpi=args.dpi)
    except (KeyError, ValueError, TypeError) as exc:
        # KeyError.__str__ would quote the message; show the registry's text as written.
        parser.error(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
    raise AssertionError("unreachable")  # parser.error exits


if __name__ == "__main__":
    for written_path in main(sys.argv[1:]):
        print(written_path)
