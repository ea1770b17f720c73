"""GPU inventories: spec strings, NVML (a fake driver, and the real one where there is no GPU)."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest

from cluster.errors import GpuSpecError, PlacementError, SizingError
from cluster.inventory import GiB, MiB, from_nvml, from_spec


def test_single_h100():
    inv = from_spec("1xH100-80GB")
    assert len(inv.nodes) == 1 and inv.gpu_count == 1
    gpu = inv.nodes[0].gpus[0]
    assert gpu.total_bytes == gpu.free_bytes == 81559 * MiB  # what NVML reports for an 80 GB H100
    assert gpu.compute_capability == (9, 0)


def test_eight_h100_are_all_nvlinked():
    inv = from_spec("8xH100-80GB")
    assert inv.gpu_count == 8
    for g in inv.nodes[0].gpus:
        assert g.nvlink == frozenset(range(8)) - {g.index}


def test_nodes_times_gpus():
    inv = from_spec("2x4xA100-40GB")
    assert [len(n.gpus) for n in inv.nodes] == [4, 4]
    assert [n.index for n in inv.nodes] == [0, 1]
    assert inv.nodes[1].gpus[3].total_bytes == 40 * GiB


def test_consumer_card_has_no_nvlink():
    gpu = from_spec("1xRTX4090-24GB").nodes[0].gpus[0]
    assert gpu.nvlink == frozenset() and gpu.total_bytes == 24564 * MiB


def test_unknown_card_takes_memory_as_written_and_nodes_join_with_commas():
    inv = from_spec("2xFOO-16GB,1xH100-80GB")
    assert [len(n.gpus) for n in inv.nodes] == [2, 1]
    assert inv.nodes[0].gpus[0].total_bytes == 16 * GiB
    assert inv.gpu(1, 0).name == "H100-80GB" and inv.gpu(1, 1) is None


@pytest.mark.parametrize("spec", ["", "H100", "8xH100", "0xH100-80GB", "1x100xH100-80GB", "2xH100-0GB", "ax2xH100-80GB"])
def test_bad_specs_say_how_to_write_one(spec):
    with pytest.raises(GpuSpecError, match=r"e\.g\. 8xH100-80GB"):
        from_spec(spec)


def test_no_driver_gives_an_empty_inventory_with_a_reason():
    inv = from_nvml()  # this machine: nvidia-ml-py installed, no driver
    if inv.nodes:
        pytest.skip("an NVIDIA GPU is visible here; tests/gpu covers it")
    assert inv.gpu_count == 0
    assert inv.reason and "\n" not in inv.reason
    assert "no GPUs" in inv.describe()


class FakeNvml:
    """The parts of pynvml chorus calls, for two GPUs linked by NVLink and a third without."""

    class NVMLError(Exception):
        pass

    NVML_P2P_CAPS_INDEX_NVLINK = 3
    NVML_P2P_STATUS_OK = 0

    def __init__(self, fail_init=False, fail_list=False):
        self.fail_init, self.fail_list, self.shut = fail_init, fail_list, False

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetCount(self):
        if self.fail_list:
            raise self.NVMLError("Unknown Error")
        return 3

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3" if h < 2 else "NVIDIA L4"

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=80 * GiB if h < 2 else 24 * GiB, free=(70 if h < 2 else 20) * GiB)

    def nvmlDeviceGetCudaComputeCapability(self, h):
        if h == 2:
            raise self.NVMLError("Not Supported")
        return (9, 0)

    def nvmlDeviceGetP2PStatus(self, a, b, caps):
        assert caps == self.NVML_P2P_CAPS_INDEX_NVLINK
        return 0 if {a, b} == {0, 1} else 4


def test_nvml_listing():
    fake = FakeNvml()
    inv = from_nvml(fake)
    gpus = inv.nodes[0].gpus
    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3", "NVIDIA L4"]
    assert gpus[0].total_bytes == 80 * GiB and gpus[0].free_bytes == 70 * GiB
    assert gpus[0].compute_capability == (9, 0) and gpus[2].compute_capability is None
    assert gpus[0].nvlink == {1} and gpus[1].nvlink == {0} and gpus[2].nvlink == frozenset()
    assert fake.shut and inv.source == "nvml"


@pytest.mark.parametrize(("kw", "words"), [({"fail_init": True}, "Driver Not Loaded"), ({"fail_list": True}, "Unknown Error")])
def test_nvml_errors_become_reasons(kw, words):
    inv = from_nvml(FakeNvml(**kw))
    assert inv.nodes == () and words in inv.reason


def test_errors_pickle_with_their_fields():
    for err in (
        GpuSpecError("9xZ", "bad"),
        SizingError("m", "no config"),
        PlacementError("m", "too big", 5, 3, ("quantize", "tensor parallel")),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
    assert "to make it fit: quantize; or tensor parallel" in str(PlacementError("m", "too big", fixes=("quantize", "tensor parallel")))
