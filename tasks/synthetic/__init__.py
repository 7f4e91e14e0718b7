"""The embedded synthetic multi-label benchmark (no download; the default task)."""

from tasks.synthetic.task import SyntheticTask

__all__ = ["SyntheticTask"]
