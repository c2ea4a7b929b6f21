"""ExecuTorch runtime with peer-model attention: one tiny Llama-style program against our torch model.

One export (the slow part, see tests/test_runtime_executorch.py): two attention layers carrying all
three peer features at once: no QK-norm, a head dim that is not hidden / heads, Llama 3 RoPE scaling.
"""

from __future__ import annotations

import numpy as np
import torch
from conftest import randomize_
from runtime_support import require

require("executorch")

from lfm2_nas.model import build_model  # noqa: E402
from lfm2_nas.runtimes.base import Artifact  # noqa: E402
from lfm2_nas.runtimes.executorch import RUNTIME, write_program  # noqa: E402
from lfm2_nas.spec import Llama3RopeScaling, ModelSpec  # noqa: E402

MAX_LEN = 32
PROMPT = 8
DECODE_STEPS = 16
# Original context 40: with head dim 24 and theta 5e5 the rescaling keeps, interpolates and divides
# frequencies that all turn within these 24 positions (as in tests/test_parity_peers.py).
SPEC = ModelSpec.from_pattern(
    "AA", vocab_size=97, hidden_size=64, num_heads=4, num_kv_heads=2, attn_head_dim=24, ff_dim=96,
    auto_adjust_ff_dim=False, qk_norm=False, rope_theta=500_000.0,
    rope_scaling=Llama3RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=40),
)


def test_llama_style_program_matches_torch(tmp_path):
    model = randomize_(build_model(SPEC), seed=3)
    path = tmp_path / "llama.pte"
    details = write_program(model, "fp32", MAX_LEN, path)
    artifact = Artifact(path=path, backend="executorch", quant="fp32", runtime_version=RUNTIME.version(),
                        max_len=MAX_LEN, size_bytes=path.stat().st_size, export_s=0.0, details=details)
    assert details["kv_cache_bytes"] == 4 * 2 * 2 * MAX_LEN * 2 * 24  # K and V, 2 layers, 2 kv heads of 24
    tokens = torch.randint(0, SPEC.vocab_size, (PROMPT + DECODE_STEPS,), generator=torch.Generator().manual_seed(0)).tolist()
    with torch.no_grad():
        expected = model(torch.tensor([tokens]))[0, PROMPT - 1 :].numpy()
    session = RUNTIME.load(artifact, threads=1)
    try:
        got = np.stack([session.prefill(tokens[:PROMPT])] + [session.step(t) for t in tokens[PROMPT:]])
    finally:
        session.close()
    assert expected.std() >= 0.3, "logits too flat for the tolerance to mean anything"
    assert np.abs(got - expected).max() <= 1e-3
