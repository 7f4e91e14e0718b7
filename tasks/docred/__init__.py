"""DocRED document-level relation extraction: the ``docred`` task plugin and the scorer."""

from tasks.docred import task  # noqa: F401  (registers the task)
