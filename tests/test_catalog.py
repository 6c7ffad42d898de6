"""The GPU instance and open model catalogs: their facts, and how lookups fail."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from privend.catalog import ModelCatalog, gpu_catalog, model_catalog
from privend.errors import InputError

GPU_INSTANCES = sorted(gpu_catalog().instances)

# Quota codes by family letter: G and VT, or P; on-demand, then spot.
QUOTA_CODES_BY_FAMILY_LETTER = {
    "g": ("L-DB2E81BA", "L-3819A6DF"),
    "p": ("L-417A185B", "L-7212CCBC"),
}

REQUIRED_MODELS = [
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.2-1B-Instruct",
    "meta-llama/Llama-3.2-3B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.3",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-14B-Instruct",
    "Qwen/Qwen2.5-32B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct",
    "google/gemma-2-9b-it",
    "google/gemma-2-27b-it",
    "microsoft/Phi-3.5-mini-instruct",
]


# --- GPU instance catalog -------------------------------------------------


@pytest.mark.parametrize("name", GPU_INSTANCES)
def test_every_instance_counts_against_its_family_quota_codes(name: str) -> None:
    instance = gpu_catalog().get(name)
    on_demand, spot = QUOTA_CODES_BY_FAMILY_LETTER[name[0]]
    assert instance.quota_code_for("on-demand") == on_demand
    assert instance.quota_code_for("spot") == spot


@pytest.mark.parametrize("name", GPU_INSTANCES)
def test_every_price_is_a_positive_decimal(name: str) -> None:
    price = gpu_catalog().get(name).on_demand_hourly
    assert isinstance(price, Decimal)
    assert price > 0


@pytest.mark.parametrize("name", GPU_INSTANCES)
def test_usable_gpu_memory_never_exceeds_the_nominal_figure(name: str) -> None:
    instance = gpu_catalog().get(name)
    assert isinstance(instance.gpu_memory_gib, Decimal)
    assert 0 < instance.gpu_memory_gib <= instance.gpu_memory_nominal_gb


def test_instances_with_the_same_gpu_agree_on_its_memory() -> None:
    memory_by_gpu: dict[str, set[tuple[Decimal, int]]] = {}
    for instance in gpu_catalog().instances.values():
        memory_by_gpu.setdefault(instance.gpu_model, set()).add(
            (instance.gpu_memory_gib, instance.gpu_memory_nominal_gb)
        )
    assert memory_by_gpu == {
        "A10G": {(Decimal("22.3"), 24)},
        "L4": {(Decimal("22.3"), 24)},
        "L40S": {(Decimal("44.7"), 48)},
        "A100": {(Decimal("40.0"), 40)},
        "H100": {(Decimal("79.6"), 80)},
        "H200": {(Decimal("140.4"), 141)},
    }


@pytest.mark.parametrize(
    ("name", "gpus", "gpu_model", "vcpus", "memory_gib", "price"),
    [
        ("g5.xlarge", 1, "A10G", 4, 16, "1.006"),
        ("g5.48xlarge", 8, "A10G", 192, 768, "16.288"),
        ("g6.xlarge", 1, "L4", 4, 16, "0.8048"),
        ("g6.12xlarge", 4, "L4", 48, 192, "4.6016"),
        ("g6.48xlarge", 8, "L4", 192, 768, "13.3504"),
        ("g6e.xlarge", 1, "L40S", 4, 32, "1.861"),
        ("g6e.48xlarge", 8, "L40S", 192, 1536, "30.13118"),
        # After the June 2025 reduction (p5.48xlarge was 98.32 before it).
        ("p4d.24xlarge", 8, "A100", 96, 1152, "21.957642"),
        ("p5.4xlarge", 1, "H100", 16, 256, "6.88"),
        ("p5.48xlarge", 8, "H100", 192, 2048, "55.04"),
        ("p5en.48xlarge", 8, "H200", 192, 2048, "63.296"),
    ],
)
def test_hand_checked_instance_facts(
    name: str, gpus: int, gpu_model: str, vcpus: int, memory_gib: int, price: str
) -> None:
    instance = gpu_catalog().get(name)
    assert (instance.gpus, instance.gpu_model, instance.vcpus, instance.memory_gib) == (
        gpus,
        gpu_model,
        vcpus,
        memory_gib,
    )
    assert instance.on_demand_hourly == Decimal(price)


def test_p5e_is_not_listed_because_it_has_no_on_demand_price() -> None:
    assert "p5e.48xlarge" not in gpu_catalog().instances


@pytest.mark.parametrize(
    ("name", "family"), [("g6e.12xlarge", "g6e"), ("p5.48xlarge", "p5"), ("p5en.48xlarge", "p5en")]
)
def test_family_is_the_part_before_the_dot(name: str, family: str) -> None:
    assert gpu_catalog().get(name).family == family


def test_catalog_says_when_and_where_prices_were_read() -> None:
    catalog = gpu_catalog()
    assert datetime.date.fromisoformat(catalog.prices_read_on) <= datetime.date.today()
    assert "AWS Price List" in catalog.price_source
    assert "://" not in catalog.price_source


def test_unknown_instance_type_is_a_one_line_input_error() -> None:
    with pytest.raises(InputError) as caught:
        gpu_catalog().get("g7.xlarge")
    message = str(caught.value)
    assert message.startswith("instance type 'g7.xlarge' is not in the GPU catalog (known: g5.12xlarge, ")
    assert "p5en.48xlarge" in message
    assert "\n" not in message


def test_gpu_catalog_is_loaded_once() -> None:
    assert gpu_catalog() is gpu_catalog()


# --- Open model catalog ---------------------------------------------------


def test_model_catalog_holds_every_required_model() -> None:
    assert set(REQUIRED_MODELS) <= set(model_catalog().models)


@pytest.mark.parametrize(
    ("model_id", "layers", "attention_heads", "kv_heads", "head_dim", "max_context"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", 32, 32, 8, 128, 131072),
        ("meta-llama/Llama-3.1-70B-Instruct", 80, 64, 8, 128, 131072),
        ("meta-llama/Llama-3.2-1B-Instruct", 16, 32, 8, 64, 131072),
        ("meta-llama/Llama-3.2-3B-Instruct", 28, 24, 8, 128, 131072),
        ("mistralai/Mistral-7B-Instruct-v0.3", 32, 32, 8, 128, 32768),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 32, 32, 8, 128, 32768),
        ("Qwen/Qwen2.5-7B-Instruct", 28, 28, 4, 128, 32768),
        ("Qwen/Qwen2.5-14B-Instruct", 48, 40, 8, 128, 32768),
        ("Qwen/Qwen2.5-32B-Instruct", 64, 40, 8, 128, 32768),
        ("Qwen/Qwen2.5-72B-Instruct", 80, 64, 8, 128, 32768),
        ("google/gemma-2-9b-it", 42, 16, 8, 256, 8192),
        ("google/gemma-2-27b-it", 46, 32, 16, 128, 8192),
        ("microsoft/Phi-3.5-mini-instruct", 32, 32, 32, 96, 131072),
    ],
)
def test_model_shapes_match_their_config_json(
    model_id: str, layers: int, attention_heads: int, kv_heads: int, head_dim: int, max_context: int
) -> None:
    model = model_catalog().get(model_id)
    assert (model.layers, model.attention_heads, model.kv_heads, model.head_dim, model.max_context) == (
        layers,
        attention_heads,
        kv_heads,
        head_dim,
        max_context,
    )
    assert model.default_dtype == "bfloat16"


def test_llama_3_1_8b_parameter_count_follows_from_its_config() -> None:
    # vocab 128256, hidden 4096, intermediate 14336, 32 layers, 32 heads, 8 KV heads,
    # head dim 128, untied embeddings:
    #   embeddings + LM head  2 * 128256 * 4096                  = 1,050,673,152
    #   per layer  q,o 2 * 4096 * 4096 + k,v 2 * 4096 * 1024
    #              + MLP 3 * 4096 * 14336 + 2 norms * 4096       =   218,112,000
    #   32 layers + final norm 4096                              = 6,979,588,096
    #   total                                                    = 8,030,261,248
    assert model_catalog().get("meta-llama/Llama-3.1-8B-Instruct").parameters == 8_030_261_248


def test_mixtral_parameter_count_includes_every_expert() -> None:
    # Same attention as Mistral 7B, but 8 experts of 3 * 4096 * 14336 each per layer
    # plus a 4096 x 8 router: ~46.7B, not the ~12.9B active per token.
    assert model_catalog().get("mistralai/Mixtral-8x7B-Instruct-v0.1").parameters == 46_702_792_704


@pytest.mark.parametrize(
    ("model_id", "up_to", "expected"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", 8, [1, 2, 4, 8]),  # 32 heads, 8 KV heads
        ("Qwen/Qwen2.5-7B-Instruct", 8, [1, 2, 4]),  # 28 heads, 4 KV heads
        ("meta-llama/Llama-3.2-3B-Instruct", 8, [1, 2, 4, 8]),  # 24 heads, 8 KV heads
        ("google/gemma-2-27b-it", 16, [1, 2, 4, 8, 16]),  # 32 heads, 16 KV heads
        ("microsoft/Phi-3.5-mini-instruct", 4, [1, 2, 4]),  # capped by up_to
        ("meta-llama/Llama-3.1-70B-Instruct", 1, [1]),
    ],
)
def test_valid_shard_counts_divide_both_head_counts(model_id: str, up_to: int, expected: list[int]) -> None:
    assert model_catalog().get(model_id).valid_shard_counts(up_to) == expected


def test_a_model_with_8_kv_heads_cannot_be_split_three_ways() -> None:
    assert 3 not in model_catalog().get("mistralai/Mixtral-8x7B-Instruct-v0.1").valid_shard_counts(8)


def test_unknown_model_is_a_one_line_input_error() -> None:
    with pytest.raises(InputError) as caught:
        model_catalog().get("meta-llama/Llama-9-1T")
    message = str(caught.value)
    assert message.startswith("model 'meta-llama/Llama-9-1T' is not in the model catalog (known: Qwen/")
    assert "microsoft/Phi-3.5-mini-instruct" in message
    assert "\n" not in message


def _one_model(model_id: str = "acme/tiny", **overrides: object) -> dict:
    spec = {
        "parameters": 1000,
        "layers": 2,
        "attentionHeads": 8,
        "kvHeads": 4,
        "headDim": 64,
        "maxContext": 4096,
        "defaultDtype": "bfloat16",
    }
    spec.update(overrides)
    return {"models": {model_id: spec}}


def test_model_catalog_accepts_a_well_formed_entry() -> None:
    # The control case for the two rejections below.
    assert ModelCatalog.model_validate(_one_model()).get("acme/tiny").kv_heads == 4


def test_model_catalog_rejects_kv_heads_that_do_not_divide_attention_heads() -> None:
    with pytest.raises(ValidationError, match="kvHeads 3 does not divide attentionHeads 8"):
        ModelCatalog.model_validate(_one_model(kvHeads=3))


def test_model_catalog_rejects_an_id_without_an_organisation() -> None:
    # (match="id" would match any ValidationError: its message always says "validation".)
    with pytest.raises(ValidationError) as caught:
        ModelCatalog.model_validate(_one_model("tiny"))
    assert [(e["loc"], e["type"], e["input"]) for e in caught.value.errors()] == [
        (("models", "tiny", "id"), "string_pattern_mismatch", "tiny")
    ]


def test_model_catalog_is_loaded_once() -> None:
    assert model_catalog() is model_catalog()
