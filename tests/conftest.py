"""Shared test setup: keep the text-corpus cache inside pytest's temporary directory."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_text_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    import tasks.text_classification.task as text_task

    monkeypatch.setattr(text_task, "CACHE", tmp_path_factory.getbasetemp() / "mllb-cache")
