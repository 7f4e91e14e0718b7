"""Multi-label text classification plugin (AAPD layout, JSON records, ``datasets``)."""

from tasks.text_classification.task import AAPDTask, TextMultilabelTask

__all__ = ["AAPDTask", "TextMultilabelTask"]
