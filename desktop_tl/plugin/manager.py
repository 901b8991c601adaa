"""The plugin host: finds plugins through entry points, loads each one guarded, and
hands the engine the descriptors they return.

One broken plugin must never take the application down, and must never hide the others:
every entry point is imported, version-checked, registered and asked for its descriptors
inside its own ``try``; whatever goes wrong is kept on that plugin's :class:`PluginRecord`
(with its traceback) for ``desktop-tl plugins`` and the GUI's plugin dialog. Hooks are
called one implementation at a time for the same reason. Two plugins claiming one id are
reported with both distributions named; the first (by distribution name) keeps it.

``DTL_DISABLED_PLUGINS`` (comma-separated entry-point or distribution names) keeps plugins
from being imported at all; ``DTL_STRICT_PLUGINS=1`` re-raises plugin errors instead of
recording them, which is what plugin authors and tests want.

Nothing here imports torch: listing plugins stays fast.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import logging
import os
import re
import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import pluggy

from ..errors import UserError
from ..env import env_flag, env_names
from . import hookspecs
from .descriptors import (
    API_VERSION,
    HEAD_OPTION_KINDS,
    BackboneProvider,
    DatasetError,
    DatasetLoader,
    HeadOption,
    HeadType,
    WeightsStatus,
)

log = logging.getLogger("desktop_tl.plugin")

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
DISABLED_ENV = "DTL_DISABLED_PLUGINS"
STRICT_ENV = "DTL_STRICT_PLUGINS"
EPOCH_END_HOOK = "dtl_on_epoch_end"

#: Plugin statuses, as shown by ``desktop-tl plugins``.
LOADED, FAILED, DISABLED, REFUSED = "loaded", "failed", "disabled", "refused"


@dataclass(frozen=True)
class _Kind:
    """One kind of descriptor a collection hook returns."""

    hook: str
    prefix: str  # used in PluginRecord.provides: "<prefix>:<id>"
    label: str  # for messages
    type: type


_KINDS = (
    _Kind("dtl_backbone_providers", "backbone", "backbone provider", BackboneProvider),
    _Kind("dtl_dataset_loaders", "loader", "dataset loader", DatasetLoader),
    _Kind("dtl_head_types", "head", "head type", HeadType),
)
_KIND_BY_HOOK = {kind.hook: kind for kind in _KINDS}

_HEAD_OPTION_KINDS = HEAD_OPTION_KINDS

#: Every hook this host declares (functions in hookspecs.py marked with @hookspec).
HOOK_NAMES = tuple(
    sorted(
        name
        for name, obj in vars(hookspecs).items()
        if callable(obj) and hasattr(obj, f"{hookspecs.PROJECT_NAME}_spec")
    )
)


# --------------------------------------------------------------------------- errors


class PluginError(RuntimeError):
    """A plugin broke a rule of the plugin API (raised only in strict mode; otherwise
    the problem is recorded on the plugin's :class:`PluginRecord`)."""


class PluginLookupError(UserError, LookupError):
    """A backbone, dataset loader or head was asked for by a name no plugin provides."""


class BackboneNotFoundError(PluginLookupError):
    """No installed provider offers the backbone asked for."""


class AmbiguousBackboneError(PluginLookupError):
    """A bare model name is offered by several providers; ``provider:model`` is needed."""


class BackboneCreateError(UserError):
    """A backbone plugin's ``create()`` raised or returned something that is not a
    Backbone; the message names the plugin and its distribution."""


class LoaderNotFoundError(PluginLookupError, DatasetError):
    """No installed dataset loader has the id asked for."""


class PathNotLoadableError(PluginLookupError, DatasetError):
    """No installed dataset loader can read the path (or the one named cannot)."""


class HeadNotFoundError(PluginLookupError):
    """No installed head type has the id asked for."""


# --------------------------------------------------------------------------- records


@dataclass
class PluginRecord:
    """What happened to one entry point, for ``desktop-tl plugins`` and the GUI.

    ``status`` is ``"loaded"``, ``"failed"`` (import error, bad hook, a hook raised or
    returned the wrong thing), ``"disabled"`` (blocked by name, never imported) or
    ``"refused"`` (written for an incompatible plugin API version). ``error`` holds the
    message followed by the traceback when there is one; ``summary`` is the message
    alone. ``notes`` are warnings that did not stop the plugin (an id it could not have
    because another plugin already holds it, a function that lacks ``@hookimpl``...).
    """

    name: str
    distribution: str
    version: str
    module: str
    provides: list[str] = field(default_factory=list)
    status: str = LOADED
    error: str | None = None
    summary: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``plugin 'name' (distribution version)``, for messages."""
        return f"plugin {self.name!r} ({self.distribution} {self.version})"


# --------------------------------------------------------------------------- discovery


def normalize_name(name: str) -> str:
    """Distribution-name normalisation (PEP 503), also used for entry-point names so
    that ``DTL_DISABLED_PLUGINS=dtl_heads`` and ``dtl-heads`` both work."""
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def discover_entry_points(
    path: Sequence[str] | None = None,
) -> tuple[list[importlib.metadata.EntryPoint], list[str]]:
    """Every entry point in the ``desktop_tl`` group, sorted by (distribution, name).

    ``path`` limits the search to those folders (default: ``sys.path``). As in
    :func:`importlib.metadata.entry_points`, only the first distribution of a given name
    on the path counts. Returns the entry points and a list of problems (a distribution
    whose metadata cannot be read).
    """
    seen: set[str] = set()
    found: list[tuple[str, str, importlib.metadata.EntryPoint]] = []
    problems: list[str] = []
    search = list(sys.path if path is None else path)
    for dist in importlib.metadata.distributions(path=search):
        try:
            # The folder-derived name (what importlib.metadata itself uses) avoids parsing
            # every METADATA file on the path.
            key = normalize_name(getattr(dist, "_normalized_name", None) or dist.metadata["Name"] or "")
            if not key or key in seen:
                continue
            seen.add(key)
            eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
        except Exception as exc:  # a broken install must not stop the others
            where = getattr(dist, "_path", "?")
            problems.append(
                f"could not read the metadata of the distribution at {where}: {type(exc).__name__}: {exc}"
            )
            continue
        found.extend((key, ep.name, ep) for ep in eps)
    found.sort(key=lambda item: (item[0], item[1]))
    return [ep for _, _, ep in found], problems


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _major_minor(version: Any) -> tuple[int, int] | None:
    match = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?(?:\.\d+)*\s*", str(version))
    if not isinstance(version, (str, int, float)) or match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


# --------------------------------------------------------------------------- the host


class PluginHost:
    """Loads every ``desktop_tl`` plugin and serves what they provide.

    ``disabled``: entry-point or distribution names never to import (added to
    ``DTL_DISABLED_PLUGINS``; the GUI passes its setting here). ``strict``: re-raise plugin
    errors (default: ``DTL_STRICT_PLUGINS``). ``path``: where to look for installed
    distributions (default: ``sys.path``).

    Loading happens on :meth:`load`, or on first use of any lookup. The host is safe to
    share between threads.

    Lookups happen here and nowhere else, each with its own error type:
    :meth:`resolve_backbone` (a backbone by name: :class:`BackboneNotFoundError`,
    :class:`AmbiguousBackboneError`), :meth:`loader_for_path` (the loader for a path, from
    what loaders declare: :class:`LoaderNotFoundError`, :class:`PathNotLoadableError`),
    :meth:`head_type` (:class:`HeadNotFoundError`) and :meth:`backbone_for_weights_file`.
    The engine, given any host, uses the same rules through :func:`choose_loader` and
    :func:`find_head`.
    """

    def __init__(
        self, disabled: Iterable[str] = (), strict: bool | None = None, *, path: Sequence[str] | None = None
    ) -> None:
        self.disabled: tuple[str, ...] = tuple(dict.fromkeys([*env_names(DISABLED_ENV), *disabled]))
        self.strict = env_flag(STRICT_ENV) if strict is None else bool(strict)
        self.path = None if path is None else [str(p) for p in path]
        self.records: list[PluginRecord] = []
        self.problems: list[str] = []
        self._lock = threading.RLock()
        self._loaded = False
        self._reset()

    def _reset(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self.records = []
        self.problems = []
        self._plugin_record: dict[int, PluginRecord] = {}  # id(plugin object) -> record
        self._order: dict[int, int] = {}  # id(plugin object) -> load position
        self._items: dict[str, dict[str, Any]] = {kind.prefix: {} for kind in _KINDS}
        self._owners: dict[str, dict[str, PluginRecord]] = {kind.prefix: {} for kind in _KINDS}
        self._model_lists: dict[str, tuple[str, ...]] = {}
        #: Plugin calls that raised after loading (a hook, a provider's create), each as
        #: its message followed by the traceback, for `desktop-tl plugins` style reports.
        self.hook_failures: list[str] = []

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """(Re)load every entry point, each inside its own guard."""
        with self._lock:
            self._reset()
            entry_points, problems = discover_entry_points(self.path)
            self.problems.extend(problems)
            for ep in entry_points:
                self._load_entry_point(ep)
            self._report_unmatched_disabled()
            self._loaded = True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self.load()

    def _is_disabled(self, record: PluginRecord) -> bool:
        blocked = {normalize_name(name) for name in self.disabled}
        return bool(blocked & {normalize_name(record.name), normalize_name(record.distribution)})

    def _report_unmatched_disabled(self) -> None:
        known = {normalize_name(r.name) for r in self.records}
        known |= {normalize_name(r.distribution) for r in self.records}
        for name in self.disabled:
            if normalize_name(name) not in known:
                self.problems.append(
                    f"{name!r} is listed as disabled ({DISABLED_ENV} or the plugin settings) "
                    "but no installed plugin or distribution has that name; "
                    "`desktop-tl plugins` lists the names"
                )

    def _load_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        dist = ep.dist
        record = PluginRecord(
            name=ep.name,
            distribution=(dist.metadata["Name"] if dist is not None else None) or "?",
            version=(dist.version if dist is not None else None) or "?",
            module=ep.value,
        )
        self.records.append(record)
        if self._is_disabled(record):
            record.status = DISABLED
            return

        try:
            plugin = ep.load()
        except (Exception, SystemExit) as exc:
            self._fail(record, f"could not be imported: {_describe(exc)}", exc)
            return
        if plugin is None:
            self._fail(record, f"entry point {ep.value!r} names None, not a plugin module")
            return

        api = self._check_api_version(record, ep, plugin)
        if api is None:
            return

        pm_name = f"{record.distribution}::{record.name}"
        try:
            self._pm.register(plugin, name=pm_name)
        except pluggy.PluginValidationError as exc:
            self._fail(record, f"has a bad hook implementation: {_one_line(exc)}", exc)
            return
        except (Exception, SystemExit) as exc:
            self._fail(record, f"could not be registered: {_one_line(exc)}", exc)
            return
        self._plugin_record[id(plugin)] = record
        self._order[id(plugin)] = len(self._order)

        if not self._check_hooks(record, plugin, api):
            self._pm.unregister(plugin)
            return
        collected = self._collect(record, plugin)
        if collected is None:
            self._pm.unregister(plugin)
            return
        self._merge(record, collected)
        if self._own_impls(plugin, EPOCH_END_HOOK):
            record.provides.append(f"hook:{EPOCH_END_HOOK}")
        self._note_unmarked_functions(record, plugin)

    def _fail(
        self, record: PluginRecord, summary: str, exc: BaseException | None = None, status: str = FAILED
    ) -> None:
        record.status = status
        record.summary = summary
        record.provides = []
        if exc is not None:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            record.error = f"{summary}\n\n{tb.rstrip()}"
        else:
            record.error = summary
        log.warning("%s %s", record.label, summary)
        if self.strict:
            if exc is not None:
                raise exc
            raise PluginError(f"{record.label} {summary}")

    def _check_api_version(
        self, record: PluginRecord, ep: importlib.metadata.EntryPoint, plugin: Any
    ) -> tuple[int, int] | None:
        host = _major_minor(API_VERSION)
        assert host is not None
        supported = f"{host[0]}.x (this desktop_tl implements plugin API {API_VERSION})"
        declared = getattr(plugin, "DTL_API_VERSION", None)
        if declared is None:  # an entry point naming an object: look in its module too
            declared = getattr(sys.modules.get(ep.module), "DTL_API_VERSION", None)
        if declared is None:
            self._fail(
                record,
                f"does not declare which plugin API it targets (DTL_API_VERSION is missing "
                f"in {ep.module}); this desktop_tl supports {supported}. Its author should "
                f'add DTL_API_VERSION = "{API_VERSION}" to the plugin module once it works '
                "with this API",
                status=REFUSED,
            )
            return None
        version = _major_minor(declared)
        if version is None:
            self._fail(
                record,
                f"declares DTL_API_VERSION = {declared!r}, which is not a version like "
                f'"{API_VERSION}"; this desktop_tl supports {supported}',
                status=REFUSED,
            )
            return None
        if version[0] != host[0]:
            self._fail(
                record,
                f"targets plugin API {declared}, but this desktop_tl supports {supported}. "
                f"Install a release of {record.distribution} written for plugin API "
                f"{host[0]}.x, or a desktop_tl that supports API {version[0]}.x",
                status=REFUSED,
            )
            return None
        if version[1] > host[1]:
            record.notes.append(
                f"written for plugin API {declared}, newer than this desktop_tl's "
                f"{API_VERSION}; features added after {API_VERSION} are not available"
            )
        return version

    def _own_impls(self, plugin: Any, hook_name: str) -> list[pluggy.HookImpl]:
        caller = getattr(self._pm.hook, hook_name, None)
        if caller is None:
            return []
        return [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]

    def _check_hooks(self, record: PluginRecord, plugin: Any, api: tuple[int, int]) -> bool:
        """Hooks pluggy accepts but this host cannot use: unknown names, wrappers."""
        host = _major_minor(API_VERSION)
        assert host is not None
        known = list(HOOK_NAMES)
        for caller in self._pm.get_hookcallers(plugin) or []:
            impls = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]
            if not caller.has_spec():
                if api[1] > host[1] or all(impl.optionalhook for impl in impls):
                    record.notes.append(
                        f"implements {caller.name}, which this desktop_tl does not know; it is never called"
                    )
                    continue
                close = difflib.get_close_matches(caller.name, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self._fail(
                    record,
                    f"implements {caller.name}, which is not a desktop_tl hook{hint}; "
                    f"the hooks are: {', '.join(known)}",
                )
                return False
            for impl in impls:
                if impl.hookwrapper or impl.wrapper:
                    self._fail(
                        record,
                        f"declares {caller.name} as a hook wrapper; desktop_tl hooks are "
                        "plain functions (remove wrapper=True / hookwrapper=True)",
                    )
                    return False
        return True

    def _collect(self, record: PluginRecord, plugin: Any) -> dict[str, list[Any]] | None:
        """Call this plugin's collection hooks; None when any of them misbehaves."""
        collected: dict[str, list[Any]] = {}
        for kind in _KINDS:
            items: list[Any] = []
            for impl in self._own_impls(plugin, kind.hook):
                try:
                    result = impl.function()
                except (Exception, SystemExit) as exc:
                    self._fail(record, f"raised in {kind.hook}: {_describe(exc)}", exc)
                    return None
                problem = _check_result(kind, result)
                if problem is not None:
                    self._fail(record, f"returned a bad value from {kind.hook}: {problem}")
                    return None
                items.extend(result or ())
            collected[kind.prefix] = items
        return collected

    def _merge(self, record: PluginRecord, collected: dict[str, list[Any]]) -> None:
        for kind in _KINDS:
            items, owners = self._items[kind.prefix], self._owners[kind.prefix]
            for item in collected[kind.prefix]:
                owner = owners.get(item.id)
                if owner is None:
                    items[item.id] = item
                    owners[item.id] = record
                    record.provides.append(f"{kind.prefix}:{item.id}")
                    continue
                if owner is record:
                    message = (
                        f"{record.label} returns the {kind.label} id {item.id!r} more than "
                        "once; only the first is used"
                    )
                else:
                    message = (
                        f"{kind.label} id {item.id!r} is provided by both {owner.label} and "
                        f"{record.label}; {owner.distribution} keeps it. Uninstall one of "
                        f"them or disable one with {DISABLED_ENV}={record.name}"
                    )
                    record.notes.append(
                        f"{kind.prefix}:{item.id} not registered: {owner.label} already provides that id"
                    )
                self.problems.append(message)
                log.warning("%s", message)
                if self.strict:
                    raise PluginError(message)

    def _note_unmarked_functions(self, record: PluginRecord, plugin: Any) -> None:
        hooked = {caller.name for caller in self._pm.get_hookcallers(plugin) or []}
        for name in HOOK_NAMES:
            if name not in hooked and callable(getattr(plugin, name, None)):
                record.notes.append(
                    f"{name} is not marked with @hookimpl (from desktop_tl.plugin import "
                    "hookimpl), so it is never called"
                )

    # ------------------------------------------------------------------ what plugins provide

    def backbone_providers(self) -> dict[str, BackboneProvider]:
        """Backbone providers by id, in plugin load order."""
        self._ensure_loaded()
        return dict(self._items["backbone"])

    def dataset_loaders(self) -> dict[str, DatasetLoader]:
        """Dataset loaders by id, in plugin load order."""
        self._ensure_loaded()
        return dict(self._items["loader"])

    def head_types(self) -> dict[str, HeadType]:
        """Head types by id, in plugin load order."""
        self._ensure_loaded()
        return dict(self._items["head"])

    def owner(self, kind: str, item_id: str) -> PluginRecord | None:
        """The record of the plugin that provides ``kind`` (backbone, loader, head) ``item_id``."""
        self._ensure_loaded()
        return self._owners.get(kind, {}).get(item_id)

    def loader_for_path(self, path: str, loader_id: str = "auto") -> DatasetLoader:
        """The loader for ``path``: the one named ``loader_id`` (it must accept the path),
        or for ``"auto"`` the first that accepts it (see :func:`choose_loader`)."""
        return choose_loader(self.dataset_loaders(), path, loader_id, strict=self.strict)

    def head_type(self, head_id: str) -> HeadType:
        """The head type with this id; :class:`HeadNotFoundError` (with suggestions) if none."""
        return find_head(self.head_types(), head_id)

    def provider_models(self, provider_id: str) -> tuple[str, ...]:
        """``list_models()`` of one provider, cached for the life of this host. A provider
        whose ``list_models`` fails is reported in :attr:`problems` and lists nothing."""
        providers = self.backbone_providers()
        with self._lock:
            cached = self._model_lists.get(provider_id)
            if cached is not None:
                return cached
            provider = providers.get(provider_id)
            if provider is None:
                return ()
            try:
                models = provider.list_models()
                if isinstance(models, (str, bytes)) or not all(isinstance(m, str) for m in models):
                    raise TypeError(f"list_models() must return a list of str, got {models!r:.80}")
                names = tuple(models)
                if not names:
                    raise ValueError("list_models() returned no models")
            except Exception as exc:
                if self.strict:
                    raise
                owner = self._owners["backbone"].get(provider_id)
                message = (
                    f"backbone provider {provider_id!r}"
                    + (f" of {owner.label}" if owner else "")
                    + f" failed to list its models: {_describe(exc)}"
                )
                self.problems.append(message)
                log.warning("%s", message)
                names = ()
            self._model_lists[provider_id] = names
            return names

    def weights_statuses(self, provider_id: str) -> dict[str, WeightsStatus]:
        """Whether each model of a provider has pretrained weights on this machine
        (``weights_status`` of every model; only file existence is checked). A model whose
        status the plugin fails to report gets source ``"error"`` and the reason."""
        provider = self.backbone_providers().get(provider_id)
        if provider is None:
            return {}
        statuses: dict[str, WeightsStatus] = {}
        for model in self.provider_models(provider_id):
            try:
                status = provider.weights_status(model)
                if not isinstance(status, WeightsStatus):
                    raise TypeError(f"weights_status returned {type(status).__name__}, not a WeightsStatus")
            except Exception as exc:  # one broken model must not hide the others
                if self.strict:
                    raise
                status = WeightsStatus(False, "error", None, f"weights_status failed: {_describe(exc)}")
            statuses[model] = status
        return statuses

    def resolve_backbone(self, name: str) -> tuple[BackboneProvider, str]:
        """``"provider:model"`` or a bare model name -> (provider, model name).

        A bare name is looked up in every provider's model list; it must be offered by
        exactly one. Case is ignored when that leaves a single match. Unknown names get
        close matches suggested.
        """
        text = (name or "").strip()
        providers = self.backbone_providers()
        if not providers:
            raise BackboneNotFoundError(
                f"no backbone providers are installed, so {text!r} cannot be found. "
                "Install a backbone plugin (for example pip install -e "
                "plugins/dtl_efficientnet_lite) and check `desktop-tl plugins`" + self._disabled_hint()
            )
        if not text:
            raise BackboneNotFoundError(
                "no backbone given: name a model such as "
                f"{self._example_names(providers)} (`desktop-tl models` lists them)"
            )
        if ":" in text:
            return self._resolve_qualified(text, providers)

        owners: dict[str, list[str]] = {}  # model name -> ids of the providers offering it
        for pid in providers:
            for model in self.provider_models(pid):
                owners.setdefault(model, []).append(pid)
        matches = [(pid, text) for pid in owners.get(text, [])]
        if not matches:
            matches = [
                (pid, model)
                for model, pids in owners.items()
                if model.lower() == text.lower()
                for pid in pids
            ]
        if len(matches) == 1:
            pid, model = matches[0]
            return providers[pid], model
        if len(matches) > 1:
            choices = ", ".join(f"{pid}:{model}" for pid, model in matches)
            raise AmbiguousBackboneError(
                f"backbone {text!r} is offered by several providers: {choices}. Name one as provider:model"
            )
        close = difflib.get_close_matches(text, list(owners), n=5, cutoff=0.6)
        shown = [m if len(owners[m]) == 1 else f"{pid}:{m}" for m in close for pid in owners[m]]
        hint = f"; did you mean {', '.join(shown)}?" if shown else ""
        raise BackboneNotFoundError(
            f"no installed backbone provider offers a model named {text!r}{hint} "
            f"(`desktop-tl models` lists them; providers: {', '.join(providers)})" + self._disabled_hint()
        )

    def backbone_for_weights_file(self, file_name: str) -> tuple[BackboneProvider, str]:
        """The (provider, model) whose usual weights file is ``file_name``, or whose model
        name is the part of the name before ``-<hash>``; :class:`BackboneNotFoundError`
        when none fits, :class:`AmbiguousBackboneError` when several do."""
        from .weights import local_file_names

        providers = self.backbone_providers()
        exact = [
            (provider, model)
            for provider in providers.values()
            for model in self.provider_models(provider.id)
            if any(file_name in local_file_names(usual) for usual in _usual_file_names(provider, model))
        ]
        if len(exact) == 1:
            return exact[0]
        stem = re.sub(r"-[a-f0-9]{6,}$", "", os.path.splitext(file_name)[0])
        by_name = [
            (provider, model)
            for provider in providers.values()
            for model in self.provider_models(provider.id)
            if model == stem
        ]
        if len(by_name) == 1:
            return by_name[0]
        candidates = exact or by_name
        if candidates:
            names = ", ".join(f"{p.id}:{m}" for p, m in candidates)
            raise AmbiguousBackboneError(
                f"the file name {file_name} fits several models ({names}); say which with --model NAME"
            )
        raise BackboneNotFoundError(
            f"cannot tell from the file name {file_name} which model these weights are for; "
            "say which with --model NAME (`desktop-tl models` lists the names)"
        )

    def _resolve_qualified(
        self, text: str, providers: dict[str, BackboneProvider]
    ) -> tuple[BackboneProvider, str]:
        provider_id, _, model = text.partition(":")
        provider_id, model = provider_id.strip(), model.strip()
        if provider_id not in providers:
            folded = [pid for pid in providers if pid.lower() == provider_id.lower()]
            if len(folded) != 1:
                raise BackboneNotFoundError(
                    f"no backbone provider has the id {provider_id!r} (in {text!r})"
                    + _suggest(provider_id, list(providers))
                    + _installed("backbone providers", providers)
                    + self._disabled_hint()
                )
            provider_id = folded[0]
        models = self.provider_models(provider_id)
        if model in models:
            return providers[provider_id], model
        folded = [m for m in models if m.lower() == model.lower()]
        if len(folded) == 1:
            return providers[provider_id], folded[0]
        if not model:
            raise BackboneNotFoundError(
                f"{text!r} names the provider {provider_id!r} but no model; "
                f"write {provider_id}:MODEL, e.g. {provider_id}:{models[0] if models else '...'}"
            )
        raise BackboneNotFoundError(
            f"backbone provider {provider_id!r} has no model named {model!r}"
            + _suggest(model, list(models))
            + " (`desktop-tl models` lists them)"
        )

    def _disabled_hint(self) -> str:
        """Which plugins are switched off, for a lookup that found nothing: a disabled
        plugin is never imported, so what it would provide is unknown, but it is the
        likely reason."""
        disabled = [r for r in self.records if r.status == DISABLED]
        if not disabled:
            return ""
        names = ", ".join(f"{r.name} ({r.distribution})" for r in disabled)
        return (
            f". Disabled plugins, which may provide it: {names}; enable them by removing "
            f"them from {DISABLED_ENV} or from the disabled plugins in the window's plugin "
            "settings"
        )

    def create_backbone(self, provider: BackboneProvider, model_name: str, weights: str) -> Any:
        """``provider.create(model_name, weights)``, guarded: a :class:`UserError` (no
        weights, a bad file...) passes through; anything else the plugin raises, or a
        result that is not a :class:`~desktop_tl.plugin.descriptors.Backbone`, becomes a
        :class:`BackboneCreateError` naming the plugin and its distribution. The
        traceback is kept in :attr:`hook_failures` and the debug log; strict mode
        re-raises the original error."""
        from .descriptors import Backbone

        self._ensure_loaded()
        owner = self._owners["backbone"].get(provider.id)
        who = f"backbone provider {provider.id!r}" + (f" of {owner.label}" if owner else "")
        call = f"create({model_name!r}, weights={weights!r})"
        try:
            backbone = provider.create(model_name, weights)
        except UserError:
            raise
        except Exception as exc:
            if self.strict:
                raise
            message = f"{who} failed in {call}: {_describe(exc)}"
            log.debug("%s", message, exc_info=exc)
            self.hook_failures.append(_with_traceback(message, exc))
            raise BackboneCreateError(message + self._create_way_out(owner)) from exc
        problem = _backbone_problem(backbone, Backbone)
        if problem is not None:
            message = f"{who} returned {problem} from {call}; expected a Backbone"
            if self.strict:
                raise PluginError(message)
            self.hook_failures.append(message)
            raise BackboneCreateError(message + self._create_way_out(owner))
        return backbone

    def _create_way_out(self, owner: PluginRecord | None) -> str:
        name = owner.name if owner else "the plugin"
        return (
            f". This is a fault in the plugin: report it to its author, choose another "
            f"backbone, or disable it with {DISABLED_ENV}={name} "
            f"({STRICT_ENV}=1 shows the full traceback)"
        )

    def _example_names(self, providers: dict[str, BackboneProvider]) -> str:
        for pid in providers:
            models = self.provider_models(pid)
            if models:
                return f"{models[0]!r} or {pid + ':' + models[0]!r}"
        return "'provider:model'"

    # ------------------------------------------------------------------ notifications

    def notify_epoch_end(self, run_dir: str, epoch: int, metrics: dict[str, Any]) -> list[str]:
        """Call ``dtl_on_epoch_end`` on every plugin, one at a time; a plugin that raises
        is logged and named in the returned list of messages, and the others still run
        (unless strict, where the error is re-raised)."""
        self._ensure_loaded()
        return self._notify(EPOCH_END_HOOK, {"run_dir": str(run_dir), "epoch": epoch, "metrics": metrics})

    def _notify(self, hook_name: str, kwargs: dict[str, Any]) -> list[str]:
        caller = getattr(self._pm.hook, hook_name, None)
        if caller is None:
            return []
        impls = sorted(caller.get_hookimpls(), key=lambda i: self._order.get(id(i.plugin), 0))
        errors: list[str] = []
        for impl in impls:
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:
                if self.strict:
                    raise
                record = self._plugin_record.get(id(impl.plugin))
                who = record.label if record else repr(impl.plugin_name)
                message = f"{who} raised in {hook_name}: {_describe(exc)}"
                # The caller reports the message; with no logging set up, a warning here
                # would print the raw traceback on stderr. Kept at debug for those who log.
                log.debug("%s", message, exc_info=exc)
                self.hook_failures.append(_with_traceback(message, exc))
                errors.append(message)
        return errors


# --------------------------------------------------------------------------- lookups
# Module functions over what a host serves, so that the engine's lookups given any host
# (the real one, or a test's that serves a few plugins) follow the same rules.


def find_head(heads: dict[str, HeadType], head_id: str) -> HeadType:
    """``heads[head_id]``, or :class:`HeadNotFoundError` with suggestions."""
    if head_id in heads:
        return heads[head_id]
    raise HeadNotFoundError(
        f"no head type has the id {head_id!r}"
        + _suggest(head_id, list(heads))
        + _installed("head types", heads)
        + ("" if heads else "; is the dtl-heads plugin installed?")
    )


def _loader_by_id(loaders: dict[str, DatasetLoader], loader_id: str) -> DatasetLoader:
    if loader_id in loaders:
        return loaders[loader_id]
    raise LoaderNotFoundError(
        f"no dataset loader has the id {loader_id!r}"
        + _suggest(loader_id, list(loaders))
        + _installed("dataset loaders", loaders)
        + "; or use auto"
    )


def loader_candidates(loaders: Iterable[DatasetLoader], path: str) -> list[DatasetLoader]:
    """The loaders that may read ``path`` by its kind and file name, in the order they are
    asked: highest ``priority`` first, then plugin order."""
    fitting = [loader for loader in loaders if loader.matches_name(str(path))]
    return sorted(fitting, key=lambda loader: -loader.priority)  # stable: plugin order


def choose_loader(
    loaders: dict[str, DatasetLoader], path: str, loader_id: str = "auto", *, strict: bool = False
) -> DatasetLoader:
    """The loader named ``loader_id`` (which must accept ``path``), or for ``"auto"`` the
    first of :func:`loader_candidates` whose ``can_load`` accepts it. A loader whose
    ``can_load`` raises is passed over (re-raised when ``strict``)."""
    path = str(path)
    if not loaders:
        raise LoaderNotFoundError(
            "no dataset loaders are installed; install the dtl-loaders plugin "
            "(pip install plugins/dtl_loaders) or see `desktop-tl plugins` for one that "
            "failed to load"
        )
    if loader_id and loader_id != "auto":
        loader = _loader_by_id(loaders, loader_id)
        if not _accepts(loader, path, strict):
            raise PathNotLoadableError(
                f"the {loader.display_name} loader cannot read {path} (it expects a "
                f"{loader.path_kind}); choose another path or set the loader to auto"
            )
        return loader
    for loader in loader_candidates(loaders.values(), path):
        if _accepts(loader, path, strict):
            return loader
    patterns = sorted({p for loader in loaders.values() for p in loader.file_patterns})
    files = f", or a file matching {' '.join(patterns)}" if patterns else ""
    raise PathNotLoadableError(
        f"no installed dataset loader can read {path}; use a folder with one subfolder of "
        f"images per class{files} (installed dataset loaders: {', '.join(loaders)})"
    )


def _accepts(loader: DatasetLoader, path: str, strict: bool) -> bool:
    try:
        return bool(loader.can_load(path))
    except Exception as exc:  # a loader's probe must not hide the others
        if strict:
            raise
        log.warning("dataset loader %r raised in can_load(%r): %s", loader.id, path, _describe(exc))
        return False


# --------------------------------------------------------------------------- helpers


def _usual_file_names(provider: BackboneProvider, model: str) -> Sequence[str]:
    try:
        return provider.weight_file_names(model)  # type: ignore[misc]
    except Exception:  # a provider's listing problem must not block recognising others
        return ()


def _with_traceback(message: str, exc: BaseException) -> str:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{message}\n\n{tb.rstrip()}"


def _backbone_problem(backbone: Any, backbone_type: type) -> str | None:
    """What is wrong with what ``create()`` returned, or None when it is usable."""
    if not isinstance(backbone, backbone_type):
        return f"{type(backbone).__name__} {backbone!r:.60}"
    from torch import nn  # only ever reached after create() ran, so torch is loaded

    if not isinstance(backbone.module, nn.Module):
        return f"a Backbone whose module is {type(backbone.module).__name__}, not a torch module"
    if (
        isinstance(backbone.feature_dim, bool)
        or not isinstance(backbone.feature_dim, int)
        or backbone.feature_dim < 1
    ):
        return f"a Backbone with feature_dim {backbone.feature_dim!r} (a positive int is needed)"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _suggest(text: str, names: list[str]) -> str:
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _installed(what: str, items: dict[str, Any]) -> str:
    if not items:
        return f"; no {what} are installed (see `desktop-tl plugins`)"
    return f" (installed {what}: {', '.join(items)})"


def _check_result(kind: _Kind, result: Any) -> str | None:
    """Why a collection hook's return value is unusable, or None when it is fine."""
    expected = f"a list of {kind.type.__name__} (from desktop_tl.plugin.descriptors)"
    if result is None:
        return None
    if isinstance(result, (str, bytes, dict)) or not isinstance(result, (list, tuple)):
        return f"got {type(result).__name__} {result!r:.60}; expected {expected}"
    for position, item in enumerate(result):
        if not isinstance(item, kind.type):
            return f"item {position} is {type(item).__name__} {item!r:.60}; expected {expected}"
        problem = _check_descriptor(kind, item)
        if problem is not None:
            return f"{kind.type.__name__} {getattr(item, 'id', '?')!r}: {problem}"
    return None


def _check_descriptor(kind: _Kind, item: Any) -> str | None:
    if not isinstance(item.id, str) or not item.id.strip() or item.id != item.id.strip():
        return "id must be a non-empty string without surrounding spaces"
    if kind.type is BackboneProvider and (":" in item.id or any(c.isspace() for c in item.id)):
        return "a backbone provider id cannot contain ':' or spaces (users write provider:model)"
    callables: tuple[str, ...] = {
        BackboneProvider: ("list_models", "create", "weights_status", "weight_file_names"),
        DatasetLoader: ("can_load", "load"),
        HeadType: ("build",),
    }[kind.type]
    for attr in callables:
        if not callable(getattr(item, attr)):
            return f"{attr} must be callable, got {type(getattr(item, attr)).__name__}"
    if kind.type is HeadType:
        for option in item.options:
            if not isinstance(option, HeadOption):
                return f"options must be HeadOption objects, got {type(option).__name__}"
            if option.kind not in _HEAD_OPTION_KINDS:
                return (
                    f"option {option.name!r} has kind {option.kind!r}; expected one of "
                    f"{', '.join(_HEAD_OPTION_KINDS)}"
                )
            if option.kind == "choice" and option.default not in option.choices:
                return f"choice option {option.name!r} has a default not among its choices"
    return None


# --------------------------------------------------------------------------- process-wide host

_host: PluginHost | None = None
_host_lock = threading.Lock()
_host_disabled: tuple[str, ...] = ()


def get_host(refresh: bool = False, *, disabled: Iterable[str] | None = None) -> PluginHost:
    """The process-wide plugin host, loaded on first use (thread-safe).

    ``refresh`` reloads every plugin. ``disabled`` sets the names blocked in addition
    to ``DTL_DISABLED_PLUGINS`` (the GUI's setting); changing it reloads.
    """
    global _host, _host_disabled
    with _host_lock:
        if disabled is not None and tuple(disabled) != _host_disabled:
            _host_disabled = tuple(disabled)
            refresh = True
        if _host is None or refresh:
            host = PluginHost(disabled=_host_disabled)
            host.load()
            _host = host
        return _host


__all__ = [
    "AmbiguousBackboneError",
    "BackboneCreateError",
    "BackboneNotFoundError",
    "DISABLED",
    "FAILED",
    "HOOK_NAMES",
    "HeadNotFoundError",
    "LOADED",
    "LoaderNotFoundError",
    "PathNotLoadableError",
    "PluginError",
    "PluginHost",
    "PluginLookupError",
    "PluginRecord",
    "REFUSED",
    "choose_loader",
    "discover_entry_points",
    "find_head",
    "loader_candidates",
    "get_host",
    "normalize_name",
]
