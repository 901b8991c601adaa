"""The plugin host against fake installed distributions, good and broken."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from desktop_tl.errors import UserError
from desktop_tl.plugin import manager
from desktop_tl.plugin.descriptors import API_VERSION
from desktop_tl.plugin.manager import (
    AmbiguousBackboneError,
    BackboneNotFoundError,
    HeadNotFoundError,
    LoaderNotFoundError,
    PathNotLoadableError,
    PluginError,
    PluginHost,
    get_host,
)

from .fakedist import GOOD_HEADER, python_env, record

GOOD_PLUGIN = (
    GOOD_HEADER
    + '''
import pathlib

EPOCHS = []

def _create(model_name, weights):
    from torch import nn
    width = int(model_name.removeprefix("tiny"))
    module = nn.Sequential()
    module.add_module("stem", nn.Conv2d(3, width, 3, stride=2))
    module.add_module("pool", nn.AdaptiveAvgPool2d(1))
    module.add_module("flatten", nn.Flatten())
    return Backbone(module, feature_dim=width, preprocessing=Preprocessing(resize=36, crop=32),
                    provenance=WeightsProvenance(source="random", pretrained=False))

@hookimpl
def dtl_backbone_providers():
    return [BackboneProvider(
        id="fake-tiny", display_name="Tiny nets", list_models=lambda: ["tiny4", "tiny8"],
        create=_create, weights_status=lambda name: WeightsStatus(False, "missing"))]

def _load(path, options):
    root = pathlib.Path(path)
    samples = [Sample(str(p), p.parent.name) for p in sorted(root.glob("*/*.png"))]
    return LoadedDataset(samples, sorted({s.label for s in samples}), str(root))

@hookimpl
def dtl_dataset_loaders():
    return [DatasetLoader(id="fake-folder", display_name="Class folders",
                          can_load=lambda path: pathlib.Path(path).is_dir(), load=_load)]

def _build(in_features, num_classes, hidden=0):
    from torch import nn
    if hidden:
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(),
                             nn.Linear(hidden, num_classes))
    return nn.Linear(in_features, num_classes)

@hookimpl
def dtl_head_types():
    return (HeadType(id="fake-linear", display_name="Linear", build=_build,
                     options=(HeadOption("hidden", "int", 0, minimum=0),)),)

@hookimpl
def dtl_on_epoch_end(run_dir, epoch, metrics):
    EPOCHS.append((run_dir, epoch, metrics["val_acc"]))
'''
)


def head_plugin(*head_ids: str, api: str | None = API_VERSION) -> str:
    """Source of a plugin offering linear heads with these ids."""
    version = "" if api is None else f"DTL_API_VERSION = {api!r}"
    heads = ", ".join(f"HeadType(id={h!r}, display_name={h!r}, build=_build)" for h in head_ids)
    return f'''
        from desktop_tl.plugin import hookimpl
        from desktop_tl.plugin.descriptors import HeadType
        {version}

        def _build(in_features, num_classes):
            from torch import nn
            return nn.Linear(in_features, num_classes)

        @hookimpl
        def dtl_head_types():
            return [{heads}]
        '''


def backbone_plugin(provider_id: str, models: list[str]) -> str:
    """Source of a plugin with one provider that counts its list_models calls."""
    return (
        GOOD_HEADER
        + f'''
LIST_CALLS = []

def _list_models():
    LIST_CALLS.append(1)
    return {models!r}

@hookimpl
def dtl_backbone_providers():
    return [BackboneProvider(id={provider_id!r}, display_name={provider_id!r},
                             list_models=_list_models, create=lambda name, weights: None,
                             weights_status=lambda name: WeightsStatus(False, "missing"))]
'''
    )


# --------------------------------------------------------------------------- good plugins


def test_good_plugin_provides_each_descriptor_type(fake_site, tmp_path):
    import torch
    from PIL import Image

    fake_site.add("fake-good", {"fake_good_plugin": GOOD_PLUGIN}, version="2.3.1")
    host = fake_site.host()

    rec = record(host, "fake_good_plugin")
    assert (rec.status, rec.error, rec.distribution, rec.version) == ("loaded", None, "fake-good", "2.3.1")
    assert rec.provides == [
        "backbone:fake-tiny",
        "loader:fake-folder",
        "head:fake-linear",
        "hook:dtl_on_epoch_end",
    ]
    assert host.problems == []

    provider, model_name = host.resolve_backbone("tiny8")
    backbone = provider.create(model_name, "none")
    head = host.head_types()["fake-linear"].build(backbone.feature_dim, 3, hidden=5)
    logits = head(backbone.module(torch.rand(2, 3, 32, 32)))
    assert logits.shape == (2, 3)

    data = tmp_path / "data"
    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (data / label).mkdir(parents=True)
        Image.new("RGB", (8, 8), colour).save(data / label / "a.png")
    loader = host.loader_for_path(str(data))
    assert loader is host.loader_for_path(str(data), "fake-folder")
    loaded = loader.load(str(data), {})
    assert loaded.class_names == ["blue", "red"] and len(loaded.samples) == 2

    assert host.notify_epoch_end(tmp_path, 3, {"val_acc": 0.75}) == []
    assert sys.modules["fake_good_plugin"].EPOCHS == [(str(tmp_path), 3, 0.75)]


def test_default_host_finds_distributions_on_sys_path(fake_site):
    fake_site.add("fake-on-path", {"fake_on_path": head_plugin("fake-on-path-head")})
    host = PluginHost()  # no path: searches sys.path, as the application does
    host.load()
    rec = record(host, "fake_on_path")
    assert rec.status == "loaded" and rec.provides == ["head:fake-on-path-head"]


def test_host_loads_lazily_on_first_lookup(fake_site):
    fake_site.add("fake-lazy", {"fake_lazy": head_plugin("fake-lazy-head")})
    host = PluginHost(path=[str(fake_site.root)])
    assert host.records == []
    assert "fake-lazy-head" in host.head_types()
    assert record(host, "fake_lazy").status == "loaded"


def test_entry_point_naming_an_object_takes_the_version_from_its_module(fake_site):
    source = '''
        from desktop_tl.plugin import hookimpl
        from desktop_tl.plugin.descriptors import HeadType
        DTL_API_VERSION = "1.0"

        class Plugin:
            @staticmethod
            @hookimpl
            def dtl_head_types():
                return [HeadType(id="fake-object-head", display_name="x", build=print)]
        '''
    fake_site.add("fake-object", {"fake_object": source}, entry_points={"obj": "fake_object:Plugin"})
    rec = record(fake_site.host(), "obj")
    assert rec.status == "loaded" and rec.module == "fake_object:Plugin"
    assert rec.provides == ["head:fake-object-head"]


def test_function_without_hookimpl_marker_is_noted(fake_site):
    source = '''
        DTL_API_VERSION = "1.0"

        def dtl_head_types():
            return []
        '''
    fake_site.add("fake-unmarked", {"fake_unmarked": source})
    rec = record(fake_site.host(), "fake_unmarked")
    assert rec.status == "loaded" and rec.provides == []
    assert any("dtl_head_types is not marked with @hookimpl" in n for n in rec.notes)


# --------------------------------------------------------------------------- broken plugins


def test_import_error_is_recorded_and_the_others_still_load(fake_site):
    fake_site.add(
        "fake-broken-import",
        {
            "fake_broken_import": """
        import fake_module_that_is_not_installed
        DTL_API_VERSION = "1.0"
        """
        },
    )
    fake_site.add("fake-fine", {"fake_fine": head_plugin("fake-fine-head")})
    host = fake_site.host()

    broken = record(host, "fake_broken_import")
    assert broken.status == "failed" and broken.provides == []
    assert broken.summary.startswith("could not be imported: ModuleNotFoundError")
    assert "fake_module_that_is_not_installed" in broken.summary
    assert "Traceback (most recent call last)" in broken.error
    assert "fake_broken_import.py" in broken.error
    assert record(host, "fake_fine").status == "loaded"
    assert list(host.head_types()) == ["fake-fine-head"]


def test_plugin_exiting_at_import_is_recorded(fake_site):
    fake_site.add("fake-exits", {"fake_exits": "import sys\nsys.exit(3)\n"})
    rec = record(fake_site.host(), "fake_exits")
    assert rec.status == "failed" and "SystemExit: 3" in rec.summary


def test_bad_hook_signature_is_recorded(fake_site):
    fake_site.add(
        "fake-bad-signature",
        {
            "fake_bad_signature": """
        from desktop_tl.plugin import hookimpl
        DTL_API_VERSION = "1.0"

        @hookimpl
        def dtl_head_types(colour):
            return []
        """
        },
    )
    fake_site.add("fake-fine", {"fake_fine": head_plugin("fake-fine-head")})
    host = fake_site.host()

    bad = record(host, "fake_bad_signature")
    assert bad.status == "failed"
    assert "bad hook implementation" in bad.summary and "colour" in bad.summary
    assert "PluginValidationError" in bad.error
    assert list(host.head_types()) == ["fake-fine-head"]


def test_misspelt_hook_is_recorded_with_a_suggestion(fake_site):
    fake_site.add(
        "fake-typo",
        {
            "fake_typo": """
        from desktop_tl.plugin import hookimpl
        DTL_API_VERSION = "1.0"

        @hookimpl
        def dtl_head_type():
            return []
        """
        },
    )
    rec = record(fake_site.host(), "fake_typo")
    assert rec.status == "failed"
    assert "dtl_head_type, which is not a desktop_tl hook" in rec.summary
    assert "did you mean dtl_head_types?" in rec.summary


def test_hook_wrapper_is_refused(fake_site):
    fake_site.add(
        "fake-wrapper",
        {
            "fake_wrapper": """
        from desktop_tl.plugin import hookimpl
        DTL_API_VERSION = "1.0"

        @hookimpl(wrapper=True)
        def dtl_head_types():
            return (yield)
        """
        },
    )
    rec = record(fake_site.host(), "fake_wrapper")
    assert rec.status == "failed" and "as a hook wrapper" in rec.summary


def test_hook_that_raises_is_recorded_and_does_not_hide_other_plugins(fake_site):
    # "aaa" sorts first, so its failing hook is called before the good plugin's.
    fake_site.add(
        "aaa-raises",
        {
            "fake_raises": GOOD_HEADER
            + '''
@hookimpl
def dtl_head_types():
    return [HeadType(id="fake-never-registered", display_name="x", build=print)]

@hookimpl
def dtl_backbone_providers():
    raise RuntimeError("provider table is corrupt")
'''
        },
    )
    fake_site.add("zzz-good", {"fake_good_plugin": GOOD_PLUGIN})
    host = fake_site.host()

    bad = record(host, "fake_raises")
    assert bad.status == "failed"
    assert bad.summary == ("raised in dtl_backbone_providers: RuntimeError: provider table is corrupt")
    assert "Traceback" in bad.error and "fake_raises.py" in bad.error
    # A plugin that failed contributes nothing, not even the hooks that worked.
    assert "fake-never-registered" not in host.head_types()
    assert list(host.backbone_providers()) == ["fake-tiny"]
    assert record(host, "fake_good_plugin").status == "loaded"


@pytest.mark.parametrize(
    "returned, expected",
    [
        ('{"id": "x"}', "got dict"),
        ('HeadType(id="fake-lonely", display_name="x", build=print)', "got HeadType"),
        ('["linear"]', "item 0 is str 'linear'"),
        (
            '[BackboneProvider(id="b", display_name="b", list_models=list, create=print, '
            'weights_status=print)]',
            "item 0 is BackboneProvider",
        ),
        ('[HeadType(id="fake-h", display_name="x", build="not callable")]', "build must be callable"),
    ],
)
def test_wrong_return_type_is_recorded(fake_site, returned, expected):
    fake_site.add(
        "fake-wrong-type",
        {
            "fake_wrong_type": GOOD_HEADER
            + f'''
@hookimpl
def dtl_head_types():
    return {returned}
'''
        },
    )
    rec = record(fake_site.host(), "fake_wrong_type")
    assert rec.status == "failed"
    assert rec.summary.startswith("returned a bad value from dtl_head_types")
    assert expected in rec.summary


@pytest.mark.parametrize(
    "built, expected",
    [
        ('HeadType(id="", display_name="x", build=print)', "id must be a non-empty string"),
        ('HeadOption("act", "colour", "relu")', "kind 'colour' is not one of"),
        ('Preprocessing(interpolation="sinc")', "interpolation 'sinc' is not one of"),
        (
            'Backbone(None, feature_dim=-1, preprocessing=Preprocessing())',
            "feature_dim must be a positive int, got -1",
        ),
        (
            'BackboneProvider(id="b", display_name="b", list_models=[], build=print)',
            "the model list is empty",
        ),
    ],
)
def test_descriptors_refuse_bad_values_when_built_naming_the_plugin(fake_site, built, expected):
    fake_site.add(
        "fake-bad-descriptor",
        {
            "fake_bad_descriptor": GOOD_HEADER
            + f'''
@hookimpl
def dtl_head_types():
    {built}
    return []
'''
        },
    )
    rec = record(fake_site.host(), "fake_bad_descriptor")
    assert rec.status == "failed"
    assert "DescriptorError: plugin 'fake_bad_descriptor'" in rec.summary
    assert expected in rec.summary


def test_backbone_provider_id_with_a_colon_is_refused(fake_site):
    fake_site.add("fake-colon", {"fake_colon": backbone_plugin("a:b", ["m"])})
    rec = record(fake_site.host(), "fake_colon")
    assert rec.status == "failed" and "cannot contain ':'" in rec.summary


def test_same_module_under_two_entry_points_registers_once(fake_site):
    fake_site.add(
        "fake-twice",
        {"fake_twice": head_plugin("fake-twice-head")},
        entry_points={"first": "fake_twice", "second": "fake_twice"},
    )
    host = fake_site.host()
    assert record(host, "first").status == "loaded"
    second = record(host, "second")
    assert second.status == "failed" and "could not be registered" in second.summary


# --------------------------------------------------------------------------- API version


def test_missing_api_version_is_refused(fake_site):
    fake_site.add("fake-unversioned", {"fake_unversioned": head_plugin("fake-u", api=None)})
    host = fake_site.host()
    rec = record(host, "fake_unversioned")
    assert rec.status == "refused" and rec.provides == []
    assert "DTL_API_VERSION is missing" in rec.summary
    assert f"supports 1.x (this desktop_tl implements plugin API {API_VERSION})" in rec.summary
    assert host.head_types() == {}


@pytest.mark.parametrize("declared", ["2.0", "0.9"])
def test_incompatible_api_version_is_refused(fake_site, declared):
    fake_site.add("fake-future", {"fake_future": head_plugin("fake-f", api=declared)})
    host = fake_site.host()
    rec = record(host, "fake_future")
    assert rec.status == "refused"
    assert f"targets plugin API {declared}, but this desktop_tl supports 1.x" in rec.summary
    assert "fake-future" in rec.summary
    assert host.head_types() == {}


def test_unparsable_api_version_is_refused(fake_site):
    fake_site.add("fake-garbled", {"fake_garbled": head_plugin("fake-g", api="one")})
    rec = record(fake_site.host(), "fake_garbled")
    assert rec.status == "refused" and "'one', which is not a version" in rec.summary


def test_newer_minor_api_version_loads_with_a_note(fake_site):
    fake_site.add("fake-newer", {"fake_newer": head_plugin("fake-n", api="1.9")})
    rec = record(fake_site.host(), "fake_newer")
    assert rec.status == "loaded" and rec.provides == ["head:fake-n"]
    assert any("newer than this desktop_tl" in note for note in rec.notes)


# --------------------------------------------------------------------------- duplicates


def test_duplicate_ids_are_reported_and_the_first_distribution_keeps_them(fake_site):
    # Installed in reverse order: the winner is decided by distribution name.
    fake_site.add("zeta-heads", {"fake_zeta": head_plugin("fake-shared", "fake-zeta-only")})
    fake_site.add("alpha-heads", {"fake_alpha": head_plugin("fake-shared")})
    host = fake_site.host()

    assert [r.distribution for r in host.records] == ["alpha-heads", "zeta-heads"]
    assert host.owner("head", "fake-shared").distribution == "alpha-heads"
    assert list(host.head_types()) == ["fake-shared", "fake-zeta-only"]
    assert host.head_types()["fake-shared"].build.__module__ == "fake_alpha"

    [problem] = host.problems
    assert "head type id 'fake-shared'" in problem
    assert "alpha-heads 1.0" in problem and "zeta-heads 1.0" in problem
    assert "DTL_DISABLED_PLUGINS=fake_zeta" in problem

    zeta = record(host, "fake_zeta")
    assert zeta.status == "loaded" and zeta.provides == ["head:fake-zeta-only"]
    assert zeta.notes == [
        "head:fake-shared not registered: plugin 'fake_alpha' (alpha-heads 1.0) already provides that id"
    ]
    assert record(host, "fake_alpha").provides == ["head:fake-shared"]


def test_duplicate_backbone_provider_ids_are_reported(fake_site):
    fake_site.add("bb-one", {"fake_bb_one": backbone_plugin("fake-bb", ["m1"])})
    fake_site.add("bb-two", {"fake_bb_two": backbone_plugin("fake-bb", ["m2"])})
    host = fake_site.host()
    assert host.provider_models("fake-bb") == ("m1",)
    assert len(host.problems) == 1 and "bb-one" in host.problems[0] and "bb-two" in host.problems[0]


# --------------------------------------------------------------------------- disabling


BOOBY_TRAP = 'raise RuntimeError("this plugin must not be imported")\n'


@pytest.mark.parametrize("blocked", ["fake_trap", "fake-trap-dist", "Fake_Trap.Dist"])
def test_disabled_by_environment_is_not_imported(fake_site, monkeypatch, blocked):
    fake_site.add("fake-trap-dist", {"fake_trap": BOOBY_TRAP}, version="0.4")
    fake_site.add("fake-fine", {"fake_fine": head_plugin("fake-fine-head")})
    monkeypatch.setenv("DTL_DISABLED_PLUGINS", f" unrelated-name , {blocked}")
    host = fake_site.host()

    trap = record(host, "fake_trap")
    assert (trap.status, trap.error, trap.version) == ("disabled", None, "0.4")
    assert "fake_trap" not in sys.modules
    assert record(host, "fake_fine").status == "loaded"
    assert host.problems == [
        "'unrelated-name' is listed as disabled (DTL_DISABLED_PLUGINS or "
        "the plugin settings) but no installed plugin or distribution "
        "has that name; `desktop-tl plugins` lists the names"
    ]


def test_disabled_by_constructor_argument(fake_site):
    fake_site.add("fake-trap-dist", {"fake_trap": BOOBY_TRAP})
    host = fake_site.host(disabled=["fake-trap-dist"])
    assert record(host, "fake_trap").status == "disabled"
    assert "fake_trap" not in sys.modules and host.problems == []


# --------------------------------------------------------------------------- strict mode


def test_strict_mode_reraises_import_errors(fake_site, monkeypatch):
    fake_site.add("fake-broken-import", {"fake_broken_import": "import fake_not_installed_x\n"})
    monkeypatch.setenv("DTL_STRICT_PLUGINS", "1")
    with pytest.raises(ModuleNotFoundError, match="fake_not_installed_x"):
        fake_site.host()


def test_strict_mode_reraises_hook_errors(fake_site, monkeypatch):
    fake_site.add(
        "fake-raises",
        {
            "fake_raises": GOOD_HEADER
            + '''
@hookimpl
def dtl_head_types():
    raise ValueError("bad head table")
'''
        },
    )
    monkeypatch.setenv("DTL_STRICT_PLUGINS", "1")
    with pytest.raises(ValueError, match="bad head table"):
        fake_site.host()
    with pytest.raises(ValueError, match="bad head table"):
        fake_site.host(strict=True)
    monkeypatch.setenv("DTL_STRICT_PLUGINS", "0")
    assert record(fake_site.host(), "fake_raises").status == "failed"


def test_strict_mode_raises_on_refused_versions(fake_site):
    fake_site.add("fake-future", {"fake_future": head_plugin("fake-f", api="2.0")})
    with pytest.raises(PluginError, match="targets plugin API 2.0"):
        fake_site.host(strict=True)


def test_strict_mode_raises_on_duplicates(fake_site):
    fake_site.add("dup-a", {"fake_dup_a": head_plugin("fake-dup")})
    fake_site.add("dup-b", {"fake_dup_b": head_plugin("fake-dup")})
    with pytest.raises(PluginError, match="head type id 'fake-dup' is provided by both"):
        fake_site.host(strict=True)


# --------------------------------------------------------------------------- backbone names


@pytest.fixture
def two_providers(fake_site):
    fake_site.add("provider-a", {"fake_provider_a": backbone_plugin("fake-a", ["tiny8", "shared"])})
    fake_site.add("provider-b", {"fake_provider_b": backbone_plugin("fake-b", ["wide16", "shared"])})
    return fake_site.host()


def test_resolve_bare_and_qualified_names(two_providers):
    host = two_providers
    providers = host.backbone_providers()
    assert host.resolve_backbone("tiny8") == (providers["fake-a"], "tiny8")
    assert host.resolve_backbone(" wide16 ") == (providers["fake-b"], "wide16")
    assert host.resolve_backbone("fake-b:shared") == (providers["fake-b"], "shared")
    assert host.resolve_backbone("fake-a:shared") == (providers["fake-a"], "shared")
    assert host.resolve_backbone("TINY8") == (providers["fake-a"], "tiny8")
    assert host.resolve_backbone("FAKE-A:Tiny8") == (providers["fake-a"], "tiny8")


def test_model_lists_are_cached_per_host(two_providers):
    host = two_providers
    for name in ("tiny8", "wide16", "fake-a:shared", "tiny8"):
        host.resolve_backbone(name)
    assert len(sys.modules["fake_provider_a"].LIST_CALLS) == 1
    assert len(sys.modules["fake_provider_b"].LIST_CALLS) == 1


def test_resolve_unknown_name_suggests_close_matches(two_providers):
    with pytest.raises(BackboneNotFoundError) as info:
        two_providers.resolve_backbone("tiny9")
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert "no installed backbone provider offers a model named 'tiny9'" in message
    assert "did you mean tiny8?" in message

    with pytest.raises(BackboneNotFoundError, match="did you mean fake-a:shared, fake-b:shared"):
        two_providers.resolve_backbone("sharde")
    with pytest.raises(BackboneNotFoundError, match="has no model named 'tiny80'; did you mean 'tiny8'"):
        two_providers.resolve_backbone("fake-a:tiny80")
    with pytest.raises(BackboneNotFoundError, match="no backbone provider has the id 'fake-c'"):
        two_providers.resolve_backbone("fake-c:tiny8")
    with pytest.raises(BackboneNotFoundError, match="no backbone given"):
        two_providers.resolve_backbone("  ")


def test_resolve_ambiguous_name_lists_the_choices(two_providers):
    with pytest.raises(AmbiguousBackboneError) as info:
        two_providers.resolve_backbone("shared")
    assert isinstance(info.value, UserError)
    assert str(info.value) == (
        "backbone 'shared' is offered by several providers: "
        "fake-a:shared, fake-b:shared. Name one as provider:model"
    )


def test_resolve_with_no_providers_says_what_to_install(fake_site):
    fake_site.add("fake-fine", {"fake_fine": head_plugin("fake-fine-head")})
    with pytest.raises(BackboneNotFoundError, match="no backbone providers are installed"):
        fake_site.host().resolve_backbone("resnet18")


def test_provider_whose_list_models_fails_is_reported_and_skipped(fake_site):
    fake_site.add(
        "provider-bad",
        {
            "fake_provider_bad": GOOD_HEADER
            + '''
def _list_models():
    raise OSError("model index unreadable")

@hookimpl
def dtl_backbone_providers():
    return [BackboneProvider(id="fake-bad", display_name="bad", list_models=_list_models,
                             create=print, weights_status=print)]
'''
        },
    )
    fake_site.add("provider-good", {"fake_provider_good": backbone_plugin("fake-good", ["m1"])})
    host = fake_site.host()
    provider, name = host.resolve_backbone("m1")
    assert (provider.id, name) == ("fake-good", "m1")
    assert host.problems == [
        "backbone provider 'fake-bad' of plugin 'fake_provider_bad' "
        "(provider-bad 1.0) failed to list its models: "
        "OSError: model index unreadable"
    ]


# --------------------------------------------------------------------------- other lookups


def test_unknown_head_and_loader_ids_get_suggestions(fake_site, tmp_path):
    fake_site.add("fake-good", {"fake_good_plugin": GOOD_PLUGIN})
    host = fake_site.host()
    with pytest.raises(HeadNotFoundError, match="did you mean 'fake-linear'"):
        host.head_type("fake-linaer")
    with pytest.raises(LoaderNotFoundError, match=r"installed dataset loaders: fake-folder"):
        host.loader_for_path(str(tmp_path), "csv")
    with pytest.raises(PathNotLoadableError, match="no installed dataset loader can read"):
        host.loader_for_path(str(tmp_path / "missing.csv"))


# --------------------------------------------------------------------------- notifications


def test_epoch_end_errors_are_returned_and_others_still_notified(fake_site, tmp_path, monkeypatch):
    fake_site.add(
        "aaa-noisy",
        {
            "fake_noisy": """
        from desktop_tl.plugin import hookimpl
        DTL_API_VERSION = "1.0"

        @hookimpl
        def dtl_on_epoch_end(metrics):
            raise KeyError("val_f1")
        """
        },
    )
    fake_site.add("zzz-good", {"fake_good_plugin": GOOD_PLUGIN})
    host = fake_site.host()
    assert record(host, "fake_noisy").provides == ["hook:dtl_on_epoch_end"]

    errors = host.notify_epoch_end(str(tmp_path), 1, {"val_acc": 0.5})
    assert errors == ["plugin 'fake_noisy' (aaa-noisy 1.0) raised in dtl_on_epoch_end: KeyError: 'val_f1'"]
    assert sys.modules["fake_good_plugin"].EPOCHS == [(str(tmp_path), 1, 0.5)]

    strict = fake_site.host(strict=True)
    with pytest.raises(KeyError, match="val_f1"):
        strict.notify_epoch_end(str(tmp_path), 2, {"val_acc": 0.5})


# --------------------------------------------------------------------------- process-wide host


def test_get_host_is_one_lazily_loaded_instance_shared_by_threads(fake_site, monkeypatch):
    fake_site.add("fake-fine", {"fake_fine": head_plugin("fake-fine-head")})
    monkeypatch.setattr(manager, "_host", None)
    monkeypatch.setattr(manager, "_host_disabled", ())

    seen: list[PluginHost] = []
    barrier = threading.Barrier(6)

    def grab() -> None:
        barrier.wait()
        seen.append(get_host())

    threads = [threading.Thread(target=grab) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 6 and all(host is seen[0] for host in seen)
    assert "fake-fine-head" in seen[0].head_types()
    assert get_host() is seen[0]

    refreshed = get_host(refresh=True)
    assert refreshed is not seen[0] and get_host() is refreshed
    blocked = get_host(disabled=["fake-fine"])
    assert blocked is not refreshed
    assert record(blocked, "fake_fine").status == "disabled"


def test_manager_and_plugins_command_do_not_import_torch_or_qt():
    code = (
        "import sys, desktop_tl.plugin.manager, desktop_tl.cli.plugins_command\n"
        "heavy = [m for m in ('torch', 'torchvision', 'PySide6') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=python_env())
