"""Multi-label image classification: ``coco``, ``nus_wide``, ``voc`` and ``image_multilabel``."""

from tasks.image_classification import task  # noqa: F401  (register the tasks)
