import os
import pickle
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from acgate.torch.byo import build_module, load_model, save_state_dict
from acgate.torch.extract import extract_activations
from acgate.torch.models import SmallCNN
from acgate.torch.train import predict_proba

# torch 2.13 marks TorchScript deprecated; loading users' TorchScript files is still supported.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")

CNN_SPEC = "acgate.torch.models:SmallCNN"
CNN_KWARGS = '{"in_channels": 1, "image_hw": [8, 8], "n_classes": 10}'


class WritesAMarkerFile:
    """Unpickling this runs exec(...), which creates a file: a real code-execution payload."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_state_dict_round_trip(trained_cnn, digits, tmp_path):
    model, _ = trained_cnn
    images, _ = digits
    path = save_state_dict(model, tmp_path / "model.pt")
    assert os.listdir(tmp_path) == ["model.pt"]  # no temp file left behind
    loaded = load_model(path, module=CNN_SPEC, module_kwargs=CNN_KWARGS)
    assert isinstance(loaded, SmallCNN) and not loaded.training
    assert _same_weights(model, loaded)
    np.testing.assert_array_equal(predict_proba(loaded, images), predict_proba(model, images))


def test_save_state_dict_replaces_an_existing_file(trained_cnn, tmp_path):
    model, _ = trained_cnn
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    save_state_dict(model, target)
    assert _same_weights(load_model(target, module=CNN_SPEC, module_kwargs=CNN_KWARGS), model)
    with pytest.raises(FileNotFoundError, match="missing"):
        save_state_dict(model, tmp_path / "missing" / "model.pt")
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]


def test_torchscript_round_trip(trained_cnn, digits, tmp_path):
    model, _ = trained_cnn
    images, _ = digits
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    scripted = load_model(path)
    assert isinstance(scripted, torch.jit.ScriptModule)
    np.testing.assert_allclose(
        predict_proba(scripted, images), predict_proba(model, images), rtol=1e-5, atol=1e-6
    )
    # with module=, the archive's weights land in the eager class, so hooks can extract
    eager = load_model(
        path, module=CNN_SPEC, module_kwargs={"in_channels": 1, "image_hw": 8, "n_classes": 10}
    )
    assert isinstance(eager, SmallCNN) and _same_weights(model, eager)
    assert extract_activations(eager, images[:5])[0].shape == (5, 128)


def test_factory_spec_from_a_user_module(trained_cnn, tmp_path, monkeypatch):
    model, _ = trained_cnn
    (tmp_path / "user_models.py").write_text(
        textwrap.dedent("""
        from acgate.torch.models import SmallCNN

        def make_digits_cnn():
            return SmallCNN(1, (8, 8), 10)

        def not_a_model():
            return 42
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = save_state_dict(model, tmp_path / "weights.pt")
    assert _same_weights(load_model(path, module="user_models:make_digits_cnn"), model)
    with pytest.raises(TypeError, match="built a int"):
        build_module("user_models:not_a_model")


@pytest.mark.parametrize("how", ["pickle-protocol-2", "pickle-default", "torch-save"])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, how):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "model.pt"
    payload = WritesAMarkerFile(marker)
    if how == "torch-save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle, protocol=2 if how == "pickle-protocol-2" else None)
    with pytest.raises(ValueError, match="refusing to load.*weights-only.*could execute code"):
        load_model(path, module=CNN_SPEC, module_kwargs=CNN_KWARGS)
    with pytest.raises(ValueError, match="refusing to load"):
        load_model(path)
    assert not marker.exists()


def test_the_malicious_payload_is_live(tmp_path):
    # control for the test above: plain pickle does run the payload
    marker = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(WritesAMarkerFile(marker)))
    assert marker.read_text() == "pwned"


def test_pickled_whole_model_is_refused(trained_cnn, tmp_path):
    model, _ = trained_cnn
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(ValueError, match="refusing to load"):
        load_model(tmp_path / "whole.pt", module=CNN_SPEC, module_kwargs=CNN_KWARGS)


def test_checkpoint_dict_with_state_dict_entry_is_accepted(trained_cnn, tmp_path):
    model, _ = trained_cnn
    torch.save({"state_dict": model.state_dict(), "epoch": 5}, tmp_path / "ckpt.pt")
    loaded = load_model(tmp_path / "ckpt.pt", module=CNN_SPEC, module_kwargs=CNN_KWARGS)
    assert _same_weights(model, loaded)


def test_load_errors_quote_the_problem(trained_cnn, tmp_path):
    model, _ = trained_cnn
    path = save_state_dict(model, tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="is a state_dict; pass module="):
        load_model(path)
    with pytest.raises(ValueError, match="do not fit SmallCNN"):
        load_model(
            path,
            module=CNN_SPEC,
            module_kwargs='{"in_channels": 1, "image_hw": 28, "n_classes": 10}',
        )
    with pytest.raises(ValueError, match="package.module:ClassName"):
        load_model(path, module="acgate.torch.models.SmallCNN")
    with pytest.raises(ValueError, match="cannot import 'no_such_package'"):
        load_model(path, module="no_such_package:Model")
    with pytest.raises(ValueError, match="has no attribute 'BigCNN'"):
        load_model(path, module="acgate.torch.models:BigCNN")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(path, module=CNN_SPEC, module_kwargs="{in_channels: 1}")
    with pytest.raises(ValueError, match="JSON object"):
        load_model(path, module=CNN_SPEC, module_kwargs="[1, 8, 10]")
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ValueError, match="text.pt"):
        load_model(tmp_path / "text.pt", module=CNN_SPEC, module_kwargs=CNN_KWARGS)


# ------------------------------------------------------------------- what module= may name


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write ``<name>.py`` into a folder on sys.path; forget it from sys.modules afterwards."""
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name, source):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return write


@pytest.mark.parametrize(("source", "kind", "message"), [
    ("raise RuntimeError('needs a GPU driver')", "RuntimeError", "needs a GPU driver"),
    ("import sys\nsys.exit(3)", "SystemExit", "3"),
    ("import not_installed_dependency_xyz", "ModuleNotFoundError",
     "No module named 'not_installed_dependency_xyz'"),
    ("def broken(:\n    pass", "SyntaxError", ""),
])
def test_module_raising_on_import_is_a_value_error(user_module, source, kind, message):
    name = user_module(f"raises_{kind.lower()}", source)
    spec = f"{name}:Net"
    with pytest.raises(ValueError) as caught:
        build_module(spec)
    assert str(caught.value).startswith(
        f"--model-module {spec!r}: importing {name} raised {kind}: {message}")


def test_builtins_and_standard_library_are_never_called(user_module, tmp_path):
    marker = tmp_path / "marker.txt"
    command = {"command": f"touch {marker}"}
    for spec in ("os:getpid", "os:system", "subprocess:run", "builtins:print"):
        with pytest.raises(TypeError, match="names the standard-library module"):
            build_module(spec, command)
    name = user_module("reexports_os", "from os import getpid, system\n")
    for attribute in ("getpid", "system"):
        with pytest.raises(TypeError, match=r"names a builtin function, not a torch.nn.Module "
                                            r"subclass or a Python factory function"):
            build_module(f"{name}:{attribute}", command if attribute == "system" else None)
    assert not marker.exists()


def test_non_model_classes_and_callables_are_refused_before_calling(user_module, tmp_path):
    marker = tmp_path / "marker.txt"
    name = user_module("odd_things", f"""
        import functools

        from acgate.torch.models import SmallCNN

        class NotAModel:
            def __init__(self):
                open({str(marker)!r}, "w").write("called")

        class Factory:
            def __call__(self):
                open({str(marker)!r}, "w").write("called")
                return SmallCNN(1, (8, 8), 10)

        instance = Factory()
        partial = functools.partial(SmallCNN, 1, (8, 8), 10)
        number = 42
    """)
    for attribute, pattern in [
        ("NotAModel", r"names the class odd_things.NotAModel, which is not a torch.nn.Module"),
        ("instance", r"names a Factory, not a torch.nn.Module subclass"),
        ("partial", r"names a partial, not a torch.nn.Module subclass"),
        ("number", r"names a int, not a torch.nn.Module subclass"),
    ]:
        with pytest.raises(TypeError, match=pattern):
            build_module(f"{name}:{attribute}")
    assert not marker.exists()


def test_factory_must_be_defined_in_the_named_module(user_module):
    helpers = user_module("model_helpers", """
        from acgate.torch.models import SmallCNN

        def make():
            return SmallCNN(1, (8, 8), 10)
    """)
    name = user_module("reexports_factory", f"from {helpers} import make\n"
                                            "from acgate.torch.models import SmallCNN\n")
    with pytest.raises(TypeError, match=r"names a function defined in 'model_helpers', not in "
                                        r"'reexports_factory'.*name it as 'model_helpers:make'"):
        build_module(f"{name}:make")
    assert isinstance(build_module(f"{helpers}:make"), SmallCNN)
    # a re-exported model class is fine: instantiating an nn.Module subclass is the contract
    assert isinstance(build_module(f"{name}:SmallCNN", CNN_KWARGS), SmallCNN)


def test_static_and_class_method_factories(user_module):
    name = user_module("zoo", """
        from acgate.torch.models import SmallCNN

        class Zoo:
            @staticmethod
            def small():
                return SmallCNN(1, (8, 8), 10)

            @classmethod
            def sized(cls, size):
                return SmallCNN(1, (size, size), 10)
    """)
    assert isinstance(build_module(f"{name}:Zoo.small"), SmallCNN)
    assert build_module(f"{name}:Zoo.sized", {"size": 12}).image_hw == (12, 12)


def test_failing_constructor_or_factory_is_a_value_error(user_module):
    name = user_module("fails_to_build", """
        def factory():
            raise RuntimeError("weights folder missing")
    """)
    with pytest.raises(ValueError, match=r"module 'fails_to_build:factory': building the model "
                                         r"with \{\} raised RuntimeError: weights folder missing"):
        build_module(f"{name}:factory")
    with pytest.raises(ValueError, match=r"raised TypeError: .*unexpected keyword"):
        build_module(CNN_SPEC, {"in_channels": 1, "image_hw": 8, "n_classes": 10, "depth": 3})


def test_model_path_that_is_not_a_regular_file(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("os.mkfifo is not available on this platform")
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="model.pt' is not a regular file"):
        load_model(fifo, module=CNN_SPEC, module_kwargs=CNN_KWARGS)
    with pytest.raises(ValueError, match="is not a regular file"):
        load_model(tmp_path)
