"""Classification heads.

On pooled features [N, D]: linear (logits) and cosine (for AAM). On backbone feature maps
[N, D, H, W] or token sequences [N, T, D] (the image models' decoders): global average pooling
plus a linear or cosine head, ML-Decoder (timm's, with a vectorized group FC) and AssocFormer's
association module.

Official code these heads follow (equality tests in tests/test_models/):

* ML-Decoder, linear head: Alibaba-MIIL/ML_Decoder ``src_files/ml_decoder/ml_decoder.py``
  (= timm ``timm/layers/ml_decoder.py``); :func:`from_official_ml_decoder_state_dict` converts
  an official ``MLDecoder`` state_dict (test_mldecoder_official.py: equal to 1e-5).
* Cosine heads for AAM (``aam_style="authors"``, the default): the AAM authors' code,
  openvinotoolkit/deep-object-reid (multilabel code, commit f695f068; the audit read the fork
  tosfaq/deep-object-reid@baca67d, same two files for these lines)
  ``torchreid/models/ml_decoder.py`` (``GroupASL`` and ``MLDecoder.forward`` under the
  ``am_binary`` loss) and ``torchreid/losses/am_softmax.py`` (``AngleSimpleLinear``, the GAP
  cosine head). ``aam_style="mllb"`` is MLLB's earlier reading of the AAM paper (section 3.2:
  "normalize the arguments of all dot products"): no bias after the cosine, ReLU on the
  projected memory. The backbone side of the authors' recipe (PReLU as the last activation)
  is in ``models/image.py``.

Remaining deviations from the official code, with their reasons:

* ML-Decoder's group FC is one einsum instead of a Python loop writing into a zeros tensor
  (same numbers; no in-place writes, so it also runs under autocast), and the decoder layer
  is called directly (torch 2.x's ``nn.TransformerDecoder`` reads ``layers[0].self_attn``,
  which the official layer lacks, so the official forward fails on this torch).
* ``ff_dim`` and ``dropout`` of the decoder layer are arguments (official: 2048 and 0.1, the
  defaults here).
* :class:`CosineHead` = ``AngleSimpleLinear`` up to its initialisation (kaiming-uniform rows
  here, unit-renormed normal columns there) and the ``clamp(-1, 1)`` there (cosmetic: a cosine of
  normalised vectors is already in [-1, 1] up to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers.ml_decoder import MLDecoder, TransformerDecoderLayerOptimal
from torch import Tensor, nn


class LinearHead(nn.Module):
    """logits = x W^T + b."""

    def __init__(self, in_features: int, num_labels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_labels)

    def forward(self, x: Tensor) -> Tensor:
        """x [N, D] -> logits [N, C]."""
        return self.fc(x)


class CosineHead(nn.Module):
    """cos_theta = normalize(x) normalize(W)^T: the input AAM-style losses scale and shift."""

    def __init__(self, in_features: int, num_labels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_labels, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        """x [N, D] -> cosines [N, C] in [-1, 1]."""
        return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))


HEADS = {"linear": LinearHead, "cosine": CosineHead}
# how a cosine (AAM) model is built: "authors" = the AAM authors' code (deep-object-reid),
# "mllb" = MLLB's earlier reading of the paper; see MLDecoderHead and models/image.py
AAM_STYLES = ("authors", "mllb")
# what each loss input kind (``MultiLabelLoss.input_kind``) needs from the model
HEAD_FOR_INPUT_KIND = {"logits": "linear", "cosine": "cosine"}


def create_head(kind: str, in_features: int, num_labels: int) -> nn.Module:
    """Build the head ``kind`` ("linear" or "cosine")."""
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; expected one of {sorted(HEADS)}")
    return HEADS[kind](in_features, num_labels)


# ---------------------------------------------------------------------------------------------
# heads on feature maps


def pool_features(x: Tensor) -> Tensor:
    """Global average pooling: [N, D, H, W] or tokens [N, T, D] -> [N, D]; [N, D] unchanged."""
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    if x.ndim == 2:
        return x
    raise ValueError(f"expected features [N, D, H, W], [N, T, D] or [N, D]; got {tuple(x.shape)}")


def to_tokens(x: Tensor) -> Tensor:
    """Feature map [N, D, H, W] -> tokens [N, H*W, D]; tokens stay; [N, D] -> one token."""
    if x.ndim == 4:
        return x.flatten(2).transpose(1, 2)
    if x.ndim == 3:
        return x
    if x.ndim == 2:
        return x.unsqueeze(1)
    raise ValueError(f"expected features [N, D, H, W], [N, T, D] or [N, D]; got {tuple(x.shape)}")


class GAPHead(nn.Module):
    """Global average pooling, dropout, then a :class:`LinearHead` or :class:`CosineHead`."""

    def __init__(self, in_features: int, num_labels: int, head: str = "linear",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.head = create_head(head, in_features, num_labels)

    def forward(self, x: Tensor) -> Tensor:
        """x [N, D, H, W] (or [N, T, D], [N, D]) -> logits or cosines [N, C]."""
        return self.head(self.dropout(pool_features(x)))


class MLDecoderHead(MLDecoder):
    """ML-Decoder (Ridnik et al., 2021) as timm builds it, with a vectorized group FC.

    timm's ``MLDecoder`` provides ``embed_standart`` (Linear D -> embed_dim, then ReLU), the
    one-layer ``decoder`` of ``TransformerDecoderLayerOptimal`` (8 heads, no self-attention),
    the non-learnable ``query_embed`` [L, E] (L = min(num_groups, C) group queries) and the group
    FC parameters ``duplicate_pooling`` [L, E, k] and ``duplicate_pooling_bias`` [C], with
    k = ceil(C / L) labels per group. Parameter names and shapes are timm's, so a timm
    ``MLDecoder`` state_dict loads strictly. Changes to timm's ``forward``:

    * the group FC is one einsum over ``duplicate_pooling`` instead of a Python loop writing
      into a zeros tensor (one kernel; no in-place writes, so it also runs under autocast);
    * the decoder layers are called directly: ``nn.TransformerDecoder.forward`` of torch 2.x
      reads ``layers[0].self_attn`` and passes ``tgt_is_causal``, which timm's layer lacks,
      so timm's own forward fails on this torch. The loop is what torch 1.x's decoder did;
    * ``ff_dim`` and ``dropout`` are arguments (timm fixes 2048 and 0.1);
    * ``head="cosine"``: each decoder output h_l [E] and each column
      ``duplicate_pooling[l, :, j]`` are L2-normalized before their dot product (the AAM
      paper, Prokofiev and Sovrasov, section 3.2: "normalize the arguments of all dot products
      in projections"). ``aam_style`` picks the rest:

      - ``"authors"`` (default): as the AAM authors' code (deep-object-reid
        ``torchreid/models/ml_decoder.py``, ``MLDecoder`` with the ``am_binary`` loss):
        LeakyReLU(0.2) instead of ReLU on the projected memory ``embed_standart(x)``, and the
        trainable ``duplicate_pooling_bias`` (init 0) still added after the cosine, so the
        output is cosine + b_c (not bounded by 1 once b moves);
      - ``"mllb"``: ReLU as the linear head, no bias: the output is the cosine in [-1, 1]; the
        bias stays in the state_dict (timm compatibility) frozen at 0 (requires_grad False, so
        DistributedDataParallel sees no unused trainable parameter).

      With ``head="linear"`` ``aam_style`` changes nothing.
    """

    def __init__(self, in_features: int, num_labels: int, head: str = "linear",
                 num_groups: int = 100, embed_dim: int = 768, ff_dim: int = 2048,
                 dropout: float = 0.1, aam_style: str = "authors") -> None:
        if head not in ("linear", "cosine"):
            raise ValueError(f"ml_decoder: head must be 'linear' or 'cosine', got {head!r}")
        if aam_style not in AAM_STYLES:
            raise ValueError(f"ml_decoder: aam_style must be one of {AAM_STYLES}, "
                             f"got {aam_style!r}")
        if num_groups < 1:
            raise ValueError(f"ml_decoder: num_groups must be >= 1, got {num_groups}")
        super().__init__(num_classes=num_labels, num_of_groups=num_groups,
                         decoder_embedding=embed_dim, initial_num_features=in_features)
        if ff_dim != 2048 or dropout != 0.1:  # timm hard-codes these two; same module names
            layer = TransformerDecoderLayerOptimal(d_model=embed_dim, dim_feedforward=ff_dim,
                                                   dropout=dropout)
            self.decoder = nn.TransformerDecoder(layer, num_layers=1)
        if self.embed_len_decoder * self.duplicate_factor < num_labels:
            # timm's int(C / L + 0.999) is not ceil(C / L) when C / L is just above an integer
            raise ValueError(f"ml_decoder: {self.embed_len_decoder} groups x "
                             f"{self.duplicate_factor} < {num_labels} labels; change num_groups")
        self.cosine = head == "cosine"
        self.aam_style = aam_style
        # the authors' cosine model keeps the bias and uses LeakyReLU(0.2); "mllb" neither
        self.use_bias = not self.cosine or aam_style == "authors"
        self.memory_slope = 0.2 if self.cosine and aam_style == "authors" else 0.0
        if not self.use_bias:
            self.duplicate_pooling_bias.requires_grad_(False)

    def decode(self, x: Tensor) -> Tensor:
        """Features [N, D, H, W] (or tokens [N, T, D]) -> group embeddings h [N, L, E]."""
        memory = self.embed_standart(to_tokens(x))  # [N, T, E]
        # ReLU (official ML-Decoder) or LeakyReLU(0.2) (AAM authors' cosine model)
        memory = F.leaky_relu(memory, self.memory_slope) if self.memory_slope else F.relu(memory)
        memory = memory.transpose(0, 1)  # [T, N, E]: timm's layer is sequence-first
        tgt = self.query_embed.weight.unsqueeze(1).expand(-1, memory.shape[1], -1)  # [L, N, E]
        for layer in self.decoder.layers:
            tgt = layer(tgt, memory)
        if self.decoder.norm is not None:
            tgt = self.decoder.norm(tgt)
        return tgt.transpose(0, 1)  # [N, L, E]

    def group_fc(self, h: Tensor) -> Tensor:
        """Group embeddings h [N, L, E] -> logits (or cosines) [N, C].

        Group l scores its k labels l*k .. l*k+k-1 with ``duplicate_pooling[l]`` [E, k]; the
        L*k - C surplus columns of the last group are cut off, as in timm.
        """
        weight = self.duplicate_pooling.to(h.dtype)  # [L, E, k]; autocast may leave h in bf16
        if self.cosine:
            h, weight = F.normalize(h, dim=-1), F.normalize(weight, dim=1)
        out = torch.einsum("nle,lek->nlk", h, weight)  # [N, L, k]
        out = out.flatten(1)[:, :self.num_classes]  # [N, C]
        if not self.use_bias:
            return out
        return out + self.duplicate_pooling_bias

    def forward(self, x: Tensor) -> Tensor:
        """x [N, D, H, W] or [N, T, D] -> logits [N, C] (cosines with ``head="cosine"``)."""
        return self.group_fc(self.decode(x))


# official ML-Decoder key (after the "decoder." prefix) -> MLDecoderHead key
_OFFICIAL_ML_DECODER_KEYS = {"embed_standart.weight": "embed_standart.weight",
                             "embed_standart.bias": "embed_standart.bias",
                             "query_embed.weight": "query_embed.weight",
                             "duplicate_pooling": "duplicate_pooling",
                             "duplicate_pooling_bias": "duplicate_pooling_bias"}


def from_official_ml_decoder_state_dict(state: Mapping[str, Tensor],
                                        prefix: str = "") -> dict[str, Tensor]:
    """An official ML-Decoder state_dict -> the state_dict of :class:`MLDecoderHead`.

    ``state`` is the ``state_dict`` of Alibaba-MIIL/ML_Decoder's ``MLDecoder`` (keys
    ``decoder.embed_standart.*``, ``decoder.query_embed.weight``, ``decoder.layers.0.*``,
    ``decoder.duplicate_pooling``, ``decoder.duplicate_pooling_bias``), or of a whole model
    holding one under ``prefix`` (``"head."`` for TResNet and ``"fc."`` for ResNet after
    ``add_ml_decoder_head``; ``""`` for the AAM authors' deep-object-reid ``MLDecoder``, whose
    ``backbone.*`` keys are left out). Keys outside the decoder are ignored; a decoder key this
    converter does not know (e.g. the zero-shot ``wordvec_proj``) raises ``ValueError``. Load
    the result with ``load_state_dict(..., strict=True)`` into an ``MLDecoderHead`` built with
    the same sizes (``num_groups`` = the official ``num_of_groups``, ``embed_dim`` =
    ``decoder_embedding``, ``ff_dim`` 2048).
    """
    out: dict[str, Tensor] = {}
    head = f"{prefix}decoder."
    for key, value in state.items():
        if key.startswith(f"{prefix}wordvec_proj."):
            raise ValueError("official ML-Decoder: the zero-shot variant (zsl=1) has no "
                             "MLDecoderHead counterpart")
        if not key.startswith(head):
            continue
        name = key[len(head):]
        if name.startswith("layers."):
            out[f"decoder.{name}"] = value  # same TransformerDecoderLayerOptimal names
        elif name in _OFFICIAL_ML_DECODER_KEYS:
            out[_OFFICIAL_ML_DECODER_KEYS[name]] = value
        else:
            raise ValueError(f"official ML-Decoder: unknown key {key!r}")
    if not out:
        raise ValueError(f"no official ML-Decoder keys under prefix {prefix!r}")
    return out


class AssociationHead(nn.Module):
    """AssocFormer's association module and fusion (Xing et al., sections 3.4-3.6).

    On the pooled embedding L [N, d] (global average of the feature map), per image:

    * eq 4: K = Conv1D(unsqueeze(L, 1)), M = Conv1D(unsqueeze(L, 1)) [C, d]: two separate
      ``Conv1d(1, C, kernel_size=1)``, i.e. K[c] = w_c L + b_c (one scale and bias per class);
    * eq 5: A = sigmoid(K K^T) [C, C]. The paper has no scaling; ``scale`` (default 1, the
      paper) multiplies K K^T. Why it exists: (K K^T)[c, c'] = w_c w_c' |L|^2
      + (w_c b_c' + w_c' b_c) sum(L) + d b_c b_c' is a sum over d positions, so at init most
      entries sit deep in the sigmoid's flat tails (measured: 94% of A's entries have
      sigmoid' < 1e-6 for ``effnet_lite0_assoc`` on COCO photos, d = 1280), where neither the
      task loss nor the eq 9 penalty moves K; ``scale=1/d`` keeps A off saturation;
    * eq 6: N1 = Conv1D(A M) [C]; the paper writes "M x A" with M [C, d], A [C, C], which only
      composes as A M (A is symmetric). The paper does not state this Conv1D's kernel: here it
      is a grouped ``Conv1d(C, C, kernel_size=d, groups=C)`` on A M [C, d], i.e. one d-vector
      u_c and bias per class, N1[c] = u_c . (A M)[c] + b_c;
    * fusion, eq 7: O = alpha N1 + beta N2 with N2 = Linear(d, C)(L). Defaults are the paper's
      "equal weights" alpha = beta = 0.5; ``alpha="learnable"`` is the paper's third option,
      alpha an ``nn.Parameter`` initialized at 0.5 with beta = 1 (``beta=None`` picks 0.5 or 1
      accordingly); ``beta=0`` is the "single path" option (no Linear is built);
    * eq 9: Loss = ASL + theta ||A||_2. ||A||_2 is read as the Frobenius norm of each image's A,
      averaged over the batch; in training mode ``forward`` stores theta * mean_n ||A_n||_F in
      ``self.aux_loss`` (the protocol of ``models.registry.auxiliary_loss``), in eval it sets
      ``aux_loss`` to None.

    Output: logits only. AssocFormer defines no cosine output, hence ``head="cosine"`` raises.
    """

    def __init__(self, in_features: int, num_labels: int, alpha: float | str = 0.5,
                 beta: float | None = None, theta: float = 0.1, scale: float = 1.0,
                 dropout: float = 0.0, head: str = "linear") -> None:
        super().__init__()
        if head != "linear":
            raise ValueError(f"association: head {head!r} is not available; AssocFormer "
                             "defines only a logits output (alpha N1 + beta N2), no cosine one")
        if alpha == "learnable":
            self.alpha: Tensor | float = nn.Parameter(torch.tensor(0.5))
            beta = 1.0 if beta is None else beta
        elif isinstance(alpha, (int, float)) and alpha != 0:
            self.alpha = float(alpha)
            beta = 0.5 if beta is None else beta
        else:
            raise ValueError(f"association: alpha must be a non-zero number or 'learnable', got "
                             f"{alpha!r} (alpha=0 drops the module: use decoder='gap')")
        self.beta = float(beta)
        self.theta = theta
        self.scale = scale
        self.dropout = nn.Dropout(dropout)
        self.key = nn.Conv1d(1, num_labels, kernel_size=1)  # K: [N, 1, d] -> [N, C, d]
        self.value = nn.Conv1d(1, num_labels, kernel_size=1)  # M
        self.out = nn.Conv1d(num_labels, num_labels, kernel_size=in_features, groups=num_labels)
        # beta=0 leaves N2 out; an unused Linear would break DistributedDataParallel
        self.fc = nn.Linear(in_features, num_labels) if self.beta != 0 else None
        self.aux_loss: Tensor | None = None

    def association(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        """Pooled embedding L [N, d] -> (N1 [N, C], association matrices A [N, C, C])."""
        k = self.key(emb.unsqueeze(1))  # [N, C, d]
        m = self.value(emb.unsqueeze(1))  # [N, C, d]
        a = torch.sigmoid(self.scale * (k @ k.transpose(1, 2)))  # [N, C, C]
        n1 = self.out(a @ m).squeeze(-1)  # [N, C, d] -> [N, C, 1] -> [N, C]
        return n1, a

    def forward(self, x: Tensor) -> Tensor:
        """x [N, D, H, W] (or [N, T, D], [N, D]) -> logits [N, C]; sets ``aux_loss`` in training."""
        emb = self.dropout(pool_features(x))  # [N, d]
        n1, a = self.association(emb)
        out = self.alpha * n1
        if self.fc is not None:
            out = out + self.beta * self.fc(emb)
        # in float32: a bf16 sum of C^2 squares loses the digits the penalty is made of; eval
        # clears it, so an unread training value cannot surface after an evaluation
        self.aux_loss = (self.theta * torch.linalg.matrix_norm(a.float(), ord="fro").mean()
                         if self.training else None)
        return out


SPATIAL_HEADS: dict[str, type[nn.Module]] = {
    "gap": GAPHead, "ml_decoder": MLDecoderHead, "association": AssociationHead}


def create_spatial_head(decoder: str, in_features: int, num_labels: int, head: str = "linear",
                        **kwargs: Any) -> nn.Module:
    """Build the decoder ``decoder`` ("gap", "ml_decoder", "association") with its ``head``.

    The result maps features [N, D, H, W] (or tokens [N, T, D]) to [N, C]; ``kwargs`` go to
    the decoder's class (e.g. ``num_groups`` for ML-Decoder, ``theta`` for association).
    """
    if decoder not in SPATIAL_HEADS:
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {sorted(SPATIAL_HEADS)}")
    return SPATIAL_HEADS[decoder](in_features, num_labels, head=head, **kwargs)
