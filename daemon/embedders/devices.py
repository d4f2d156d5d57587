"""Which (runtime, precision, device) candidates `auto` measures on this machine: CPUs and GPUs alike.

Pure logic over a Devices fact sheet, so the choice is tested on device lists of machines this one
is not. The CPU candidates are always there (ONNX Runtime fp32 first: it is the reference every other
candidate's vectors are checked against). A GPU adds a candidate only where a runtime that can serve
it is installed: ONNX Runtime's CUDA provider (the onnxruntime-gpu wheel) at fp32, OpenVINO's GPU
device at its own precision (f16 where the device lists FP16). torch CUDA is never a candidate: torch
runs only when named (`--backend torch --device cuda`), since no serving process may import it.
Each candidate is measured like the CPU ones, and one that fails to load or gives unfaithful vectors
is left out of the record; a recorded one that fails later gives way to the next fastest.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import NamedTuple


class Candidate(NamedTuple):
    """One way to serve the towers: a runtime, a precision ('auto': the runtime's own) and a device."""

    backend: str
    precision: str
    device: str = "cpu"


@dataclass(frozen=True)
class Devices:
    """What this machine offers the runtimes: ONNX Runtime's providers, OpenVINO's devices and their capabilities."""

    ort_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    ov_devices: tuple[str, ...] = ()  # OpenVINO's names: CPU, GPU, GPU.0, GPU.1, NPU ...
    ov_capabilities: dict[str, tuple[str, ...]] = field(default_factory=dict)


CPU_CANDIDATES = (Candidate("onnx", "float32"), Candidate("openvino", "auto"), Candidate("openvino", "float32"))


def candidates(devices: Devices) -> list[Candidate]:
    """The candidates to measure on `devices`, the fp32 CPU reference first."""
    found = [c for c in CPU_CANDIDATES if c.backend == "onnx" or "CPU" in devices.ov_devices]
    if "CUDAExecutionProvider" in devices.ort_providers:
        found.append(Candidate("onnx", "float32", "cuda"))
    for name in devices.ov_devices:
        if name.split(".")[0] == "GPU":
            found.append(Candidate("openvino", ov_precision(devices, name), name))
    return found


def ov_precision(devices: Devices, name: str) -> str:
    """OpenVINO's own precision on a device: bf16 on a CPU that computes it, f16 on a GPU that does, else fp32."""
    capabilities = devices.ov_capabilities.get(name, ())
    if name == "CPU":
        return "bfloat16" if "BF16" in capabilities else "float32"
    return "float16" if "FP16" in capabilities else "float32"


def detect() -> Devices:
    """The facts for this machine, from the runtimes that are installed (nothing imports torch)."""
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    with contextlib.suppress(ImportError):
        import onnxruntime

        providers = tuple(onnxruntime.get_available_providers())
    names: tuple[str, ...] = ()
    capabilities: dict[str, tuple[str, ...]] = {}
    with contextlib.suppress(ImportError):
        import openvino

        core = openvino.Core()
        names = tuple(core.available_devices)
        for name in names:
            with contextlib.suppress(RuntimeError):
                capabilities[name] = tuple(core.get_property(name, "OPTIMIZATION_CAPABILITIES"))
    return Devices(providers, names, capabilities)
