"""Task plugins and corpus-level metrics.

Importing ``tasks`` registers the built-in tasks (explicit imports, no directory scanning).
"""

from tasks import docred, synthetic, text_classification  # noqa: F401  (register their tasks)
from tasks.base import SPLITS, TASKS, Task, create_task

__all__ = ["SPLITS", "TASKS", "Task", "create_task"]
