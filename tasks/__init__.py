"""Task plugins and corpus-level metrics.

Importing ``tasks`` registers the built-in tasks (explicit imports, no directory scanning).
"""

from tasks import (  # noqa: F401  (register their tasks)
    docred,
    image_classification,
    synthetic,
    text_classification,
)
from tasks.base import SPLITS, TASKS, Task, create_task

__all__ = ["SPLITS", "TASKS", "Task", "create_task"]
