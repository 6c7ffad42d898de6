"""The throughput model against NVIDIA's measured kernels, and what it gives the catalog's models.

    python bench/throughput.py

Part 1: measured over modelled time of 16-bit GEMMs (aiconfigurator-core 0.12.0's vLLM data, the
subset copied into tests/data/aiconfigurator_gemm_bf16.csv), median, min and max per GPU and regime
(decode: m <= 32, weight reads; prefill: m >= 1024, compute). 1.0 is a perfect model; above 1 the model
is optimistic. Part 2: per catalog model and GPU, one replica's prefill and decode tokens/s at the
default latency target. aiconfigurator-core is a cross-check, not a dependency: the wheel is 80 MB and its
tables are parquet (pyarrow); the subset above is what the check needs.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from privend.catalog import model_catalog  # noqa: E402
from privend.throughput import DEFAULT_TPOT_SECONDS, gemm_seconds, replica_throughput  # noqa: E402


def main() -> None:
    ratios: dict[tuple[str, str], list[float]] = {}
    with (ROOT / "tests/data/aiconfigurator_gemm_bf16.csv").open() as f:
        for row in csv.DictReader(f):
            m, n, k = int(row["m"]), int(row["n"]), int(row["k"])
            regime = "decode" if m <= 32 else "prefill" if m >= 1024 else "between"
            ratios.setdefault((row["gpu"], regime), []).append(
                float(row["latency_ms"]) / (gemm_seconds(m, n, k, row["gpu"]) * 1000))
    print("measured / modelled GEMM time (aiconfigurator-core 0.12.0, vLLM, bf16)")
    print(f"{'gpu':6} {'regime':8} {'n':>3} {'median':>7} {'min':>6} {'max':>6}")
    for (gpu, regime), values in sorted(ratios.items()):
        print(f"{gpu:6} {regime:8} {len(values):3} {statistics.median(values):7.2f} {min(values):6.2f} {max(values):6.2f}")
    print("(the A100 measured is the 80 GB part, 2,039 GB/s; the catalog's p4d A100 has 1,555 GB/s)")
    print()
    print(f"one replica at {DEFAULT_TPOT_SECONDS * 1000:.0f} ms per output token, 2,048-token prompts, 8,192 max total")
    cases = [("meta-llama/Llama-3.1-8B-Instruct", "L4", 1), ("meta-llama/Llama-3.1-8B-Instruct", "L40S", 1),
             ("meta-llama/Llama-3.1-8B-Instruct", "H100", 1), ("Qwen/Qwen2.5-14B-Instruct", "L40S", 1),
             ("Qwen/Qwen2.5-32B-Instruct", "L40S", 2), ("meta-llama/Llama-3.1-70B-Instruct", "L40S", 4),
             ("meta-llama/Llama-3.1-70B-Instruct", "H100", 4)]
    print(f"{'model':36} {'gpu':5} {'gpus':>4} {'prefill tok/s':>13} {'decode tok/s':>12} {'batch':>5} {'target':>6}")
    for model_id, gpu, gpus in cases:
        t = replica_throughput(model_catalog().get(model_id), "bfloat16", gpu, gpus, 8192)
        print(f"{model_id:36} {gpu:5} {gpus:4} {t.prefill_tokens_per_second:13,.0f} "
              f"{t.decode_tokens_per_second:12,.0f} {t.decode_batch:5} {'met' if t.meets_target else 'missed':>6}")


if __name__ == "__main__":
    main()
