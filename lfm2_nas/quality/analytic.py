"""Analytic tier: quality guessed from the cost model, free and instant (no torch).

The score is the full-size layout's non-embedding parameter count, which ranks homogeneous
Transformers well (Archai's LiteTransformerSearch) but cannot tell a conv layer from an attention
layer of the same size: with GQA a conv block even has *more* parameters than an attention block,
so this tier ranks all-conv layouts above hybrids. Use it as a free prior, not as a verdict.
"""

from __future__ import annotations

from lfm2_nas import cost
from lfm2_nas.quality.result import QualityResult
from lfm2_nas.spec import ModelSpec

METRIC = "non_embedding_params"


def analytic_quality(spec: ModelSpec, seed: int = 0) -> QualityResult:
    """Non-embedding parameters of ``spec`` (higher is better), with other cost figures in ``details``."""
    return QualityResult(
        score=float(cost.non_embedding_params(spec)),
        metric=METRIC,
        higher_is_better=True,
        tokens=0,
        seconds=0.0,
        seed=seed,
        details={
            "params": cost.param_count(spec),
            "matmul_flops_per_token": cost.matmul_flops_per_token(spec),
            "attention_flops_per_position": cost.attention_flops_per_position(spec),
            "kv_bytes_per_token_bf16": cost.kv_bytes_per_token(spec, "bfloat16"),
            "num_attention_layers": spec.num_attention_layers,
            "pattern": spec.pattern,
        },
    )
