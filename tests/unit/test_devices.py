"""Which runtimes and devices `auto` measures, decided from a machine's device list (no GPU needed)."""

from __future__ import annotations

from imgd.daemon.embedders.devices import Candidate, Devices, candidates, ov_precision

CPU = ("CPUExecutionProvider",)


def test_a_cpu_only_machine_measures_the_cpu_runtimes_with_the_fp32_reference_first():
    found = candidates(Devices(CPU, ("CPU",), {"CPU": ("FP32", "INT8")}))
    assert found == [Candidate("onnx", "float32"), Candidate("openvino", "auto"), Candidate("openvino", "float32")]


def test_without_openvino_only_onnx_runtime_is_measured():
    assert candidates(Devices(CPU, ())) == [Candidate("onnx", "float32")]


def test_onnxruntime_gpu_adds_onnx_runtime_on_cuda():
    found = candidates(Devices(("CUDAExecutionProvider", *CPU), ("CPU",)))
    assert found[0] == Candidate("onnx", "float32")  # the reference stays on the CPU
    assert Candidate("onnx", "float32", "cuda") in found
    assert all(c.backend != "torch" for c in found)  # torch runs only when named


def test_a_tensorrt_or_other_provider_alone_is_no_cuda_candidate():
    assert all(c.device == "cpu" for c in candidates(Devices(("TensorrtExecutionProvider", *CPU), ())))


def test_each_openvino_gpu_is_a_candidate_at_its_own_precision():
    devices = Devices(CPU, ("CPU", "GPU.0", "GPU.1", "NPU"), {"GPU.0": ("FP32", "FP16"), "GPU.1": ("FP32",)})
    gpus = [c for c in candidates(devices) if c.device != "cpu"]
    assert gpus == [Candidate("openvino", "float16", "GPU.0"), Candidate("openvino", "float32", "GPU.1")]


def test_openvino_own_precision_is_bf16_only_on_a_cpu_that_computes_it():
    devices = Devices(CPU, ("CPU", "GPU"), {"CPU": ("FP32", "BF16"), "GPU": ("FP32", "FP16", "BF16")})
    assert ov_precision(devices, "CPU") == "bfloat16"
    assert ov_precision(devices, "GPU") == "float16"
    assert ov_precision(Devices(CPU, ("CPU",), {"CPU": ("FP32", "FP16")}), "CPU") == "float32"
