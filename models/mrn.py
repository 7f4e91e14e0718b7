"""MRN: locally and globally mention-based reasoning for document-level relation extraction.

Li et al., "MRN: A Locally and Globally Mention-Based Reasoning Network for Document-Level
Relation Extraction", Findings of ACL-IJCNLP 2021. This file follows the authors' public
GloVe-version code, github.com/ljynlp/MRN @ 2c3ff90 (``model.py``, ``utils.py``,
``preprocess.py``, ``main.py``; line numbers below are of that commit). With the default
options the forward pass equals the official ``MRN.forward`` on the same weights (converted by
:func:`from_official_state_dict`) to 1e-5 in eval mode: tests/test_models/test_mrn_official.py
runs the official code on the same documents.

* encoder (model.py:145-179): word embedding (the task copies GloVe rows into
  ``self.embedding.weight``) concatenated with an entity-type embedding per token (type_dim
  20), dropout ``dropout_emb`` (official ``dropout1``, 0.5), a BiLSTM with ``hidden`` = output
  size = 2 x per-direction size (256 = 2 x 128), packed so that padding never enters a state;
* mention vectors: max over the encoder states of each mention's token span (model.py:184-188);
* mentions of a document are ordered by (start, end, entity) before the reasoning layers, as the
  official preprocessing sorts them by start (preprocess.py:20-22). The order matters because
  the 3x3 convolution sees mention *neighbours*; sorting here also makes the output independent
  of the order the caller lists mentions in;
* signed distance of mention starts, d = start_i - start_j, in the DocRED baseline buckets
  (|d| = 1, 2-3, 4-7, 8-15, 16-31, 32-63, 64-127, 128-255, 256+): ids 1..9 for d > 0,
  10..18 for d < 0, 19 for d = 0, id 0 for padding cells (utils.py:11-20, 243-261); embedded
  in ``dist_dim`` (20);
* ``num_layers`` (3) mention-to-mention convolutional attention layers (model.py:11-87). Each
  layer keeps a subject stream x and an object stream y of mention vectors [M, D] and a pair
  map [channels, M, M] (row i = x of mention i, column j = y of mention j):
  - map = LeakyReLU(conv3x3(LeakyReLU(conv1x1([x_i; y_j; previous map])))), the previous map
    being the distance embedding for the first layer (local reasoning). The 1x1 convolution of
    the concatenation is computed as W_x x_i + W_y y_j + W_p prev_ij + b, the same function
    without building the [2D + channels, M, M] tensor; the official Dropout2d on that input is
    applied as the same per-document channel dropout on x, y and prev;
  - scores = LeakyReLU(conv1x1(map)) [heads, M, M]; x_i <- x_i + LeakyReLU(sum_j softmax_j(s_ij)
    V_y y_j + V_x x_i) and y_j <- y_j + LeakyReLU(sum_i softmax_i(s_ij) V_x x_i + V_y y_j)
    (global reasoning: every mention aggregates over all mentions of its document with weights
    read off the local map, so paths i -> k -> j form across layers);
* entity vectors: max over the entity's mentions of the final x (head role) and y (tail role)
  (model.py:195-203);
* entity-pair map feature, ``pair_map="tail_rows"`` (default, official, model.py:205-220): the
  feature of pair (h, t) is the max of the final map over rows = mentions of **t** x columns =
  mentions of **h** (the official pooling leaves the entity of the column max in its first entity
  dimension, which the biaffine reads as the subject). ``pair_map="head_rows"`` reads rows of h x
  columns of t, the subject stream of h against the object stream of t, as the biaffine pairs
  them (MLLB's reading before issue 14; self-consistent, but not the official code);
* scoring, ``scorer="biaffine"`` (default, official, model.py:90-136, 163-167, 222-229):
  h = MLP_sub(x_h), t = MLP_obj(y_t) (dropout, Linear, LeakyReLU; ``biaffine_dim`` = hidden),
  g = MLP_rel(pair map feature), each followed by dropout ``dropout`` (official ``dropout2``,
  0.33); logits = [h; 1]^T W_c [t; 1] + Linear(g)_c, W a xavier-normal [C, d + 1, d + 1]
  parameter (``self.biaffine``) and the Linear (``self.pair_linear``) default-initialized, as
  officially. The biaffine is computed per document on the entity grid (U = h W once per
  entity, then U_h · t), as the official einsum does.
  ``scorer="phi"``: ONE head over phi = [flatten(h ⊗ t); h; t; g] (``create_head``), the same
  function class (h^T W_c t + u_c·h + v_c·t + w_c·g + b_c, one bias for the official two) with
  nn.Linear's default init over all 66k columns (at init the bilinear and h/t terms are about
  2x and the g path and bias about 32x smaller than officially). It is the scorer of the cosine
  head (``head="cosine"``: phi and the class weights L2-normalized, cosines in [-1, 1], what
  AAM-style losses need) and of ``bilinear_block`` < ``biaffine_dim`` (W_c block diagonal, as
  ATLOP's grouped bilinear), which the official scorer has no form of; the scorer defaults to
  "phi" for those. ``forward`` computes head(phi) without building phi (|phi| in closed form);
  the tests check it against head(phi) built explicitly;
* word embeddings: ``freeze_embeddings`` (default True: the task loads GloVe into them; the
  official ``from_pretrained(..., freeze=True)``, model.py:148). The official trainer trains
  them from epoch ``freeze_epochs`` = 50 (0-based) of 80 on (main.py:253, 302-306):
  ``unfreeze_embeddings_after=50`` does that through :meth:`MRN.frozen_parameters` (frozen in
  epochs 1..50, trained from epoch 51; ``tasks/docred/configs/mrn_paper.yaml`` sets it). The
  model default None keeps them frozen for the whole run, which equals the official schedule
  for every run of up to 50 epochs; an epoch schedule is part of the recipe, as the StepLR is.
  Without word vectors the task trains them from the start, as the official code does when it
  has no embeddings (main.py:302). One learning rate for all parameters (main.py:77): no
  ``param_groups``.

Remaining deviations from the official code, each with its reason:

* padding mentions: the 3x3 convolution and the attention see only real cells (padding cells
  are zeroed before each convolution, exactly what the convolution's own zero border does, and
  padding mentions get zero attention weight), so batching with other documents never changes
  an output. The official code fills padding mentions with the batch minimum of the encoder
  states (model.py:184-188) and lets those cells into the 3x3 convolution, so its outputs for a
  document depend on the other documents of the batch; the equality test uses documents with
  equal mention counts, where the two agree;
* mention ties in the sort are broken by (end, entity); the official structured
  ``np.sort(order='pos_s')`` breaks them by the remaining fields in dtype order, i.e. (entity,
  mention index, end) (preprocess.py:20-22; its field "id" holds the entity): only mentions
  with the same start, of different entities or nested, can differ in order;
* the entity-type, distance and word embeddings have ``padding_idx=0``: row 0 starts at zero
  and gets no gradient (officially row 0 of the types is trained, which only adds a constant
  the LSTM bias can absorb; distance id 0 and word id 0 only occur at padding, so those rows
  never matter). Converted official weights are copied into row 0 as they are, so the forward
  pass is the same;
* the official ``ref_embs`` (a sentence-coreference embedding, model.py:152) is built but unused
  by the official forward (model.py:191-192): not built here;
* ``embed_dim`` defaults to 50 (the GloVe 50d this benchmark ships; the official run uses 100d);
* ``dropout_emb`` also drives the reasoning layers' dropouts, as in the official code
  (model.py:160-161), unless ``dropout_layers`` is given;
* any number of labels (officially 97 hard-coded, model.py:165, 167) and logits only (no
  sigmoid): the loss decides what to do with them; ``attn_heads`` (officially 1) may be more;
* the official ``chunk`` (the pair-map pooling split over documents to save memory) is a memory
  device, not a function: the pooling here scatters per entity instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.heads import CosineHead, LinearHead, create_head
from models.registry import MODELS

# bumped when a change of code or defaults changes the numbers (recorded in the run
# identity): 2: the official pair-map orientation and biaffine scorer became the defaults (issue 14)
MODEL_VERSION = "2"

# bucket boundaries of |start_i - start_j| (the DocRED baseline's dis2idx table)
DIST_BOUNDARIES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
NUM_DIST_IDS = 20  # 0 padding, 1..9 positive, 10..18 negative, 19 zero distance
LEAKY_SLOPE = 0.1  # the official code's LeakyReLU slope, used everywhere
SCORERS = ("biaffine", "phi")  # the official biaffine + linear; one head over phi
PAIR_MAPS = ("tail_rows", "head_rows")  # official reading of the pair map; MLLB's former one


def distance_ids(delta: Tensor) -> Tensor:
    """Signed mention distances -> official MRN distance ids in 1..19 (0 stays free for padding).

    ``delta`` = start_i - start_j (any integer shape). |delta| in 1, 2-3, 4-7, ..., 128-255, 256+
    gives buckets 1..9; positive distances keep them, negative ones add 9, zero maps to 19.
    """
    boundaries = delta.new_tensor(DIST_BOUNDARIES)
    bucket = torch.bucketize(delta.abs(), boundaries, right=True)  # 0 for 0, else 1..9
    return torch.where(delta > 0, bucket,
                       torch.where(delta < 0, bucket + 9, torch.full_like(bucket, 19)))


def _channel_keep(x: Tensor, shape: tuple[int, ...], p: float, training: bool) -> Tensor | None:
    """A Dropout2d-style keep mask (0 or 1/(1-p)) of ``shape``, or None when nothing drops."""
    if not training or p == 0.0:
        return None
    return F.dropout(x.new_ones(shape), p, training=True)


class MentionConvAttention(nn.Module):
    """One MRN reasoning layer over a padded batch of documents' mentions.

    Local step: a pair map from [x_i; y_j; previous map] through 1x1 and 3x3 convolutions.
    Global step: each mention attends over all mentions of its document with scores read off
    that map (x rows over columns, y columns over rows), with self loop and residual.
    """

    def __init__(self, dim: int, pre_channels: int, channels: int, heads: int = 1,
                 dropout: float = 0.5) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"mrn: hidden {dim} is not divisible by attn_heads {heads}")
        self.heads = heads
        self.p = dropout
        # the official 1x1 conv over cat([x_i, y_j, prev]) split into its three column blocks
        self.map_x = nn.Linear(dim, channels, bias=False)
        self.map_y = nn.Linear(dim, channels, bias=False)
        self.map_pre = nn.Conv2d(pre_channels, channels, kernel_size=1)
        self.local = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.score = nn.Conv2d(channels, heads, kernel_size=1, bias=False)
        self.value_x = nn.Linear(dim, dim, bias=False)
        self.value_y = nn.Linear(dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, y: Tensor, pre: Tensor, mask: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        """x, y [B, M, D], pre [B, K, M, M], mask [B, M] (True = real mention).

        Returns the new x, y [B, M, D] (zero at padding mentions) and the pair map [B, C, M, M]
        (zero at padding cells).
        """
        n, m, dim = x.shape
        keep_x = _channel_keep(x, (n, 1, dim), self.p, self.training)
        keep_y = _channel_keep(x, (n, 1, dim), self.p, self.training)
        keep_p = _channel_keep(x, (n, pre.shape[1], 1, 1), self.p, self.training)
        if keep_x is not None:
            x_in, y_in, pre = x * keep_x, y * keep_y, pre * keep_p
        else:
            x_in, y_in = x, y
        cell = (mask[:, :, None] & mask[:, None, :]).unsqueeze(1).to(x.dtype)  # [B, 1, M, M]
        z = (self.map_x(x_in).transpose(1, 2)[:, :, :, None]
             + self.map_y(y_in).transpose(1, 2)[:, :, None, :]
             + self.map_pre(pre))  # [B, C, M, M]
        # zeroed padding cells look to the 3x3 conv exactly like its zero border
        z = F.leaky_relu(z, LEAKY_SLOPE) * cell
        z = F.leaky_relu(self.local(z), LEAKY_SLOPE) * cell  # [B, C, M, M]

        scores = F.leaky_relu(self.score(z), LEAKY_SLOPE)  # [B, H, M, M]
        # finite fill: a document without mentions gives uniform (ignored) rows, not NaN
        fill = torch.finfo(scores.dtype).min
        col_pad = ~mask[:, None, None, :]  # [B, 1, 1, M]
        attn_x = scores.masked_fill(col_pad, fill).softmax(-1)  # row i over columns j
        attn_y = scores.transpose(2, 3).masked_fill(col_pad, fill).softmax(-1)  # col j over i

        vx = self.value_x(self.dropout(x))  # [B, M, D]
        vy = self.value_y(self.dropout(y))
        hx = vx.view(n, m, self.heads, -1).transpose(1, 2)  # [B, H, M, D/H]
        hy = vy.view(n, m, self.heads, -1).transpose(1, 2)
        out_x = (attn_x @ hy).transpose(1, 2).reshape(n, m, dim)  # [B, M, D]
        out_y = (attn_y @ hx).transpose(1, 2).reshape(n, m, dim)
        keep = mask[:, :, None].to(x.dtype)  # [B, M, 1]
        x = (x + F.leaky_relu(out_x + vx, LEAKY_SLOPE)) * keep
        y = (y + F.leaky_relu(out_y + vy, LEAKY_SLOPE)) * keep
        return x, y, z


class MRN(nn.Module):
    """MRN returning logits [P, C] for entity pairs (cosines with ``head="cosine"``).

    Defaults = the official model (see the module docstring): ``scorer`` None picks "biaffine"
    (official) for the linear head without ``bilinear_block``, else "phi"; ``pair_map``
    "tail_rows" (official) or "head_rows"; ``freeze_embeddings`` with
    ``unfreeze_embeddings_after`` N: frozen in epochs 1..N (the official trainer's N = 50),
    None: frozen for the whole run, 0: never frozen.
    """

    def __init__(self, num_labels: int, vocab_size: int, num_entity_types: int = 7,
                 embed_dim: int = 50, type_dim: int = 20, dist_dim: int = 20,
                 hidden: int = 256, channels: int = 64, num_layers: int = 3,
                 attn_heads: int = 1, biaffine_dim: int = 256, bilinear_block: int | None = None,
                 dropout_emb: float = 0.5, dropout: float = 0.33,
                 dropout_layers: float | None = None, freeze_embeddings: bool = True,
                 unfreeze_embeddings_after: int | None = None, head: str = "linear",
                 scorer: str | None = None, pair_map: str = "tail_rows") -> None:
        super().__init__()
        if head not in ("linear", "cosine"):
            raise ValueError(f"mrn: head must be 'linear' or 'cosine', got {head!r}")
        if scorer is None:  # the official scorer wherever it applies
            scorer = "biaffine" if head == "linear" and bilinear_block is None else "phi"
        if scorer not in SCORERS:
            raise ValueError(f"mrn: scorer must be one of {SCORERS}, got {scorer!r}")
        if scorer == "biaffine" and (head != "linear" or bilinear_block is not None):
            raise ValueError("mrn: scorer 'biaffine' (the official one) has no cosine form and no "
                             "bilinear_block; use scorer='phi' for those")
        if pair_map not in PAIR_MAPS:
            raise ValueError(f"mrn: pair_map must be one of {PAIR_MAPS}, got {pair_map!r}")
        if unfreeze_embeddings_after is not None and unfreeze_embeddings_after < 0:
            raise ValueError(f"mrn: unfreeze_embeddings_after must be >= 0 or None, got "
                             f"{unfreeze_embeddings_after}")
        self.scorer = scorer
        self.pair_map = pair_map
        self.freeze_embeddings = freeze_embeddings
        self.unfreeze_embeddings_after = unfreeze_embeddings_after
        if hidden % 2:
            raise ValueError(f"mrn: hidden (the BiLSTM output size) must be even, got {hidden}")
        block = bilinear_block or biaffine_dim
        if biaffine_dim % block:
            raise ValueError(f"mrn: bilinear_block {block} does not divide biaffine_dim "
                             f"{biaffine_dim}")
        if num_layers < 1:
            raise ValueError(f"mrn: num_layers must be >= 1, got {num_layers}")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        # frozen for the whole run: requires_grad False; frozen for the first epochs only: a
        # trainable parameter whose gradient the loop drops (frozen_parameters), so that DDP
        # syncs one fixed parameter set
        self.embedding.weight.requires_grad_(
            not freeze_embeddings or unfreeze_embeddings_after is not None)
        self.type_embedding = nn.Embedding(num_entity_types, type_dim, padding_idx=0)
        self.dist_embedding = nn.Embedding(NUM_DIST_IDS, dist_dim, padding_idx=0)
        self.dropout_emb = nn.Dropout(dropout_emb)
        self.lstm = nn.LSTM(embed_dim + type_dim, hidden // 2, batch_first=True,
                            bidirectional=True)
        p_layers = dropout_emb if dropout_layers is None else dropout_layers
        self.layers = nn.ModuleList(
            MentionConvAttention(hidden, dist_dim if i == 0 else channels, channels,
                                 attn_heads, p_layers) for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.mlp_sub = nn.Linear(hidden, biaffine_dim)
        self.mlp_obj = nn.Linear(hidden, biaffine_dim)
        self.mlp_rel = nn.Linear(channels, channels)
        self.biaffine_dim = biaffine_dim
        self.bilinear_block = block
        self.channels = channels
        self.phi_dim = biaffine_dim * block + 2 * biaffine_dim + channels
        if scorer == "biaffine":
            # model.py:98-100, 165-167: Biaffine(n_in, C, bias_x, bias_y) with a xavier-normal
            # [C, d + 1, d + 1] weight, plus nn.Linear(channels, C) (default init) on the map
            weight = torch.zeros(num_labels, biaffine_dim + 1, biaffine_dim + 1)
            self.biaffine = nn.Parameter(nn.init.xavier_normal_(weight))
            self.pair_linear = nn.Linear(channels, num_labels)
        else:
            self.head = create_head(head, self.phi_dim, num_labels)

    def frozen_parameters(self, epoch: int) -> list[nn.Parameter]:
        """The word embedding during epochs 1..``unfreeze_embeddings_after`` (1-based), when
        ``freeze_embeddings`` is on: main.py:302-306 trains it only from the 0-based epoch
        ``freeze_epochs`` (50) on, i.e. from epoch 51 here. Empty otherwise (a permanently
        frozen embedding has requires_grad False and never gets a gradient)."""
        after = self.unfreeze_embeddings_after
        if self.freeze_embeddings and after is not None and epoch <= after:
            return [self.embedding.weight]
        return []

    def _mlp(self, layer: nn.Linear, x: Tensor) -> Tensor:
        """The official scorer MLP: dropout, Linear, LeakyReLU, then dropout again."""
        return self.dropout(F.leaky_relu(layer(self.dropout(x)), LEAKY_SLOPE))

    def encode(self, input_ids: Tensor, attention_mask: Tensor, mentions: Tensor,
               entity_doc: Tensor, pairs: Tensor, ner_ids: Tensor | None = None
               ) -> tuple[Tensor, Tensor, Tensor]:
        """The scorer's inputs: h, t [E, d] per entity and g [P, channels] per pair.

        h is the entity in the head role (subject stream), t in the tail role (object stream),
        g the pair-map feature of each pair. Same arguments as :meth:`forward`.
        """
        n, length = input_ids.shape
        mask = attention_mask.bool()
        if ner_ids is None:
            ner_ids = torch.zeros_like(input_ids)
        emb = torch.cat([self.embedding(input_ids), self.type_embedding(ner_ids)], dim=-1)
        emb = self.dropout_emb(emb)  # [B, L, e + type_dim]
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True,
                                        total_length=length)  # [B, L, D]

        # mentions sorted by (doc, start, end, entity): stable sorts from the last key up
        order = torch.arange(mentions.shape[0], device=mentions.device)
        for col in (3, 2, 1, 0):
            order = order[torch.sort(mentions[order, col], stable=True).indices]
        doc, start, end, ent = mentions[order].unbind(1)

        # span max-pool; positions past a span's end repeat its last token, so need no mask
        width = int((end - start).max())
        pos = torch.minimum(start[:, None] + torch.arange(width, device=start.device),
                            end[:, None] - 1)  # [M, W]
        men = states[doc[:, None], pos].amax(1)  # [M, D]

        # scatter into a padded [B, Mmax] grid; slot = rank of the mention within its document
        counts = torch.bincount(doc, minlength=n)
        first = torch.cumsum(counts, 0) - counts
        slot = torch.arange(doc.shape[0], device=doc.device) - first[doc]
        m_max = int(counts.max())
        x = men.new_zeros(n, m_max, men.shape[1]).index_put((doc, slot), men)  # [B, Mmax, D]
        men_mask = torch.zeros(n, m_max, dtype=torch.bool, device=doc.device)
        men_mask[doc, slot] = True
        starts = torch.zeros(n, m_max, dtype=torch.long, device=doc.device)
        starts[doc, slot] = start
        dist = distance_ids(starts[:, :, None] - starts[:, None, :])  # [B, Mmax, Mmax]
        dist = dist.masked_fill(~(men_mask[:, :, None] & men_mask[:, None, :]), 0)
        pre = self.dist_embedding(dist).permute(0, 3, 1, 2)  # [B, dist_dim, Mmax, Mmax]

        y = x  # subject and object streams start equal, as in the official code
        for layer in self.layers:  # each layer's pair map is the next one's ``pre``
            x, y, pre = layer(x, y, pre, men_mask)

        # entity vectors: max over mentions (x for the head role, y for the tail role)
        num_ent = entity_doc.shape[0]
        idx = ent[:, None].expand(-1, x.shape[-1])
        ent_x = x.new_zeros(num_ent, x.shape[-1]).scatter_reduce(
            0, idx, x[doc, slot], "amax", include_self=False)  # [E, D]
        ent_y = y.new_zeros(num_ent, y.shape[-1]).scatter_reduce(
            0, idx, y[doc, slot], "amax", include_self=False)
        h_ent = self._mlp(self.mlp_sub, ent_x)  # [E, d]
        t_ent = self._mlp(self.mlp_obj, ent_y)

        # entity-pair map: max over (mentions of h) x (mentions of t), columns first, then rows;
        # padding mentions go to an extra entity slot e_max that no pair reads
        ent_counts = torch.bincount(entity_doc, minlength=n)
        ent_first = torch.cumsum(ent_counts, 0) - ent_counts
        e_max = int(ent_counts.max())
        local = torch.full((n, m_max), e_max, dtype=torch.long, device=doc.device)
        local[doc, slot] = ent - ent_first[doc]
        fmap = pre.permute(0, 2, 3, 1)  # [B, Mmax, Mmax, C]
        c = fmap.shape[-1]
        cols = fmap.new_zeros(n, m_max, e_max + 1, c).scatter_reduce(
            2, local[:, None, :, None].expand(-1, m_max, -1, c), fmap, "amax",
            include_self=False)  # [B, Mmax, E+1, C]
        emap = fmap.new_zeros(n, e_max + 1, e_max + 1, c).scatter_reduce(
            1, local[:, :, None, None].expand(-1, -1, e_max + 1, c), cols, "amax",
            include_self=False)  # [B, E+1, E+1, C]
        pdoc = entity_doc[pairs[:, 0]]
        hs, ts = pairs[:, 0] - ent_first[pdoc], pairs[:, 1] - ent_first[pdoc]
        if self.pair_map == "tail_rows":  # official (model.py:209-220): rows of t x cols of h
            g = emap[pdoc, ts, hs]  # [P, C]
        else:  # "head_rows": rows (x stream) of h x columns (y stream) of t
            g = emap[pdoc, hs, ts]
        return h_ent, t_ent, self._mlp(self.mlp_rel, g)

    def pair_vectors(self, input_ids: Tensor, attention_mask: Tensor, mentions: Tensor,
                     entity_doc: Tensor, pairs: Tensor, ner_ids: Tensor | None = None
                     ) -> tuple[Tensor, Tensor, Tensor]:
        """The scorer's inputs for each pair: h [P, d], t [P, d], g [P, channels].

        Same arguments as :meth:`forward`, whose output is ``head(pair_features(h, t, g))``.
        """
        h_ent, t_ent, g = self.encode(input_ids, attention_mask, mentions, entity_doc, pairs,
                                      ner_ids)
        return h_ent[pairs[:, 0]], t_ent[pairs[:, 1]], g

    def pair_features(self, h: Tensor, t: Tensor, g: Tensor) -> Tensor:
        """phi = [flatten(block-diagonal h ⊗ t); h; t; g] [P, phi_dim], the head's input."""
        p, d = h.shape
        k, b = d // self.bilinear_block, self.bilinear_block
        outer = (h.view(p, k, b, 1) * t.view(p, k, 1, b)).reshape(p, k * b * b)  # [P, d*b]
        return torch.cat([outer, h, t, g], dim=-1)

    def _score_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None, bool]:
        """The scorer as (W_bil [C, K, b, b], w_h [C, d], w_t [C, d], w_g [C, channels], bias
        [C] or None, cosine): logits = h^T W_c t + w_h·h + w_t·t + w_g·g + b_c (cosine: phi and
        the class rows normalized).

        ``biaffine``: W_c = W[c, :d, :d], w_h = W[c, :d, d] (the bias_y column), w_t = W[c, d, :d]
        (the bias_x row), b_c = W[c, d, d] + the pair linear's bias: the official
        biaffine([h; 1], [t; 1]) + Linear(g) written out. ``phi``: the head's columns over phi.
        """
        d = self.biaffine_dim
        if self.scorer == "biaffine":
            w = self.biaffine  # [C, d + 1, d + 1]
            return (w[:, None, :d, :d], w[:, :d, d], w[:, d, :d], self.pair_linear.weight,
                    w[:, d, d] + self.pair_linear.bias, False)
        if isinstance(self.head, LinearHead):
            weight, bias = self.head.fc.weight, self.head.fc.bias  # [C, phi_dim], [C]
        else:
            weight, bias = self.head.weight, None
        k, b = d // self.bilinear_block, self.bilinear_block
        w_bil = weight[:, :k * b * b].reshape(weight.shape[0], k, b, b)  # [C, K, b, b]
        w_h, w_t, w_g = weight[:, k * b * b:].split([d, d, self.channels], dim=1)
        return w_bil, w_h, w_t, w_g, bias, bias is None

    def _score(self, h_ent: Tensor, t_ent: Tensor, g: Tensor, entity_doc: Tensor,
               pairs: Tensor) -> Tensor:
        """The official biaffine scorer, or ``head(pair_features(h, t, g))`` for the linear and
        cosine heads without phi.

        phi has d·block + 2d + channels columns per pair (66k for the official sizes), so
        building it costs P x 66k floats and a P x 66k x C product. The bilinear part is instead
        computed per document on the entity grid, as the official code does: U = h W [E, C, d]
        once per entity, then U_h · t for all entity pairs of the document [B, E, E, C], of
        which the requested pairs are read. The cosine head also needs |phi|, which is
        sum_k |h_k|^2 |t_k|^2 + |h|^2 + |t|^2 + |g|^2 (k over the bilinear blocks).
        """
        w_bil, w_h, w_t, w_g, bias, cosine = self._score_weights()
        n_cls, k, b = w_bil.shape[0], w_bil.shape[1], w_bil.shape[2]
        d = self.biaffine_dim

        # entity grid per document: slot = rank of the entity within its document
        n = int(entity_doc.max()) + 1
        counts = torch.bincount(entity_doc, minlength=n)
        first = torch.cumsum(counts, 0) - counts
        slot = torch.arange(entity_doc.shape[0], device=entity_doc.device) - first[entity_doc]
        e_max = int(counts.max())
        u = torch.einsum("eki,ckij->eckj", h_ent.view(-1, k, b), w_bil)  # [E, C, K, b]
        u_grid = u.new_zeros(n, e_max, n_cls, d).index_put(
            (entity_doc, slot), u.reshape(-1, n_cls, d))  # [B, Emax, C, d]
        t_grid = t_ent.new_zeros(n, e_max, d).index_put((entity_doc, slot), t_ent)
        bil = torch.einsum("becj,bfj->befc", u_grid, t_grid)  # [B, Emax, Emax, C]
        ph, pt = pairs[:, 0], pairs[:, 1]
        h, t = h_ent[ph], t_ent[pt]  # [P, d]
        out = (bil[entity_doc[ph], slot[ph], slot[pt]]
               + h @ w_h.T + t @ w_t.T + g @ w_g.T)  # [P, C]
        if not cosine:
            return out if bias is None else out + bias
        # cosine head: divide by |phi| and |w_c| with F.normalize's eps, as CosineHead does
        weight = self.head.weight
        hk = h_ent.view(-1, k, b).square().sum(-1)  # [E, K]
        tk = t_ent.view(-1, k, b).square().sum(-1)
        phi_sq = ((hk[ph] * tk[pt]).sum(-1) + h.square().sum(-1) + t.square().sum(-1)
                  + g.square().sum(-1))  # [P]
        eps = 1e-12
        return out / (phi_sq.sqrt().clamp(min=eps)[:, None]
                      * weight.norm(dim=-1).clamp(min=eps)[None, :])

    def forward(self, input_ids: Tensor, attention_mask: Tensor, mentions: Tensor,
                entity_doc: Tensor, pairs: Tensor, ner_ids: Tensor | None = None) -> Tensor:
        """Logits (cosines for ``head="cosine"``) [P, C], row p for the pair ``pairs[p]``.

        input_ids [B, L] word ids (0 = padding); attention_mask [B, L] (1 = token);
        mentions [M, 4] rows (doc, start, end_exclusive, entity); entity_doc [E] doc of each
        entity (entities contiguous per document, in document order); pairs [P, 2] global
        (head, tail) entity ids of one document; ner_ids [B, L] entity type per token or None.
        Equal to ``head(pair_features(*pair_vectors(...)))``, computed without building phi.
        """
        h_ent, t_ent, g = self.encode(input_ids, attention_mask, mentions, entity_doc, pairs,
                                      ner_ids)
        if self.scorer == "biaffine" or isinstance(self.head, (LinearHead, CosineHead)):
            return self._score(h_ent, t_ent, g, entity_doc, pairs)
        return self.head(self.pair_features(h_ent[pairs[:, 0]], t_ent[pairs[:, 1]], g))


def official_sizes(sd: Mapping[str, Tensor]) -> dict[str, int]:
    """The MRN keyword arguments (sizes) of an official ``MRN`` state_dict (ljynlp/MRN
    model.py:139-167): ``num_labels`` and ``vocab_size`` included, so that
    ``MRN(**official_sizes(sd))`` loads ``from_official_state_dict(sd)``."""
    hidden = sd["mlp_sub.linear.weight"].shape[0]
    return {"num_labels": sd["linear.weight"].shape[0],
            "vocab_size": sd["word_emb.weight"].shape[0],
            "num_entity_types": sd["ner_embs.weight"].shape[0],
            "embed_dim": sd["word_emb.weight"].shape[1],
            "type_dim": sd["ner_embs.weight"].shape[1],
            "dist_dim": sd["dis_embs.weight"].shape[1],
            "hidden": 2 * sd["encoder.weight_hh_l0"].shape[1],
            "channels": sd["linear.weight"].shape[1],
            "num_layers": len({k.split(".")[2] for k in sd
                               if k.startswith("men2men_conv_att.layers.")}),
            "biaffine_dim": hidden}


def from_official_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An official ``MRN`` state_dict (ljynlp/MRN model.py) as this module's, for ``MRN`` with
    the default ``scorer="biaffine"``, ``pair_map="tail_rows"``, ``attn_heads=1`` and the sizes
    of :func:`official_sizes`.

    Renames word_emb/ner_embs/dis_embs/encoder/mlp_*.linear/biaffine/linear; splits each
    layer's 1x1 conv over cat([x_i; y_j; prev]) (``conv.1``, [C, 2D + K, 1, 1]) into its x, y
    and prev column blocks (``map_x``, ``map_y``, ``map_pre``, the bias with the last); drops
    ``ref_embs`` (built but unused by the official forward, model.py:152, 191-192).
    """
    out: dict[str, Tensor] = {}
    rename = {"word_emb.": "embedding.", "ner_embs.": "type_embedding.",
              "dis_embs.": "dist_embedding.", "encoder.": "lstm.",
              "mlp_sub.linear.": "mlp_sub.", "mlp_obj.linear.": "mlp_obj.",
              "mlp_rel.linear.": "mlp_rel.", "linear.": "pair_linear."}
    layer_names = {"conv.3.": "local.", "score_layer.": "score.", "linear1.": "value_x.",
                   "linear2.": "value_y."}
    for key, value in sd.items():
        if key.startswith("ref_embs."):
            continue
        if key == "biaffine.weight":
            out["biaffine"] = value
            continue
        if key.startswith("men2men_conv_att.layers."):
            _, _, i, rest = key.split(".", 3)
            prefix = f"layers.{i}."
            if rest.startswith("conv.1."):
                if rest.endswith("bias"):
                    out[prefix + "map_pre.bias"] = value
                    continue
                dim = sd["mlp_sub.linear.weight"].shape[1]  # hidden D of the x and y streams
                w_x, w_y, w_pre = value.split([dim, dim, value.shape[1] - 2 * dim], dim=1)
                out[prefix + "map_x.weight"] = w_x[:, :, 0, 0]
                out[prefix + "map_y.weight"] = w_y[:, :, 0, 0]
                out[prefix + "map_pre.weight"] = w_pre
                continue
            new = next((v + rest[len(k):] for k, v in layer_names.items()
                        if rest.startswith(k)), None)
            if new is None:
                raise KeyError(f"from_official_state_dict: unexpected official key {key!r}")
            out[prefix + new] = value
            continue
        new = next((v + key[len(k):] for k, v in rename.items() if key.startswith(k)), None)
        if new is None:
            raise KeyError(f"from_official_state_dict: unexpected official key {key!r}")
        out[new] = value
    return out


@MODELS.register("mrn")
def mrn(num_labels: int, vocab_size: int, num_entity_types: int = 7, embed_dim: int = 50,
        head: str = "linear", **kwargs: Any) -> MRN:
    """The official GloVe MRN sizes: BiLSTM 2 x 128, 64 channels, 3 layers, biaffine 256,
    dropout 0.5 / 0.33 (embeddings 50d here, for GloVe 50d); the official biaffine scorer and
    pair-map reading by default."""
    return MRN(num_labels, vocab_size, num_entity_types=num_entity_types, embed_dim=embed_dim,
               head=head, **kwargs)


@MODELS.register("tiny_mrn")
def tiny_mrn(num_labels: int, vocab_size: int, num_entity_types: int = 7, embed_dim: int = 8,
             head: str = "linear", **kwargs: Any) -> MRN:
    """For tests (a few thousand parameters): BiLSTM 2 x 4, 4 channels, 2 layers, biaffine 4;
    the same defaults (official scorer and pair-map reading) as ``mrn``."""
    sizes = {"type_dim": 4, "dist_dim": 4, "hidden": 8, "channels": 4, "num_layers": 2,
             "biaffine_dim": 4, **kwargs}
    return MRN(num_labels, vocab_size, num_entity_types=num_entity_types, embed_dim=embed_dim,
               head=head, **sizes)
