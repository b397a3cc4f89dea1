"""Named registries of methods, datasets, corruptions and backends.

Built-ins are listed here by name and module, and imported only when one of them is asked for, so
``ovss-bench ls`` and config validation never import torch-heavy code. Importing a built-in module
registers its objects with the :meth:`Registry.register` decorator. Third-party packages add entries
through the entry-point groups ``ovss_bench.methods``, ``ovss_bench.datasets``,
``ovss_bench.corruptions`` and ``ovss_bench.backends``; a built-in wins a name clash, and a plugin that
fails to import is reported (``Registry.broken``) without stopping anything else.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any, Generic, TypeVar

from .errors import OvssError, UnknownNameError

log = logging.getLogger(__name__)

T = TypeVar("T")

BUILTIN_SOURCE = "built-in"


class Registry(Generic[T]):
    """A name -> object table with lazy built-ins and entry-point plugins.

    Args:
        kind: plural noun used in messages ("methods").
        group: entry-point group of third-party plugins.
        builtins: built-in name -> module that registers it when imported.
        base: dotted path of the class every entry must subclass ("robustbench_ovss.method:Method"),
            checked at registration so that code using an entry can rely on the base class's
            contract; None = no check.
    """

    def __init__(self, kind: str, group: str, builtins: Mapping[str, str], base: str | None = None):
        self.kind = kind
        self.base = base
        self.group = group
        self._builtin_modules = dict(builtins)
        self._objects: dict[str, T] = {}
        self._sources: dict[str, str] = {}
        self._entry_points: dict[str, metadata.EntryPoint] | None = None
        self.broken: dict[str, str] = {}

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str, obj: T | None = None) -> Any:
        """Register ``obj`` under ``name``; usable as ``@REGISTRY.register("name")``."""
        caller = sys._getframe(1).f_globals.get("__name__", "")

        def deco(o: T) -> T:
            self._add(name, o, registered_by=caller)
            return o

        return deco(obj) if obj is not None else deco

    def _check_base(self, name: str, obj: Any) -> None:
        if self.base is None:
            return
        mod, attr = self.base.split(":")
        base = getattr(importlib.import_module(mod), attr)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise OvssError(f"{self.kind}: {name!r} ({getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}) "
                            f"must be a subclass of {mod}.{attr}")  # fmt: skip

    def _add(self, name: str, obj: T, registered_by: str = "", source: str | None = None) -> None:
        self._check_base(name, obj)
        builtin_module = self._builtin_modules.get(name)
        if builtin_module is not None and registered_by != builtin_module:
            log.warning("%s: %r registered by %s clashes with a built-in; the built-in is kept",
                        self.kind, name, registered_by or source)
            return
        if source is None:
            source = BUILTIN_SOURCE if builtin_module is not None else f"module {registered_by}"
        old = self._objects.get(name)
        if old is not None and old is not obj and self._sources.get(name) != source:
            raise OvssError(
                f"{self.kind}: {name!r} is registered twice ({self._sources.get(name)} and {source}); rename one"
            )
        self._objects[name] = obj
        self._sources[name] = source

    # -- discovery ----------------------------------------------------------------------------
    def _plugin_entry_points(self) -> dict[str, metadata.EntryPoint]:
        if self._entry_points is None:
            eps = {}
            for ep in metadata.entry_points(group=self.group):
                if ep.name in self._builtin_modules:
                    log.warning(
                        "%s: plugin %r (%s) has the name of a built-in and is ignored", self.kind, ep.name, ep.value
                    )
                    continue
                eps.setdefault(ep.name, ep)
            self._entry_points = eps
        return self._entry_points

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names of built-ins, registered objects and (unloaded) plugins matching a glob."""
        all_names = set(self._builtin_modules) | set(self._objects) | set(self._plugin_entry_points())
        all_names -= set(self.broken)
        if pattern:
            all_names = {n for n in all_names if fnmatch.fnmatchcase(n, pattern)}
        return sorted(all_names)

    def expand(self, patterns: Iterable[str]) -> list[str]:
        """Names matching any of ``patterns`` (globs or exact names), in pattern order, no duplicates.

        A pattern that matches nothing is an error with a suggestion.
        """
        out: list[str] = []
        for pat in patterns:
            if any(ch in pat for ch in "*?["):
                matched = self.names(pat)
                if not matched:
                    raise UnknownNameError(f"no {self.kind} match {pat!r}; available: {', '.join(self.names())}")
            else:
                self._check_known(pat)
                matched = [pat]
            out.extend(m for m in matched if m not in out)
        return out

    def source(self, name: str) -> str:
        """Where ``name`` comes from: "built-in", "plugin <dist>" or "module <name>"."""
        if name in self._builtin_modules:
            return BUILTIN_SOURCE
        if name in self._sources:
            return self._sources[name]
        ep = self._plugin_entry_points().get(name)
        if ep is not None:
            dist = getattr(ep, "dist", None)
            return f"plugin {dist.name if dist else ep.value}"
        self._check_known(name)
        return ""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def _check_known(self, name: str) -> None:
        if name in self.broken:
            raise OvssError(f"{self.kind}: plugin {name!r} failed to load: {self.broken[name]}")
        known = self.names()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(f"unknown {self.kind[:-1] if self.kind.endswith('s') else self.kind} {name!r}{hint} (known: {', '.join(known)})")

    # -- loading ------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The object registered as ``name``, importing its module first if needed."""
        if name in self._objects:
            return self._objects[name]
        self._check_known(name)
        if name in self._builtin_modules:
            importlib.import_module(self._builtin_modules[name])
            if name not in self._objects:
                raise RuntimeError(f"{self._builtin_modules[name]} did not register {self.kind} {name!r}")
            return self._objects[name]
        self._load_entry_point(name)
        if name not in self._objects:
            raise OvssError(f"{self.kind}: plugin {name!r} failed to load: {self.broken.get(name, 'unknown error')}")
        return self._objects[name]

    def _load_entry_point(self, name: str) -> None:
        ep = self._plugin_entry_points()[name]
        dist = getattr(ep, "dist", None)
        source = f"plugin {dist.name if dist else ep.value}"
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must never take the built-ins down with it
            self.broken[name] = describe_exception(exc, ep.value)
            log.warning("%s: plugin %r (%s) failed to load: %s", self.kind, name, ep.value, self.broken[name])
            return
        if name in self._objects:  # the module registered itself with the decorator
            self._sources[name] = source
        elif not isinstance(obj, type(sys)):
            try:
                self._add(name, obj, registered_by=ep.value, source=source)
            except OvssError as exc:
                self.broken[name] = str(exc)
                log.warning("%s", exc)
        else:
            self.broken[name] = f"module {ep.value} did not register {name!r}"
            log.warning("%s: %s", self.kind, self.broken[name])

    def load_plugins(self) -> dict[str, str]:
        """Import every plugin of the group; returns ``broken`` (name -> error) for reporting."""
        for name in list(self._plugin_entry_points()):
            if name not in self._objects and name not in self.broken:
                self._load_entry_point(name)
        return dict(self.broken)

    def load_all(self) -> None:
        """Import every built-in and plugin (for listings that show details)."""
        for name in self._builtin_modules:
            self.get(name)
        self.load_plugins()


def describe_exception(exc: BaseException, module: str) -> str:
    """One line for a plugin that failed to import: the module, the exception and the file:line
    of the raise (the innermost frame of its traceback)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    if isinstance(exc, SyntaxError) and exc.filename:  # the raise is in the import machinery; say where the typo is
        where = f" at {exc.filename}:{exc.lineno}"
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return f"module {module}: {text}{where}"


def import_plugin_modules(modules: Iterable[str]) -> None:
    """Import user modules named by ``--plugins`` (they register with the decorators)."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except OvssError:
            raise
        except Exception as exc:
            raise OvssError(f"--plugins: cannot import {describe_exception(exc, mod)}") from None


# Built-in names -> the module that registers them. Kept in sync by tests/test_registry.py.
_MMSEG = "robustbench_ovss.datasets.mmseg"
_IMAGENET_C = "robustbench_ovss.corruptions.imagenet_c"
_EXTRAS = "robustbench_ovss.corruptions.extras"

IMAGENET_C_NAMES = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate",
)  # fmt: skip
EXTRA_CORRUPTION_NAMES = ("rain", "sun_flare", "shadow", "iso_noise", "low_light")

METHODS: Registry[Callable[..., Any]] = Registry(
    "methods",
    "ovss_bench.methods",
    {
        "activesam": "robustbench_ovss.methods.activesam",
        "segearth-ov3": "robustbench_ovss.methods.segearth_ov3",
        "sam3": "robustbench_ovss.methods.sam3",
    },
    base="robustbench_ovss.method:Method",
)
DATASETS: Registry[Callable[..., Any]] = Registry(
    "datasets",
    "ovss_bench.datasets",
    {
        **{
            n: _MMSEG
            for n in ("voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff", "cityscapes", "ade20k")
        },
        "synthetic": "robustbench_ovss.datasets.synthetic",
        "voc-sample": "robustbench_ovss.datasets.voc_sample",
        **{n: "robustbench_ovss.datasets.large_vocab" for n in ("ade847", "pc459")},
        **{f"acdc-{c}": "robustbench_ovss.datasets.acdc" for c in ("fog", "night", "rain", "snow")},
        "dark-zurich": "robustbench_ovss.datasets.acdc",
    },
)
CORRUPTIONS: Registry[Any] = Registry(
    "corruptions",
    "ovss_bench.corruptions",
    {
        **{n: _IMAGENET_C for n in IMAGENET_C_NAMES},
        "glass_blur_fast": _IMAGENET_C,  # opt-in approximation of glass_blur (not the reference output)
        **{n: _EXTRAS for n in EXTRA_CORRUPTION_NAMES},
    },
)
BACKENDS: Registry[Callable[..., Any]] = Registry(
    "backends", "ovss_bench.backends", {"sam3": "robustbench_ovss.backends.sam3"}
)

REGISTRIES: dict[str, Registry[Any]] = {
    "methods": METHODS,
    "datasets": DATASETS,
    "corruptions": CORRUPTIONS,
    "backends": BACKENDS,
}
