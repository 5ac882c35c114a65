"""``--device``: where training and extraction run (auto: CUDA when available, else the CPU)."""

import contextlib

import pytest
import torch

from acgate.scan import ScanConfig, make_retrain, train_proxy
from acgate.torch._arrays import device_hardware, model_device, resolve_device

HAS_CUDA = torch.cuda.is_available()


def test_auto_is_cuda_when_available_else_the_cpu():
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_a_cuda_device_is_a_clear_error():
    if HAS_CUDA:
        assert resolve_device("cuda").type == "cuda"
        return
    with pytest.raises(ValueError, match=r"device 'cuda' asked for, but torch sees no CUDA"):
        resolve_device("cuda")


def test_the_hardware_is_the_cpus_model_or_the_gpus_name():
    # What a scan records beside "cpu" / "cuda": another CPU model can move a verdict near a cut.
    cpu = device_hardware(torch.device("cpu"))
    assert isinstance(cpu, str) and cpu.strip() == cpu and cpu
    models = []
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        models = [line.split(":", 1)[1].strip() for line in info
                  if line.split(":", 1)[0].strip() == "model name"]
    if models:
        assert cpu == models[0]
    if HAS_CUDA:
        assert device_hardware(torch.device("cuda")) == torch.cuda.get_device_name(0)


@pytest.mark.parametrize("name", ["gpu", "CUDA", "", "cuda:0"])
def test_unknown_devices_are_refused(name):
    with pytest.raises(ValueError, match=repr(name).replace("(", r"\(")):
        resolve_device(name)
    with pytest.raises(ValueError, match="device"):
        ScanConfig(device=name)


def test_the_cpu_gives_the_same_proxy_as_auto_here(poisoned_digits):
    # On a machine without CUDA, auto is the CPU: the same seeded weights bit for bit; the
    # proxy sits on the device it was trained on, and so does every retrain.
    dataset = poisoned_digits(0.1)
    on_cpu, _ = train_proxy(dataset, ScanConfig(device="cpu", epochs=1))
    on_auto, _ = train_proxy(dataset, ScanConfig(device="auto", epochs=1))
    assert model_device(on_cpu).type == "cpu"
    assert model_device(on_auto).type == resolve_device("auto").type
    if not HAS_CUDA:
        for (name, a), (_, b) in zip(on_cpu.state_dict().items(), on_auto.state_dict().items(),
                                     strict=True):
            assert torch.equal(a, b), name
    retrain = make_retrain(dataset, ScanConfig(device="cpu", epochs=1))
    mask = torch.ones(len(dataset), dtype=torch.bool).numpy()
    probabilities = retrain(mask, mask.nonzero()[0][:5])
    assert probabilities.shape == (5, 10)

