"""Throughput model: what one replica of an endpoint sustains, from first principles.

Pure arithmetic over the model catalog (shapes), the GPU catalog (bandwidth,
FLOPS, interconnect, efficiencies; `gpuModels` in gpu_instances.yaml, with
their sources and the date they were read) and the replica's sizing. A roofline:

Decode (one step makes one token for every sequence in the batch)
  bytes per GPU   weights / GPUs + batch x KV tokens per sequence x KV bytes per token / GPUs
  FLOPs per GPU   (2 x parameters + 4 x layers x KV tokens x attention width) x batch / GPUs
  step time       max(bytes / (bandwidth x bandwidth efficiency), FLOPs / (dense FLOPS x compute efficiency))
                  + two all-reduces per layer across the replica's GPUs + a fixed step overhead
  The batch is the largest one whose step time stays within the latency target
  (time per output token), the KV cache holds and the engine admits
  (MAX_CONCURRENT_REQUESTS); decode tokens/s = batch / step time. A replica
  whose step at batch 1 misses the target still serves, one sequence at a
  time: `meets_target` says so.

Prefill (the prompt, all tokens at once)
  FLOPs per token (2 x parameters + 2 x layers x prompt length x attention width) / GPUs
  (causal attention: each token attends to half the prompt on average), at
  dense FLOPS x compute efficiency, plus the all-reduce traffic per token.

The engine (TGI or vLLM) does not change the figures: both batch continuously
over a paged KV cache and run the same kernels' class; the difference between
them is smaller than the model's error. Compute runs in FP8 only for FP8
weights on GPUs with FP8 tensor cores; 4-bit and int8 weights are read at
their size but multiplied in 16-bit.

The default request shape (2,048 prompt tokens, 28 generated) is the mean of
the real Azure code trace (tests/data/); the simulator passes the shape of the
traffic it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from privend.catalog import GpuCatalog, OpenModel, gpu_catalog
from privend.errors import InputError
from privend.sizing import GIB, PER_GPU_OVERHEAD, kv_bytes_per_token, weight_bytes

# 100 ms per output token: 10 tokens/s per request, faster than people read (about 4 words/s).
DEFAULT_TPOT_SECONDS = 0.1
DEFAULT_PROMPT_TOKENS = 2048
DEFAULT_GENERATED_TOKENS = 28
# The engine's admission limit (TGI MAX_CONCURRENT_REQUESTS, rendered by privend.render).
MAX_BATCH = 128


@dataclass(frozen=True)
class ReplicaThroughput:
    """What one replica sustains at the latency target."""

    prefill_tokens_per_second: float
    decode_tokens_per_second: float
    decode_batch: int
    decode_step_seconds: float
    decode_bound: str  # "memory" or "compute"
    meets_target: bool
    kv_capacity_tokens: int
    kv_capacity_sequences: int  # full-length (max_total_tokens) sequences the KV cache holds

    def to_dict(self) -> dict:
        return {
            "prefill_tokens_per_second": round(self.prefill_tokens_per_second, 1),
            "decode_tokens_per_second": round(self.decode_tokens_per_second, 1),
            "decode_batch": self.decode_batch,
            "decode_step_seconds": round(self.decode_step_seconds, 6),
            "decode_bound": self.decode_bound,
            "meets_target": self.meets_target,
            "kv_capacity_tokens": self.kv_capacity_tokens,
            "kv_capacity_sequences": self.kv_capacity_sequences,
        }


@dataclass(frozen=True)
class _Hardware:
    bandwidth: float  # bytes/s per GPU, after efficiency
    flops: float  # FLOP/s per GPU, after efficiency
    interconnect: float  # bytes/s per GPU, one direction
    all_reduce_latency: float
    step_overhead: float
    memory_gib: Decimal


def gpu_memory_gib(gpu_model: str, catalog: GpuCatalog) -> Decimal:
    for instance in catalog.instances.values():
        if instance.gpu_model == gpu_model:
            return instance.gpu_memory_gib
    raise InputError(f"no instance type in the GPU catalog has GPU model {gpu_model!r}")


def _hardware(gpu_model: str, fp8_compute: bool, catalog: GpuCatalog) -> _Hardware:
    spec = catalog.gpu_model(gpu_model)
    eff = catalog.throughput_efficiency
    tflops = spec.dense_fp8_tflops if fp8_compute and spec.dense_fp8_tflops else spec.dense_bf16_tflops
    return _Hardware(
        bandwidth=float(spec.memory_bandwidth_gbps * eff.memory_bandwidth_efficiency) * 1e9,
        flops=float(tflops * eff.compute_efficiency) * 1e12,
        interconnect=float(spec.interconnect_gbps) * 1e9,
        all_reduce_latency=float(eff.all_reduce_latency_seconds),
        step_overhead=float(eff.step_overhead_seconds),
        memory_gib=gpu_memory_gib(gpu_model, catalog),
    )


def _all_reduce_seconds(hw: _Hardware, gpus: int, tokens: int, hidden: int, layers: int) -> float:
    """Two ring all-reduces per layer (after attention and after the MLP) of `tokens` 16-bit activations."""
    if gpus == 1:
        return 0.0
    payload = tokens * hidden * 2
    one = 2 * (gpus - 1) / gpus * payload / hw.interconnect + hw.all_reduce_latency
    return 2 * layers * one


def replica_throughput(
    model: OpenModel,
    dtype_or_quantize: str,
    gpu_model: str,
    gpus: int,
    max_total_tokens: int,
    *,
    tpot_seconds: float = DEFAULT_TPOT_SECONDS,
    prompt_tokens: float = DEFAULT_PROMPT_TOKENS,
    generated_tokens: float = DEFAULT_GENERATED_TOKENS,
    max_batch: int = MAX_BATCH,
    catalog: GpuCatalog | None = None,
) -> ReplicaThroughput:
    """Prefill and decode tokens/s of one replica of `model` on `gpus` GPUs of `gpu_model`."""
    if gpus < 1:
        raise InputError(f"a replica needs at least 1 GPU, got {gpus}")
    if tpot_seconds <= 0:
        raise InputError(f"the latency target must be positive, got {tpot_seconds} s per output token")
    catalog = catalog or gpu_catalog()
    hw = _hardware(gpu_model, dtype_or_quantize == "fp8", catalog)
    weights = weight_bytes(model, dtype_or_quantize)
    kv_per_token = kv_bytes_per_token(model)
    width = model.attention_heads * model.head_dim

    usable = int(PER_GPU_OVERHEAD.usable_gib(hw.memory_gib) * gpus * GIB)
    kv_tokens = max(0, usable - weights) // kv_per_token
    full_sequences = kv_tokens // max_total_tokens
    # During decode a sequence holds its prompt and, on average, half its reply.
    kv_tokens_per_sequence = max(1.0, prompt_tokens + generated_tokens / 2)
    batch_limit = max(1, min(max_batch, int(kv_tokens // kv_tokens_per_sequence)))

    def step(batch: int) -> tuple[float, str]:
        memory = (weights + batch * kv_tokens_per_sequence * kv_per_token) / gpus / hw.bandwidth
        compute = (2 * model.parameters + 4 * model.layers * kv_tokens_per_sequence * width) * batch / gpus / hw.flops
        comm = _all_reduce_seconds(hw, gpus, batch, width, model.layers)
        return max(memory, compute) + comm + hw.step_overhead, "memory" if memory >= compute else "compute"

    # Step time grows with the batch: the largest batch within the target, by bisection.
    low, high = 1, batch_limit
    if step(1)[0] <= tpot_seconds:
        while low < high:
            mid = (low + high + 1) // 2
            if step(mid)[0] <= tpot_seconds:
                low = mid
            else:
                high = mid - 1
    batch = low
    step_seconds, bound = step(batch)

    prefill_flops = (2 * model.parameters + 2 * model.layers * prompt_tokens * width) / gpus
    prefill_seconds_per_token = prefill_flops / hw.flops
    if gpus > 1:
        # Bandwidth only: a prefill batch's all-reduces are large, their latency is spread over many tokens.
        prefill_seconds_per_token += 2 * model.layers * 2 * (gpus - 1) / gpus * width * 2 / hw.interconnect
    return ReplicaThroughput(
        prefill_tokens_per_second=1 / prefill_seconds_per_token,
        decode_tokens_per_second=batch / step_seconds,
        decode_batch=batch,
        decode_step_seconds=step_seconds,
        decode_bound=bound,
        meets_target=step(1)[0] <= tpot_seconds,
        kv_capacity_tokens=int(kv_tokens),
        kv_capacity_sequences=int(full_sequences),
    )


def gemm_seconds(m: int, n: int, k: int, gpu_model: str, *, fp8: bool = False,
                 catalog: GpuCatalog | None = None) -> float:
    """The model's time for one 16-bit (m x k) @ (k x n) matrix product on one GPU: the roofline above.

    Decode is such products at small m (memory-bound), prefill at large m
    (compute-bound); bench/throughput.py and the tests hold this against
    aiconfigurator's measured vLLM kernels.
    """
    hw = _hardware(gpu_model, fp8, catalog or gpu_catalog())
    element = 1 if fp8 else 2
    memory = (m * k + k * n + m * n) * element / hw.bandwidth
    compute = 2 * m * n * k / hw.flops
    return max(memory, compute)
