"""The evaluate modules of tasks/hf_evaluate against independent computations.

Numbers are compared with tasks.metrics / tasks.docred.scorer called directly, scikit-learn and
seqeval; batched (several add_batch) must equal all at once; options are init arguments and must
survive evaluate.combine; loading must work offline from a fresh cache (in a subprocess).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

evaluate = pytest.importorskip("evaluate")
seqeval_metrics = pytest.importorskip("seqeval.metrics")

from mllb_core.errors import UserError  # noqa: E402
from tasks import metrics as M  # noqa: E402
from tasks.docred.data import DocREDFormatError  # noqa: E402
from tasks.docred.scorer import score  # noqa: E402
from tasks.hf_evaluate import UnknownModuleError, docred_inputs, load  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOCRED_FIX = ROOT / "tests" / "fixtures" / "docred_mini"


def _random(seed: int, n: int = 40, c: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Tie-free scores [n, c] in (0, 1) and targets [n, c] with an all-negative class."""
    rng = np.random.default_rng(seed)
    s = rng.random((n, c))
    t = (rng.random((n, c)) < 0.35).astype(int)
    t[:, -1] = 0  # a class without a positive: the missing-class convention matters
    return s, t


@pytest.mark.parametrize("opts", [
    {},
    {"threshold": 0.3, "top_k": 2, "ks": (1, 2, 4), "missing": "zero"},
    {"threshold": [0.2, 0.4, 0.5, 0.6, 0.7, 0.5], "top_k": None},
])
def test_multilabel_equals_tasks_metrics_and_sklearn(opts: dict) -> None:
    from sklearn import metrics as skm

    s, t = _random(0)
    got = load("mllb_multilabel", keep_in_memory=True, **opts).compute(
        predictions=s, references=t)
    thr, top_k = opts.get("threshold", 0.5), opts.get("top_k", 3)
    ks, missing = opts.get("ks", (1, 3, 5)), opts.get("missing", "skip")
    # tasks.metrics, the functional core, called directly
    want = {"map": M.mean_average_precision(s, t, missing=missing).value}
    want.update(M.label_f1_scores(s, t, thr))
    if top_k is not None:
        top = M.label_f1_scores(s, t, thr, top_k=top_k)
        want.update({f"{k}_top{top_k}": top[k] for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")})
    want.update(M.classification_scores(s, t, thr))
    want.update(M.ranking_scores(s, t, ks))
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert (f"OF1_top{top_k}" in got) == (top_k is not None)
    # scikit-learn, independently
    pred = (s >= np.asarray(thr)).astype(int)
    ap = [skm.average_precision_score(t[:, j], s[:, j]) for j in range(t.shape[1] - 1)]
    want_map = np.mean([*ap, 0.0]) if missing == "zero" else np.mean(ap)
    assert got["map"] == pytest.approx(want_map, abs=1e-12)
    assert got["map_classes_skipped"] == (1.0 if missing == "skip" else 0.0)
    for avg in ("micro", "macro"):
        assert got[f"{avg}_f1"] == pytest.approx(
            skm.f1_score(t, pred, average=avg, zero_division=0), abs=1e-12)
        assert got[f"{avg}_precision"] == pytest.approx(
            skm.precision_score(t, pred, average=avg, zero_division=0), abs=1e-12)
    assert got["hamming_loss"] == pytest.approx(skm.hamming_loss(t, pred), abs=1e-12)
    assert got["subset_accuracy"] == pytest.approx(skm.accuracy_score(t, pred), abs=1e-12)
    for k in ks:
        assert got[f"nDCG@{k}"] == pytest.approx(skm.ndcg_score(t, s, k=k), abs=1e-12)


def test_multilabel_batched_equals_at_once_and_options_survive_combine() -> None:
    s, t = _random(1, n=50)
    opts = {"threshold": 0.3, "missing": "zero", "keep_in_memory": True}
    at_once = load("mllb_multilabel", **opts).compute(predictions=s, references=t)
    module = load("mllb_multilabel", **opts)
    for lo in range(0, 50, 13):  # uneven batches
        module.add_batch(predictions=s[lo:lo + 13].tolist(), references=t[lo:lo + 13].tolist())
    assert module.compute() == at_once
    # combine keeps the init options (compute kwargs would not reach add_batch)
    combined = evaluate.combine([load("mllb_multilabel", **opts)])
    for lo in range(0, 50, 25):
        combined.add_batch(predictions=s[lo:lo + 25], references=t[lo:lo + 25])
    assert combined.compute() == at_once
    assert at_once["map"] == pytest.approx(M.mean_average_precision(s, t, "zero").value)


def test_multilabel_bad_options_and_inputs_fail_clearly() -> None:
    with pytest.raises(ValueError, match="missing must be one of"):
        load("mllb_multilabel", missing="ignore")
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        load("mllb_multilabel", top_k=0)
    with pytest.raises(UnknownModuleError, match="unknown MLLB evaluate module 'mllb_x'"):
        load("mllb_x")
    module = load("mllb_multilabel", keep_in_memory=True)
    with pytest.raises(ValueError, match="targets must be 0 or 1"):
        module.compute(predictions=[[0.5, 0.1]], references=[[2, 0]])
    with pytest.raises(ValueError, match="predictions: row 1 has 1 values"):
        module.compute(predictions=[[0.5, 0.1], [0.3]], references=[[1, 0], [0, 1]])


def test_docred_equals_scorer_grouped_or_not_and_batched() -> None:
    pred = json.loads((DOCRED_FIX / "pred.json").read_text())
    gold = json.loads((DOCRED_FIX / "gold.json").read_text())
    train = DOCRED_FIX / "train.json"
    want = score(pred, gold, [json.loads(train.read_text())])
    module = load("mllb_docred", train_files=[str(train)], keep_in_memory=True)
    assert module.compute(**docred_inputs(pred, gold)) == want
    assert want["ign_f1"] == pytest.approx(3 / 5)  # the fixture's hand-computed value
    # all records in one row: the same (rows are concatenated; dedup is per title anyway)
    rows = {"predictions": [json.dumps(pred)] + ["[]"] * (len(gold) - 1),
            "references": [json.dumps(d) for d in gold]}
    assert module.compute(**rows) == want
    inputs = docred_inputs(pred, gold)
    for i in range(len(gold)):
        module.add_batch(predictions=inputs["predictions"][i:i + 1],
                         references=inputs["references"][i:i + 1])
    assert module.compute() == want
    # without a train file, Ign F1 is F1; a malformed row names row and what is expected
    plain = load("mllb_docred", keep_in_memory=True)
    assert plain.compute(**inputs)["ign_f1"] == score(pred, gold)["f1"]
    with pytest.raises(DocREDFormatError, match=r"predictions\[0\]: not valid JSON"):
        plain.compute(predictions=["{oops"], references=[json.dumps(gold[0])])
    with pytest.raises(UserError, match="no gold documents"):
        docred_inputs(pred, [])


def _gold_tags(spans: list[list[tuple[int, int, str]]], lengths: list[int],
               types: tuple[str, ...]) -> list[list[str]]:
    """IOB2 tags per (type, sentence) built by hand from non-overlapping same-type spans."""
    out = []
    for typ in types:
        for spans_s, n in zip(spans, lengths, strict=True):
            tags = ["O"] * n
            for a, b, ty in spans_s:
                if ty == typ:
                    tags[a:b] = [f"B-{typ}"] + [f"I-{typ}"] * (b - a - 1)
            out.append(tags)
    return out


def _random_ner(seed: int, types: tuple[str, ...]):
    """Sentences with random scores [L, 2K] and random gold spans (no same-type overlap)."""
    rng = np.random.default_rng(seed)
    lengths = [int(n) for n in rng.integers(1, 9, size=12)]
    scores = [rng.random((n, 2 * len(types))) ** 2 for n in lengths]
    spans = []
    for n in lengths:
        sent = []
        for typ in types:
            pos = 0
            while pos < n:
                if rng.random() < 0.3:
                    end = min(n, pos + int(rng.integers(1, 4)))
                    sent.append((pos, end, typ))
                    pos = end
                pos += 1
        spans.append(sent)
    return lengths, scores, spans


def test_ner_equals_seqeval_called_directly_and_batched() -> None:
    from seqeval.scheme import IOB2

    from tasks.ner.decoding import decode

    types = ("PER", "LOC", "MISC")
    lengths, scores, spans = _random_ner(0, types)
    refs = [[{"start": a, "end": b, "type": ty} for a, b, ty in s] for s in spans]
    preds = [x.tolist() for x in scores]
    module = load("mllb_ner", types=types, threshold=0.4, keep_in_memory=True)
    got = module.compute(predictions=preds, references=refs)
    y_pred = [seq for per in decode(np.concatenate(scores), lengths, types, 0.4) for seq in per]
    y_true = _gold_tags(spans, lengths, types)
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    assert got["entity_micro_f1"] == pytest.approx(
        seqeval_metrics.f1_score(y_true, y_pred, **kw), abs=1e-12)
    assert got["entity_precision"] == pytest.approx(
        seqeval_metrics.precision_score(y_true, y_pred, **kw), abs=1e-12)
    assert got["entity_recall"] == pytest.approx(
        seqeval_metrics.recall_score(y_true, y_pred, **kw), abs=1e-12)
    report = seqeval_metrics.classification_report(y_true, y_pred, output_dict=True, **kw)
    for typ in types:
        assert got[f"f1_{typ}"] == pytest.approx(report[typ]["f1-score"], abs=1e-12)
    for lo in range(0, len(preds), 5):
        module.add_batch(predictions=preds[lo:lo + 5], references=refs[lo:lo + 5])
    assert module.compute() == got
    # perfect scores (the gold spans themselves) give F1 1
    from tasks.ner.decoding import encode

    perfect = encode(spans, lengths, types)
    offs = np.cumsum([0, *lengths])
    rows = [perfect[offs[i]:offs[i + 1]].tolist() for i in range(len(lengths))]
    assert module.compute(predictions=rows, references=refs)["entity_micro_f1"] == 1.0
    with pytest.raises(ValueError, match=r"predictions\[0\]: every token needs 6 scores"):
        module.compute(predictions=[[[0.1, 0.2]]], references=[[]])


@pytest.mark.parametrize("name", ["mllb_multilabel", "mllb_docred", "mllb_ner"])
def test_metric_card_examples_run(name: str) -> None:
    """The python blocks of each module's metric card (README.md) run as written."""
    card = ROOT / "tasks" / "hf_evaluate" / name / "README.md"
    text = card.read_text(encoding="utf-8")
    assert text.startswith("---\n") and "## Metric Description" in text  # evaluate's layout
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, f"{card} python block", "exec"), {})


README_ONE_LINER = ("from tasks.hf_evaluate import load; print(load('mllb_multilabel')"
                    ".compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[[1, 0], [0, 1]]))")


def test_offline_one_liner_in_a_fresh_cache(tmp_path: Path) -> None:
    """The README one-liner, offline, with every Hugging Face cache in an empty directory."""
    env = {**os.environ, "HF_EVALUATE_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_EVALUATE_CACHE": str(tmp_path / "hf" / "evaluate")}
    env.pop("HF_MODULES_CACHE", None)
    env.pop("HF_METRICS_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", README_ONE_LINER], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = eval(proc.stdout.strip().splitlines()[-1])  # a printed dict of floats
    assert out["map"] == 1.0 and out["OF1"] == 1.0 and out["P@1"] == 1.0
    assert (tmp_path / "hf" / "modules").is_dir()  # evaluate used the fresh cache


def compute_metrics_example():
    """The README's compute_metrics for a Trainer (kept identical to the README prose)."""
    from tasks.hf_evaluate import load

    metric = load("mllb_multilabel", threshold=0.5)

    def compute_metrics(eval_pred):
        logits, labels = eval_pred.predictions, eval_pred.label_ids  # [N, C] each
        probs = 1.0 / (1.0 + np.exp(-logits))  # sigmoid: the module wants probabilities
        return metric.compute(predictions=probs, references=labels.astype(int))

    return compute_metrics


def test_compute_metrics_with_a_real_trainer(tmp_path: Path) -> None:
    """Trainer.evaluate on a tiny torch model and dataset calls compute_metrics as the README."""
    import torch
    from transformers import Trainer, TrainingArguments

    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(24, 5)), dtype=torch.float32)
    y = torch.tensor(rng.random((24, 4)) < 0.4, dtype=torch.float32)

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(5, 4)

        def forward(self, x, labels=None):
            logits = self.linear(x)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
            return {"loss": loss, "logits": logits}

    data = [{"x": x[i], "labels": y[i]} for i in range(24)]
    torch.manual_seed(0)
    model = Tiny()
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=7,
                             report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, eval_dataset=data,
                      compute_metrics=compute_metrics_example())
    got = trainer.evaluate()
    with torch.no_grad():
        probs = torch.sigmoid(model.linear(x)).numpy()
    want = M.compute_metrics(["map", "OF1", "CF1", "P@1"], probs, y.numpy())
    for key, value in want.items():
        assert got[f"eval_{key}"] == pytest.approx(value, abs=1e-6), key
