"""The one base class of every error a user can fix (a bad option, a malformed file, missing data).

``run_task.py`` prints such an error as ONE line (no traceback unless ``--debug``) and exits with
code 2. Data readers raise subclasses naming the file, line or field, what is wrong and what is
expected; anything else escaping the engine is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: options, config files, data files, paths, disk space."""

    def __str__(self) -> str:  # a KeyError subclass would otherwise repr() the message
        return str(self.args[0]) if self.args else ""
