"""MLLB's DocRED scorer against the official evaluation script, run unchanged.

thunlp/DocRED ``code/evaluation.py`` (from ``$MLLB_REFERENCE_CODE``, default ../shared/reference;
skipped when absent) is a script: it reads ``<input>/res/result.json`` and
``<input>/ref/dev_test.json``, takes the training facts from ``../data/train_annotated.json`` and
``../data/train_distant.json`` relative to its working directory, and writes ``scores.txt``. The
test lays out that tree in a temporary folder, runs the script in a subprocess and compares its
RE_F1, Evi_F1 and RE_ignore_annotated_F1 with ``tasks.docred.scorer.score`` on the same files.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from official import official_file

from tasks.base import SHARED_DATA
from tasks.docred.scorer import score

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "docred_mini"
REDOCRED = SHARED_DATA / "docred" / "redocred"


def _official_scores(tmp: Path, preds: list, gold: list, train: list) -> dict[str, float]:
    script = official_file("thunlp__DocRED", "code/evaluation.py")
    (tmp / "in" / "res").mkdir(parents=True)
    (tmp / "in" / "ref").mkdir()
    (tmp / "data").mkdir()
    (tmp / "code").mkdir()
    shutil.copy(script, tmp / "code" / "evaluation.py")  # a scratch copy outside the repository
    (tmp / "in" / "res" / "result.json").write_text(json.dumps(preds))
    (tmp / "in" / "ref" / "dev_test.json").write_text(json.dumps(gold))
    (tmp / "data" / "train_annotated.json").write_text(json.dumps(train))
    (tmp / "data" / "train_distant.json").write_text(json.dumps(train))
    subprocess.run([sys.executable, "evaluation.py", str(tmp / "in"), str(tmp / "out")],
                   cwd=tmp / "code", check=True, capture_output=True, text=True, timeout=300)
    lines = (tmp / "out" / "scores.txt").read_text().splitlines()
    return {k: float(v) for k, v in (line.split(": ") for line in lines)}


def _compare(ours: dict[str, float], theirs: dict[str, float]) -> None:
    # the script writes "%f" (6 decimals)
    assert ours["f1"] == pytest.approx(theirs["RE_F1"], abs=5e-7)
    assert ours["evidence_f1"] == pytest.approx(theirs["Evi_F1"], abs=5e-7)
    assert ours["ign_f1"] == pytest.approx(theirs["RE_ignore_annotated_F1"], abs=5e-7)


def test_fixture_scores_equal_the_official_script(tmp_path: Path) -> None:
    preds = json.loads((FIX / "pred.json").read_text())
    gold = json.loads((FIX / "gold.json").read_text())
    train = json.loads((FIX / "train.json").read_text())
    _compare(score(preds, gold, [train]), _official_scores(tmp_path, preds, gold, train))


def test_re_docred_submission_scores_equal_the_official_script(tmp_path: Path) -> None:
    if not (REDOCRED / "dev_revised.json").is_file():
        pytest.skip("shared Re-DocRED files absent")
    gold = json.loads((REDOCRED / "test_revised.json").read_text())[:120]
    train = json.loads((REDOCRED / "dev_revised.json").read_text())
    rng = random.Random(0)
    preds = []
    for doc in gold:  # a realistic submission: most gold facts, wrong relations, duplicates
        n = len(doc["vertexSet"])
        for lab in doc["labels"]:
            if rng.random() < 0.7:
                ev = [e for e in lab["evidence"] if rng.random() < 0.8] + [rng.randrange(3)]
                preds.append({"title": doc["title"], "h_idx": lab["h"], "t_idx": lab["t"],
                              "r": lab["r"], "evidence": ev})
        for _ in range(len(doc["labels"]) // 2):
            h, t = rng.randrange(n), rng.randrange(n)
            if h != t:
                preds.append({"title": doc["title"], "h_idx": h, "t_idx": t,
                              "r": rng.choice(["P17", "P131", "P27", "P150"])})
    preds += preds[:5]  # duplicates: both drop them
    _compare(score(preds, gold, [train]), _official_scores(tmp_path, preds, gold, train))
