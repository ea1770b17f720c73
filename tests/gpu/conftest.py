"""GPU tests run only where NVML sees an NVIDIA GPU; elsewhere they are skipped with the reason."""

from __future__ import annotations

import pytest


def _gpu_reason() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
    except Exception as exc:  # noqa: BLE001 - any NVML failure means: no usable GPU here
        return f"no NVIDIA GPU visible ({type(exc).__name__})"
    return None if count else "NVML reports no GPU"


def pytest_collection_modifyitems(config, items):
    reason = _gpu_reason()
    if reason is None:
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
