"""Replica sizing: bytes per weight and per KV token, GPU counts, token limits, and the errors a user sees.

Hand arithmetic used below (GiB = 2**30 bytes; per-GPU usable = memory * 0.9 - 1):
  L4 / A10G 22.3 GiB -> 19.07 usable;  L40S 44.7 -> 39.23;  H100 79.6 -> 70.64.
  Llama-3.1-8B   bf16 weights 8,030,261,248 * 2  = 16,060,522,496 B = 14.957 GiB
                 KV per token 2 * 32 * 8 * 128 * 2 = 131,072 B; 8192 tokens = 1 GiB
  Llama-3.1-70B  bf16 weights 70,553,706,496 * 2 = 131.42 GiB
                 KV per token 2 * 80 * 8 * 128 * 2 = 327,680 B; 8192 tokens = 2.5 GiB
  Mixtral-8x7B   bf16 weights 46,702,792,704 * 2 = 86.99 GiB; KV as Llama-3.1-8B
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from privend.catalog import OpenModel, model_catalog
from privend.errors import InputError
from privend.sizing import (
    GIB,
    PER_GPU_OVERHEAD,
    ReplicaSize,
    kv_bytes_per_token,
    size_custom,
    size_replica,
    weight_bytes,
)

L4 = Decimal("22.3")
L40S = Decimal("44.7")
H100 = Decimal("79.6")


def model(model_id: str) -> OpenModel:
    return model_catalog().get(model_id)


LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"


# --- weights and KV cache -------------------------------------------------


def test_llama_8b_weights_in_bfloat16_are_two_bytes_per_parameter() -> None:
    assert weight_bytes(model(LLAMA_8B), "bfloat16") == 16_060_522_496
    assert round(16_060_522_496 / GIB, 2) == 14.96


@pytest.mark.parametrize(
    ("precision", "expected_bytes"),
    [
        ("float16", 16_060_522_496),
        ("fp8", 8_030_261_248),
        ("bitsandbytes", 8_030_261_248),
        ("eetq", 8_030_261_248),
        # 4-bit: 0.5 + 1/16 = 9/16 byte per parameter; 8,030,261,248 / 16 * 9.
        ("awq", 4_517_021_952),
        ("gptq", 4_517_021_952),
        ("bitsandbytes-nf4", 4_517_021_952),
        ("bitsandbytes-fp4", 4_517_021_952),
    ],
)
def test_weight_bytes_per_dtype_and_quantization(precision: str, expected_bytes: int) -> None:
    assert weight_bytes(model(LLAMA_8B), precision) == expected_bytes


def test_weight_bytes_round_up_to_whole_bytes() -> None:
    odd = OpenModel(
        id="acme/odd",
        parameters=2,
        layers=1,
        attention_heads=1,
        kv_heads=1,
        head_dim=1,
        max_context=16,
        default_dtype="bfloat16",
    )
    assert weight_bytes(odd, "awq") == 2  # 2 * 9/16 = 1.125


def test_unknown_precision_is_a_one_line_input_error() -> None:
    with pytest.raises(InputError) as caught:
        weight_bytes(model(LLAMA_8B), "int3")
    assert str(caught.value) == (
        "unknown dtype or quantization 'int3' (known: awq, bfloat16, bitsandbytes, "
        "bitsandbytes-fp4, bitsandbytes-nf4, eetq, float16, fp8, gptq)"
    )


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        (LLAMA_8B, 131_072),  # 2 * 32 * 8 * 128 * 2
        (LLAMA_70B, 327_680),  # 2 * 80 * 8 * 128 * 2
        ("Qwen/Qwen2.5-7B-Instruct", 57_344),  # 2 * 28 * 4 * 128 * 2
        ("google/gemma-2-9b-it", 344_064),  # 2 * 42 * 8 * 256 * 2
        ("microsoft/Phi-3.5-mini-instruct", 393_216),  # 2 * 32 * 32 * 96 * 2
    ],
)
def test_kv_bytes_per_token(model_id: str, expected: int) -> None:
    assert kv_bytes_per_token(model(model_id)) == expected


def test_kv_bytes_per_token_scales_with_kv_dtype() -> None:
    assert kv_bytes_per_token(model(LLAMA_8B), kv_dtype_bytes=1) == 65_536


def test_per_gpu_overhead_is_ten_percent_plus_one_gib() -> None:
    assert PER_GPU_OVERHEAD.usable_gib(L4) == Decimal("19.07")
    assert PER_GPU_OVERHEAD.usable_gib(Decimal(80)) == Decimal(71)


# --- picking the GPU count ------------------------------------------------


def test_llama_8b_fits_one_l4() -> None:
    # needed 14.957 + 4 * 1 = 18.96 GiB <= 19.07 usable on one L4.
    assert size_replica(model(LLAMA_8B), L4, 8, "l4") == ReplicaSize(
        gpus_per_replica=1,
        weights_gib=Decimal("14.96"),
        kv_gib_per_request=Decimal("1.00"),
        kv_budget_gib=Decimal("4.11"),
        needed_gib=Decimal("18.96"),
        usable_gib=Decimal("19.07"),
        max_total_tokens=8192,
        max_input_tokens=7168,
    )


def test_llama_70b_takes_four_h100s() -> None:
    # needed 131.42 + 4 * 2.5 = 141.42 GiB; 2 H100s give 2 * 70.64 = 141.28 (short
    # by 0.14), 4 give 282.56.
    size = size_replica(model(LLAMA_70B), H100, 8, "h100")
    assert size.gpus_per_replica == 4
    assert (size.needed_gib, size.usable_gib) == (Decimal("141.42"), Decimal("282.56"))


def test_llama_70b_in_bfloat16_does_not_fit_a_four_gpu_l4_pool() -> None:
    # 4 * 19.07 = 76.3 GiB < 141.42 needed.
    with pytest.raises(InputError) as caught:
        size_replica(model(LLAMA_70B), L4, 4, "l4")
    assert str(caught.value) == (
        "model meta-llama/Llama-3.1-70B-Instruct in bfloat16 needs ~141 GiB "
        "(131 GiB weights + 10 GiB KV for 4 requests of 8192 tokens); "
        "pool l4 has 22.3 GiB per GPU (19.1 usable) and 4 GPUs per node at most"
    )


def test_llama_70b_in_bfloat16_needs_all_eight_gpus_of_an_l4_node() -> None:
    # 8 * 19.07 = 152.56 GiB >= 141.42 needed; 4 GPUs (76.3) do not suffice.
    size = size_replica(model(LLAMA_70B), L4, 8, "l4")
    assert size.gpus_per_replica == 8
    assert size.kv_budget_gib == Decimal("21.14")  # 152.56 - 131.42


def test_llama_70b_with_32k_tokens_does_not_fit_eight_l4s() -> None:
    # KV 4 * 32768 * 327,680 B = 40 GiB; 131.42 + 40 = 171.42 > 152.56.
    with pytest.raises(InputError) as caught:
        size_replica(model(LLAMA_70B), L4, 8, "l4", max_total_tokens=32768)
    assert str(caught.value) == (
        "model meta-llama/Llama-3.1-70B-Instruct in bfloat16 needs ~171 GiB "
        "(131 GiB weights + 40 GiB KV for 4 requests of 32768 tokens); "
        "pool l4 has 22.3 GiB per GPU (19.1 usable) and 8 GPUs per node at most"
    )


def test_llama_70b_quantized_with_awq_fits_four_l4s() -> None:
    # 70,553,706,496 * 9/16 B = 36.96 GiB + 10 GiB KV = 46.96; 2 L4s give 38.14, 4 give 76.28.
    size = size_replica(model(LLAMA_70B), L4, 8, "l4", quantize="awq")
    assert (size.gpus_per_replica, size.weights_gib) == (4, Decimal("36.96"))


def test_mixtral_on_l40s_skips_three_gpus_for_four() -> None:
    # needed 86.99 + 4 = 90.99 GiB. Three L40S would hold it (3 * 39.23 = 117.69),
    # but 3 does not divide 8 KV heads, so the next valid count, 4, is chosen.
    mixtral = model(MIXTRAL)
    assert 3 * PER_GPU_OVERHEAD.usable_gib(L40S) >= Decimal("90.99")
    size = size_replica(mixtral, L40S, 8, "l40s")
    assert size.gpus_per_replica == 4
    assert size.needed_gib == Decimal("90.99")


def test_invalid_shard_counts_are_never_chosen_even_when_they_would_fit() -> None:
    # Same Mixtral, on a pool capped at 3 GPUs per node: 3 would fit but is not a
    # valid shard count, and 2 (78.46 GiB) is too small.
    with pytest.raises(InputError) as caught:
        size_replica(model(MIXTRAL), L40S, 3, "l40s")
    assert str(caught.value) == (
        "model mistralai/Mixtral-8x7B-Instruct-v0.1 in bfloat16 needs ~91 GiB "
        "(87 GiB weights + 4 GiB KV for 4 requests of 8192 tokens); "
        "pool l40s has 44.7 GiB per GPU (39.2 usable) and 3 GPUs per node at most"
    )


def test_single_gpu_pool_error_says_gpu_in_the_singular() -> None:
    with pytest.raises(InputError, match=r"and 1 GPU per node at most$"):
        size_replica(model(LLAMA_70B), H100, 1, "h100-single")


def test_pool_without_gpus_is_an_input_error() -> None:
    with pytest.raises(InputError) as caught:
        size_replica(model(LLAMA_8B), L4, 0, "l4")
    assert str(caught.value) == "pool l4 must allow at least 1 GPU per node, got 0"


# --- token limits ---------------------------------------------------------


def test_default_max_total_tokens_is_capped_by_the_model_context() -> None:
    short = OpenModel(
        id="acme/short",
        parameters=1_000_000,
        layers=2,
        attention_heads=4,
        kv_heads=4,
        head_dim=64,
        max_context=4096,
        default_dtype="float16",
    )
    size = size_replica(short, L4, 1, "l4")
    assert (size.max_total_tokens, size.max_input_tokens) == (4096, 3072)


def test_default_max_total_tokens_is_8192_for_long_context_models() -> None:
    size = size_replica(model("meta-llama/Llama-3.2-1B-Instruct"), L4, 1, "l4")
    assert (size.max_total_tokens, size.max_input_tokens) == (8192, 7168)


def test_output_reserve_shrinks_to_half_of_a_short_limit() -> None:
    size = size_replica(model(LLAMA_8B), L4, 1, "l4", max_total_tokens=1000)
    assert (size.max_total_tokens, size.max_input_tokens) == (1000, 500)


def test_explicit_max_input_tokens_is_kept() -> None:
    size = size_replica(model(LLAMA_8B), L4, 1, "l4", max_total_tokens=4096, max_input_tokens=4000)
    assert (size.max_total_tokens, size.max_input_tokens) == (4096, 4000)


def test_max_total_tokens_beyond_the_model_context_is_an_input_error() -> None:
    with pytest.raises(InputError) as caught:
        size_replica(model(LLAMA_8B), H100, 8, "h100", max_total_tokens=200_000)
    assert str(caught.value) == (
        "max_total_tokens 200000 exceeds the 131072-token context of meta-llama/Llama-3.1-8B-Instruct"
    )


def test_max_total_tokens_equal_to_the_model_context_is_allowed() -> None:
    size = size_replica(model("google/gemma-2-9b-it"), H100, 8, "h100", max_total_tokens=8192)
    assert size.max_total_tokens == 8192


def test_max_input_tokens_must_leave_room_for_the_reply() -> None:
    with pytest.raises(InputError) as caught:
        size_replica(model(LLAMA_8B), L4, 1, "l4", max_total_tokens=4096, max_input_tokens=4096)
    assert str(caught.value) == (
        "max_input_tokens 4096 must be less than max_total_tokens 4096 to leave room for the reply"
    )


def test_max_input_tokens_must_be_positive() -> None:
    with pytest.raises(InputError) as caught:
        size_replica(model(LLAMA_8B), L4, 1, "l4", max_total_tokens=4096, max_input_tokens=0)
    assert str(caught.value) == "max_input_tokens must be at least 1, got 0"


def test_max_total_tokens_must_hold_one_token_in_and_one_out() -> None:
    with pytest.raises(InputError) as caught:
        size_replica(model(LLAMA_8B), L4, 1, "l4", max_total_tokens=1)
    assert str(caught.value) == "max_total_tokens must be at least 2, got 1"


# --- models outside the catalog -------------------------------------------


def test_custom_model_keeps_the_operator_values_without_memory_math() -> None:
    assert size_custom(2, 30_000, 32_768, 4, "l40s") == ReplicaSize(
        gpus_per_replica=2,
        weights_gib=None,
        kv_gib_per_request=None,
        kv_budget_gib=None,
        needed_gib=None,
        usable_gib=None,
        max_total_tokens=32_768,
        max_input_tokens=30_000,
    )


def test_custom_model_may_use_every_gpu_of_a_node() -> None:
    assert size_custom(8, 1000, 2000, 8, "h100").gpus_per_replica == 8


def test_custom_model_cannot_span_nodes() -> None:
    with pytest.raises(InputError) as caught:
        size_custom(8, 1000, 2000, 4, "l4")
    assert str(caught.value) == "gpus_per_replica 8 exceeds pool l4's 4 GPUs per node"


def test_custom_model_needs_at_least_one_gpu() -> None:
    with pytest.raises(InputError) as caught:
        size_custom(0, 1000, 2000, 4, "l4")
    assert str(caught.value) == "gpus_per_replica must be at least 1, got 0"


def test_custom_model_token_limits_are_validated() -> None:
    with pytest.raises(InputError) as caught:
        size_custom(1, 2000, 2000, 4, "l4")
    assert str(caught.value) == (
        "max_input_tokens 2000 must be less than max_total_tokens 2000 to leave room for the reply"
    )


def test_custom_model_checks_the_pool() -> None:
    with pytest.raises(InputError) as caught:
        size_custom(1, 1000, 2000, 0, "l4")
    assert str(caught.value) == "pool l4 must allow at least 1 GPU per node, got 0"
