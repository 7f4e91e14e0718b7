"""MLLB's metric families as Hugging Face ``evaluate`` modules, shipped inside the package.

Each module is a directory next to this file (``mllb_multilabel/``, ``mllb_docred/``,
``mllb_ner/``) holding the script evaluate requires (``<name>/<name>.py``) and its metric card
(``README.md``). :func:`load` hands that directory to ``evaluate.load``, so nothing is fetched
from the Hub and loading works with ``HF_EVALUATE_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``. The scripts
are thin adapters: every number comes from MLLB's one functional core (``tasks.metrics``,
``tasks.docred.scorer``, ``tasks.ner.decoding``).

Options are *init* arguments (``load("mllb_multilabel", threshold=0.3, top_k=None)``):
``evaluate.load`` forwards its extra keyword arguments to the module's constructor, and they then
survive ``evaluate.combine`` and ``add_batch`` (which drop or reject non-input keywords).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllb_core.errors import UserError

MODULES = ("mllb_multilabel", "mllb_docred", "mllb_ner")
_HERE = Path(__file__).resolve().parent


class UnknownModuleError(UserError, ValueError):
    """``load`` was asked for a module that MLLB does not ship."""


def module_path(name: str) -> str:
    """The installed directory of module ``name`` (what ``evaluate.load`` accepts as a path)."""
    if name not in MODULES:
        raise UnknownModuleError(f"unknown MLLB evaluate module {name!r}; expected one of "
                                 f"{', '.join(MODULES)}")
    return str(_HERE / name)


def load(name: str, **kwargs: Any) -> Any:
    """``evaluate.load`` of the shipped module ``name``; ``kwargs`` go to ``evaluate.load``.

    Besides evaluate's own arguments (``config_name``, ``keep_in_memory``, ``cache_dir``,
    ``experiment_id``, ``num_process``, ``process_id``), every keyword is an option of the module
    (see its README.md), passed by evaluate to the module's constructor.

    Returns:
        an ``evaluate.EvaluationModule``.
    """
    import evaluate  # imported here: ``import tasks`` must not pull in evaluate/datasets

    return evaluate.load(module_path(name), **kwargs)


def docred_inputs(predictions: list[dict[str, Any]], gold_docs: list[dict[str, Any]]
                  ) -> dict[str, list[str]]:
    """The inputs of ``mllb_docred`` for an official submission and its gold documents.

    One row per gold document: ``references[i]`` is document i as a JSON string, and
    ``predictions[i]`` the JSON list of the submission records whose title is that document's
    (records of titles absent from the gold documents go to row 0, where the scorer counts them
    as the official script does, or rejects them). Returns ``{"predictions", "references"}``.
    """
    import json

    if not gold_docs:
        raise UserError("docred_inputs: no gold documents; expected at least one DocRED "
                        "document to score against")
    row_of: dict[str, int] = {}
    for i, doc in enumerate(gold_docs):
        if isinstance(doc, dict) and isinstance(doc.get("title"), str):
            row_of.setdefault(doc["title"], i)
    rows: list[list[dict[str, Any]]] = [[] for _ in gold_docs]
    for rec in predictions:
        title = rec.get("title") if isinstance(rec, dict) else None
        rows[row_of.get(title, 0)].append(rec)
    return {"predictions": [json.dumps(r) for r in rows],
            "references": [json.dumps(d) for d in gold_docs]}
