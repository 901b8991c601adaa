"""Every hook is documented where it is declared, and its example really works.

Each hookspec's docstring must hold an ``Example::`` block. The block is installed as a
plugin of a fake distribution, loaded by a real host, and what it provides is used the
way the engine uses it.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest

from desktop_tl.plugin import hookspecs
from desktop_tl.plugin.hookspecs import PROJECT_NAME

from .fakedist import python_env, record

HOOK_NAMES = sorted(
    name for name, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, f"{PROJECT_NAME}_spec")
)


def example_of(hook_name: str) -> str:
    """The code in the ``Example::`` block of a hookspec's docstring."""
    doc = inspect.getdoc(getattr(hookspecs, hook_name)) or ""
    lines = doc.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Example::"]
    assert starts, f"{hook_name} has no 'Example::' block in its docstring"
    indent = len(lines[starts[0]]) - len(lines[starts[0]].lstrip())
    block: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break  # the docstring goes on after the example
        block.append(line)
    code = textwrap.dedent("\n".join(block)).strip()
    assert code, f"{hook_name}'s Example:: block is empty"
    return code + "\n"


def load_example(fake_site, hook_name: str):
    module = f"fake_example_{hook_name}"
    fake_site.add(f"example-{hook_name.replace('_', '-')}", {module: example_of(hook_name)})
    host = fake_site.host(strict=True)  # any error in the example fails loudly
    rec = record(host, module)
    assert rec.status == "loaded", rec.error
    return host, rec


def test_hookspecs_are_found():
    assert {"dtl_backbone_providers", "dtl_dataset_loaders", "dtl_head_types", "dtl_on_epoch_end"} <= set(
        HOOK_NAMES
    )


@pytest.mark.parametrize("hook_name", HOOK_NAMES)
def test_every_hook_has_a_docstring_with_an_example_that_loads(fake_site, hook_name):
    doc = inspect.getdoc(getattr(hookspecs, hook_name))
    assert doc and len(doc.split("Example::")[0].strip()) > 20, (
        f"{hook_name} needs a docstring saying what it is for"
    )
    host, rec = load_example(fake_site, hook_name)
    assert rec.notes == [] and rec.provides, (rec.notes, rec.provides)
    implementation = getattr(sys.modules[f"fake_example_{hook_name}"], hook_name)
    assert hasattr(implementation, f"{PROJECT_NAME}_impl"), "the example lacks @hookimpl"


def test_backbone_example_builds_a_working_backbone(fake_site):
    import torch

    host, rec = load_example(fake_site, "dtl_backbone_providers")
    provider, model_name = host.resolve_backbone(host.provider_models(rec.provides[0].split(":", 1)[1])[0])
    assert host.resolve_backbone(f"{provider.id}:{model_name}") == (provider, model_name)
    backbone = provider.create(model_name, "none")
    with torch.no_grad():
        features = backbone.module(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, backbone.feature_dim)
    assert backbone.provenance.pretrained is False
    status = provider.weights_status(model_name)
    assert status.available is False and status.detail


def test_loader_example_loads_a_folder_of_pngs(fake_site, tmp_path):
    from PIL import Image

    host, rec = load_example(fake_site, "dtl_dataset_loaders")
    data = tmp_path / "flat"
    data.mkdir()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(data / "cat_1.png")
    Image.new("L", (16, 16), 90).save(data / "dog_1.png")

    loader = host.loader_for_path(str(data))
    assert f"loader:{loader.id}" in rec.provides
    loaded = loader.load(str(data), {})
    assert loaded.class_names == ["cat", "dog"]
    assert sorted((s.label, s.path) for s in loaded.samples) == [
        ("cat", str(data / "cat_1.png")),
        ("dog", str(data / "dog_1.png")),
    ]
    assert not loaded.has_predefined_split


def test_head_example_builds_a_working_head(fake_site):
    import torch

    host, rec = load_example(fake_site, "dtl_head_types")
    [head_type] = host.head_types().values()
    assert rec.provides == [f"head:{head_type.id}"]
    head = head_type.build(8, 3, **head_type.defaults())
    assert head(torch.rand(4, 8)).shape == (4, 3)
    for option in head_type.options:  # the declared ranges are accepted by build
        if option.kind == "float" and option.maximum is not None:
            head_type.build(8, 3, **{option.name: option.maximum})


def test_epoch_end_example_is_called(fake_site, tmp_path, capsys):
    host, rec = load_example(fake_site, "dtl_on_epoch_end")
    assert rec.provides == ["hook:dtl_on_epoch_end"]
    metrics = {"train_loss": 0.7, "val_loss": 0.6, "val_acc": 0.8125}
    assert host.notify_epoch_end(str(tmp_path), 4, metrics) == []
    out = capsys.readouterr().out
    assert "epoch 4" in out and "0.812" in out


def test_loading_the_examples_does_not_import_torch(fake_site):
    """Plugins import torch inside their functions, so listing them stays fast."""
    for hook_name in HOOK_NAMES:
        fake_site.add(
            f"example-{hook_name.replace('_', '-')}", {f"fake_example_{hook_name}": example_of(hook_name)}
        )
    code = (
        "import sys\n"
        "from desktop_tl.plugin.manager import PluginHost\n"
        f"host = PluginHost(path=[{str(fake_site.root)!r}], strict=True)\n"
        "host.load()\n"
        "assert all(r.status == 'loaded' for r in host.records), host.records\n"
        f"assert len(host.records) == {len(HOOK_NAMES)}\n"
        "assert 'torch' not in sys.modules, 'a plugin example imports torch at load time'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=python_env(fake_site.root))
