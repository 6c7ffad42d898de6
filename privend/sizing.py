"""Replica sizing: how many GPUs one endpoint replica needs, and its token limits.

Pure arithmetic over a catalog model and a GPU pool, no Pulumi and no I/O. The
planner asks `size_replica` for catalog models and `size_custom` for models the
catalog does not know (the operator then states the GPU count and token limits
and nothing is checked against memory). Bad input raises `InputError` with one
line carrying the numbers, so the CLI can show it as it is.

The memory model, per replica:
  weights  parameters x bytes per parameter of the dtype or quantization;
  KV cache 2 (K and V) x layers x KV heads x head dim x 2 bytes per token, for
           MIN_CONCURRENT_REQUESTS requests of max_total_tokens each;
  usable   per GPU, the GPU's usable memory less PER_GPU_OVERHEAD, times the
           GPU count. Tensor parallelism splits both weights and KV heads evenly
           across GPUs, so totals can be compared directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from privend.catalog import OpenModel
from privend.errors import InputError

GIB = 2**30

# 4-bit schemes store half a byte per weight, plus an allowance of 1/16 byte per
# parameter for what they do not shrink: per-group scales and zero points, and
# the layers quantizers leave in 16-bit (embeddings, output head, norms). Small
# models with large vocabularies carry more 16-bit weight than this; at their
# size PER_GPU_OVERHEAD covers the difference.
FOUR_BIT_BYTES_PER_PARAMETER = Decimal("0.5") + Decimal(1) / 16

# Keys are the names TGI's DTYPE and QUANTIZE settings take.
BYTES_PER_PARAMETER: dict[str, Decimal] = {
    "bfloat16": Decimal(2),
    "float16": Decimal(2),
    "fp8": Decimal(1),
    "bitsandbytes": Decimal(1),  # LLM.int8
    "eetq": Decimal(1),  # int8 weights
    "awq": FOUR_BIT_BYTES_PER_PARAMETER,
    "gptq": FOUR_BIT_BYTES_PER_PARAMETER,
    "bitsandbytes-nf4": FOUR_BIT_BYTES_PER_PARAMETER,
    "bitsandbytes-fp4": FOUR_BIT_BYTES_PER_PARAMETER,
}

# The KV cache stays in 16-bit whatever the weights are quantized to, unless an
# engine is told otherwise.
KV_DTYPE_BYTES = 2


@dataclass(frozen=True)
class GpuOverhead:
    """Memory on each GPU that neither weights nor KV cache can use."""

    fraction: Decimal
    fixed_gib: Decimal

    def usable_gib(self, gpu_memory_gib: Decimal) -> Decimal:
        return gpu_memory_gib * (1 - self.fraction) - self.fixed_gib


# The CUDA context, cuBLAS and NCCL workspaces, CUDA graphs, activations of the
# largest prefill batch and allocator fragmentation. 10% is the headroom vLLM
# keeps by default (gpu_memory_utilization 0.9); the fixed GiB is for the
# context and graphs, which do not shrink with the GPU.
PER_GPU_OVERHEAD = GpuOverhead(fraction=Decimal("0.10"), fixed_gib=Decimal(1))

# A replica that cannot hold this many full-length requests at once spends its
# GPUs on one conversation at a time; continuous batching needs room to batch.
MIN_CONCURRENT_REQUESTS = 4

# Long contexts are paid for in KV cache on every request; endpoints get this
# many tokens (prompt plus reply) unless the operator asks for more.
DEFAULT_MAX_TOTAL_TOKENS = 8192

# Tokens kept for the reply when max_input_tokens is not given: 1024, or half of
# max_total_tokens when that is smaller, so short limits still leave input room.
OUTPUT_RESERVE_TOKENS = 1024


@dataclass(frozen=True)
class ReplicaSize:
    """The GPUs and token limits of one replica. Memory fields are None for custom models."""

    gpus_per_replica: int
    weights_gib: Decimal | None
    kv_gib_per_request: Decimal | None
    kv_budget_gib: Decimal | None  # usable memory left for the KV cache once weights are loaded
    needed_gib: Decimal | None  # weights + KV cache for MIN_CONCURRENT_REQUESTS full requests
    usable_gib: Decimal | None  # all GPUs of the replica, after PER_GPU_OVERHEAD
    max_total_tokens: int
    max_input_tokens: int


def bytes_per_parameter(dtype_or_quantize: str) -> Decimal:
    try:
        return BYTES_PER_PARAMETER[dtype_or_quantize]
    except KeyError:
        raise InputError(
            f"unknown dtype or quantization {dtype_or_quantize!r} "
            f"(known: {', '.join(sorted(BYTES_PER_PARAMETER))})"
        ) from None


def weight_bytes(model: OpenModel, dtype_or_quantize: str) -> int:
    """Bytes the model's weights take in GPU memory, rounded up."""
    exact = model.parameters * bytes_per_parameter(dtype_or_quantize)
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def kv_bytes_per_token(model: OpenModel, kv_dtype_bytes: int = KV_DTYPE_BYTES) -> int:
    """KV cache bytes one token occupies across all layers (K and V)."""
    return 2 * model.layers * model.kv_heads * model.head_dim * kv_dtype_bytes


def size_replica(
    model: OpenModel,
    pool_gpu_memory_gib: Decimal,
    pool_max_gpus_per_node: int,
    pool_name: str,
    quantize: str | None = None,
    max_total_tokens: int | None = None,
    max_input_tokens: int | None = None,
) -> ReplicaSize:
    """The smallest valid GPU count on which the model serves MIN_CONCURRENT_REQUESTS full requests.

    A count is a candidate when it is a valid tensor-parallel shard count for the
    model and no more than the pool's GPUs per node (a replica never spans nodes).
    `quantize` is a dtype or quantization name; None means the model's default dtype.
    """
    _check_pool(pool_name, pool_max_gpus_per_node)
    precision = quantize or model.default_dtype
    total_tokens, input_tokens = _token_limits(
        max_total_tokens if max_total_tokens is not None else min(model.max_context, DEFAULT_MAX_TOTAL_TOKENS),
        max_input_tokens,
        context=(model.id, model.max_context),
    )

    weights = Decimal(weight_bytes(model, precision)) / GIB
    kv_per_request = Decimal(kv_bytes_per_token(model) * total_tokens) / GIB
    needed = weights + MIN_CONCURRENT_REQUESTS * kv_per_request
    usable_per_gpu = PER_GPU_OVERHEAD.usable_gib(Decimal(pool_gpu_memory_gib))

    for gpus in model.valid_shard_counts(pool_max_gpus_per_node):
        usable = gpus * usable_per_gpu
        if needed <= usable:
            return ReplicaSize(
                gpus_per_replica=gpus,
                weights_gib=_gib(weights),
                kv_gib_per_request=_gib(kv_per_request),
                kv_budget_gib=_gib(usable - weights),
                needed_gib=_gib(needed),
                usable_gib=_gib(usable),
                max_total_tokens=total_tokens,
                max_input_tokens=input_tokens,
            )

    raise InputError(
        f"model {model.id} in {precision} needs ~{needed:.0f} GiB "
        f"({weights:.0f} GiB weights + {MIN_CONCURRENT_REQUESTS * kv_per_request:.0f} GiB KV "
        f"for {MIN_CONCURRENT_REQUESTS} requests of {total_tokens} tokens); "
        f"pool {pool_name} has {Decimal(pool_gpu_memory_gib).normalize():f} GiB per GPU "
        f"({usable_per_gpu:.1f} usable) and {_gpus(pool_max_gpus_per_node)} per node at most"
    )


def size_custom(
    gpus_per_replica: int,
    max_input_tokens: int,
    max_total_tokens: int,
    pool_max_gpus_per_node: int,
    pool_name: str,
) -> ReplicaSize:
    """A replica for a model outside the catalog, from the operator's explicit values.

    Nothing is known of the model's shape, so nothing is checked against memory;
    only that the values are coherent and fit on one node of the pool.
    """
    _check_pool(pool_name, pool_max_gpus_per_node)
    if gpus_per_replica < 1:
        raise InputError(f"gpus_per_replica must be at least 1, got {gpus_per_replica}")
    if gpus_per_replica > pool_max_gpus_per_node:
        raise InputError(
            f"gpus_per_replica {gpus_per_replica} exceeds pool {pool_name}'s "
            f"{_gpus(pool_max_gpus_per_node)} per node"
        )
    total_tokens, input_tokens = _token_limits(max_total_tokens, max_input_tokens, context=None)
    return ReplicaSize(
        gpus_per_replica=gpus_per_replica,
        weights_gib=None,
        kv_gib_per_request=None,
        kv_budget_gib=None,
        needed_gib=None,
        usable_gib=None,
        max_total_tokens=total_tokens,
        max_input_tokens=input_tokens,
    )


def _token_limits(
    max_total_tokens: int, max_input_tokens: int | None, context: tuple[str, int] | None
) -> tuple[int, int]:
    """Validated (max_total_tokens, max_input_tokens); `context` is (model id, its context length)."""
    # One token of input and one of reply is the least a request can be.
    if max_total_tokens < 2:
        raise InputError(f"max_total_tokens must be at least 2, got {max_total_tokens}")
    if context is not None and max_total_tokens > context[1]:
        raise InputError(
            f"max_total_tokens {max_total_tokens} exceeds the {context[1]}-token context of {context[0]}"
        )
    if max_input_tokens is None:
        max_input_tokens = max_total_tokens - min(OUTPUT_RESERVE_TOKENS, max_total_tokens // 2)
    if max_input_tokens < 1:
        raise InputError(f"max_input_tokens must be at least 1, got {max_input_tokens}")
    if max_input_tokens >= max_total_tokens:
        raise InputError(
            f"max_input_tokens {max_input_tokens} must be less than max_total_tokens "
            f"{max_total_tokens} to leave room for the reply"
        )
    return max_total_tokens, max_input_tokens


def _check_pool(pool_name: str, pool_max_gpus_per_node: int) -> None:
    if pool_max_gpus_per_node < 1:
        raise InputError(f"pool {pool_name} must allow at least 1 GPU per node, got {pool_max_gpus_per_node}")


def _gib(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _gpus(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"
