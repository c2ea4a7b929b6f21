"""The llama.cpp runtime: GGUF export, parity with the torch model, quantization quality, rewind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from runtime_support import require

require("llama_cpp")
require("gguf")

from conftest import random_spec, randomize_  # noqa: E402

from lfm2_nas.checkpoint import save_pretrained  # noqa: E402
from lfm2_nas.model import build_model  # noqa: E402
from lfm2_nas.runtimes import llamacpp  # noqa: E402
from lfm2_nas.runtimes.base import Artifact, ExportError, RuntimeUnavailable  # noqa: E402
from lfm2_nas.runtimes.gguf_export import write_f32_gguf  # noqa: E402
from lfm2_nas.spec import Llama3RopeScaling, ModelSpec  # noqa: E402

RUNTIME = llamacpp.RUNTIME
MAX_LEN = 64
PROMPT = 12
STEPS = 16
# f32 GGUF vs torch: measured <= 2e-5 over these layouts, with logits of std 1-10 (randomize_ weights).
TOLERANCE = 1e-3


TINY_LLAMA3 = Llama3RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=40)


def _spec(pattern: str, **fields) -> ModelSpec:
    base = dict(vocab_size=301, hidden_size=64, num_heads=4, num_kv_heads=2, ff_dim=96, auto_adjust_ff_dim=False)
    return ModelSpec.from_pattern(pattern, **{**base, **fields})


# Every kind of layout the search produces, each difference from the base spec on purpose; all-conv
# layouts cannot run in llama.cpp 0.3.36 and raise ExportError (test_unrepresentable_exports_raise).
LAYOUTS = {
    "mixed": _spec("CCACCA"),
    "conv_heavy": _spec("CCCCCA"),
    "all_attention": _spec("AAA"),
    "kv_heads_1": _spec("CAC", num_kv_heads=1),
    "untied_head": _spec("ACCA", tie_embeddings=False),
    "kernel_5": _spec("CCA", conv_kernel=5),
    "kernel_2": _spec("CAC", conv_kernel=2, rope_theta=10_000.0, norm_eps=1e-6),
    "odd_ffn": _spec("CAAC", ff_dim=97),
    "head_dim_16": _spec("ACAC", hidden_size=96, num_heads=6, num_kv_heads=3),
    "adjusted_ffn": _spec("CCA", ff_dim=160, auto_adjust_ff_dim=True, multiple_of=32),
    # Peer-model attention (written as qwen3 / llama): head dim not hidden / heads, no QK-norm, and
    # Llama 3 RoPE scaling with a short original context, so that within these 28 positions the
    # kept, interpolated and divided frequencies all turn (as in tests/test_parity_peers.py).
    "qwen3_head_dim_24": _spec("AAA", attn_head_dim=24, norm_eps=1e-6),
    "llama": _spec("AAA", qk_norm=False, rope_theta=500_000.0, rope_scaling=TINY_LLAMA3),
    "llama_head_dim_24_kv_1": _spec("AA", qk_norm=False, attn_head_dim=24, num_kv_heads=1, rope_scaling=TINY_LLAMA3),
}
# Random layouts from the shared generator (head dims 2 to 8, width 6 ...); llama.cpp has no conv bias.
RANDOM_SEEDS = (0, 3, 6, 11, 20)


def _model(spec: ModelSpec, seed: int = 0):
    return randomize_(build_model(spec, seed=seed), seed)


def _artifact(model, folder: Path, name: str, quant: str = "f32", max_len: int = MAX_LEN) -> Artifact:
    """An f32 GGUF of ``model`` written in this process (the public export runs in a child; see below)."""
    path = folder / f"{name}.f32.gguf"
    write_f32_gguf(model, path, name)
    if quant != "f32":
        quantized = folder / f"{name}.{quant}.gguf"
        llamacpp.quantize(path, quantized, quant, threads=1)
        path = quantized
    return Artifact(path, "llamacpp", quant, RUNTIME.version(), max_len, path.stat().st_size, 0.0)


def _prompt(spec: ModelSpec, length: int = PROMPT, seed: int = 0) -> list[int]:
    return torch.randint(0, spec.vocab_size, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


@torch.no_grad()
def _torch_logits(model, prompt: list[int], steps: list[int]) -> list[np.ndarray]:
    """Last-position logits after the prompt, then after each cached decode step."""
    cache = model.new_cache(1, MAX_LEN)
    out = [model(torch.tensor([prompt]), cache, last_only=True)[0, -1].numpy()]
    for token in steps:
        out.append(model(torch.tensor([[token]]), cache, last_only=True)[0, -1].numpy())
    return out


def _run(session, prompt: list[int], steps: list[int]) -> list[np.ndarray]:
    out = [session.prefill(prompt)]
    out.extend(session.step(token) for token in steps)
    return out


def _check_parity(model, session) -> float:
    spec = model.spec
    prompt, steps = _prompt(spec), _prompt(spec, STEPS, seed=1)
    expected = _torch_logits(model, prompt, steps)
    got = _run(session, prompt, steps)
    scale = float(np.std(np.stack(expected)))
    assert 0.3 < scale < 30, f"logits std {scale}: the comparison would not be meaningful"
    diff = max(float(np.abs(e - g).max()) for e, g in zip(expected, got))
    assert diff <= TOLERANCE, f"{spec.pattern}: max |llama.cpp - torch| = {diff:.2e} (logits std {scale:.2f})"
    return diff


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gguf")


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_f32_logits_equal_torch(name, folder):
    model = _model(LAYOUTS[name])
    session = RUNTIME.load(_artifact(model, folder, name), threads=1)
    try:
        _check_parity(model, session)
    finally:
        session.close()


@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_f32_logits_equal_torch_random_layouts(seed, folder):
    spec = random_spec(seed).replace(conv_bias=False, max_position_embeddings=4096)
    model = _model(spec, seed)
    session = RUNTIME.load(_artifact(model, folder, f"random{seed}"), threads=2)
    try:
        _check_parity(model, session)
    finally:
        session.close()


def test_all_attention_is_written_as_qwen3_and_hybrid_as_lfm2(folder):
    import gguf

    for name, arch in (("all_attention", "qwen3"), ("mixed", "lfm2")):
        path = folder / f"arch-{name}.gguf"
        assert write_f32_gguf(_model(LAYOUTS[name]), path, name) == arch
        fields = gguf.GGUFReader(path).fields
        assert fields["general.architecture"].contents() == arch
    kv = gguf.GGUFReader(folder / "arch-mixed.gguf").fields["lfm2.attention.head_count_kv"].contents()
    assert kv == [0, 0, 2, 0, 0, 2]  # a conv layer is a layer without kv heads


def test_peer_attention_is_written_in_its_own_architecture(folder):
    """QK-norm and an explicit head dim: qwen3; no QK-norm: llama, with Llama 3 scaling as rope_freqs."""
    import gguf

    from lfm2_nas.model import rope_inv_freq

    for name, arch in (("qwen3_head_dim_24", "qwen3"), ("kernel_5", "lfm2"), ("llama", "llama")):
        path = folder / f"arch-{name}.gguf"
        assert write_f32_gguf(_model(LAYOUTS[name]), path, name) == arch
        reader = gguf.GGUFReader(path)
        assert reader.fields[f"{arch}.attention.key_length"].contents() == LAYOUTS[name].head_dim
        tensors = {t.name: t for t in reader.tensors}
        attention = LAYOUTS[name].attention_indices[0]
        assert (f"blk.{attention}.attn_q_norm.weight" in tensors) == (arch != "llama")
        assert ("rope_freqs.weight" in tensors) == (arch == "llama")
    spec = LAYOUTS["llama"]  # the last file read
    divisors = np.asarray(tensors["rope_freqs.weight"].data)
    expected = (rope_inv_freq(spec.replace(rope_scaling=None)) / rope_inv_freq(spec)).numpy()
    assert np.allclose(divisors, expected) and divisors[0] == 1.0 and divisors[-1] == TINY_LLAMA3.factor


# ---- quantized formats ---------------------------------------------------------------------------

QUANT_SPEC = _spec("CCACCACA", vocab_size=1000, hidden_size=256, num_heads=8, num_kv_heads=2, ff_dim=512)
# Measured on QUANT_SPEC (randomize_ weights with seeds 7, 8, 9; 48-token prompt + 16 steps = 17 logit
# vectors each), llama-cpp-python 0.3.36 on a 2-core AMD EPYC (AVX2), against the f32 file:
#   f16:  min cosine 1.00000 (5 digits), top-1 17/17 each
#   q8_0: min cosine 0.99802 / 0.99840 / 0.99749, top-1 17/17 each
#   q4_0: min cosine 0.86349 / 0.87583 / 0.84275 (means 0.90), top-1 16/17, 16/17, 17/17
# (these Gaussian weights are harder on 4 bits than trained ones). Floors below, with margin:
QUANT_FLOOR = {"f16": (0.9999, 1.0), "q8_0": (0.995, 0.9), "q4_0": (0.75, 0.75)}


@pytest.fixture(scope="module")
def quant_runs(folder) -> dict[str, list[np.ndarray]]:
    model = _model(QUANT_SPEC, seed=7)
    prompt, steps = _prompt(QUANT_SPEC, 48), _prompt(QUANT_SPEC, STEPS, seed=2)
    runs = {}
    for quant in ("f32", "f16", "q8_0", "q4_0"):
        session = RUNTIME.load(_artifact(model, folder, "quant", quant), threads=2)
        try:
            runs[quant] = _run(session, prompt, steps)
        finally:
            session.close()
    return runs


@pytest.mark.parametrize("quant", ["f16", "q8_0", "q4_0"])
def test_quantized_logits_close_to_f32(quant, quant_runs):
    ref, got = np.stack(quant_runs["f32"]), np.stack(quant_runs[quant])
    cosine = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    top1 = float((ref.argmax(1) == got.argmax(1)).mean())
    min_cosine, min_top1 = QUANT_FLOOR[quant]
    assert cosine.min() >= min_cosine and top1 >= min_top1, f"{quant}: cosine {cosine.min():.5f}, top-1 {top1:.2f}"
    assert not np.array_equal(ref, got)  # the weights really changed format


def test_quantized_files_hold_the_types_asked_for(folder):
    from lfm2_nas.runtimes.gguf_export import tensor_types

    model = _model(QUANT_SPEC, seed=7)
    _artifact(model, folder, "types", "q4_0")
    types = tensor_types(folder / "types.q4_0.gguf")
    assert types["blk.0.shortconv.in_proj.weight"] == "Q4_0"
    assert types["blk.2.attn_q.weight"] == "Q4_0"
    assert types["blk.0.shortconv.conv.weight"] == "F32"  # llama-quantize never quantizes conv kernels
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert types["token_embd.weight"] == "Q6_K"  # the tied embedding/head keeps q6_K (width 256)


@pytest.mark.parametrize("name", ["qwen3_head_dim_24", "llama"])
def test_peer_architectures_quantize_and_run(name, folder):
    """q4_0 of the qwen3 and llama files: matmul weights 4-bit, norms and rope_freqs f32, logits near f32."""
    from lfm2_nas.runtimes.gguf_export import tensor_types

    model = _model(LAYOUTS[name], seed=4)
    prompt, steps = _prompt(model.spec), _prompt(model.spec, 4, seed=5)
    runs = []
    for quant in ("f32", "q4_0"):
        session = RUNTIME.load(_artifact(model, folder, f"peer-{name}", quant), threads=1)
        try:
            runs.append(np.stack(_run(session, prompt, steps)))
        finally:
            session.close()
    types = tensor_types(folder / f"peer-{name}.q4_0.gguf")
    assert types["blk.0.attn_q.weight"] == types["blk.0.ffn_down.weight"] == "Q4_0"
    assert types["blk.0.attn_norm.weight"] == types.get("rope_freqs.weight", "F32") == "F32"
    ref, got = runs
    cosine = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cosine.min() >= 0.75 and not np.array_equal(ref, got), f"q4_0 cosine {cosine.min():.5f}"


# ---- the public export path (runs in a child process) ---------------------------------------------

def test_export_q4_0_through_a_child_process(tmp_path):
    spec = LAYOUTS["mixed"]
    path = tmp_path / "out" / "model.gguf"
    artifact = RUNTIME.export(spec, "q4_0", MAX_LEN, path, seed=3)
    assert artifact.path == path and path.is_file() and artifact.size_bytes == path.stat().st_size
    assert [p.name for p in path.parent.iterdir()] == ["model.gguf"]  # no temporary file left
    assert artifact.quant == "q4_0" and artifact.backend == "llamacpp" and artifact.max_len == MAX_LEN
    assert artifact.export_s > 0 and artifact.export_peak_rss_bytes > 50 * 2**20  # torch alone is more
    details = artifact.details
    assert details["arch"] == "lfm2" and details["kv_cache_type"] == "f16"
    assert details["token_embd_type"] == "Q8_0"  # width 64 is no multiple of q6_K's 256: llama.cpp picks q8_0
    assert details["tensor_type_counts"]["Q4_0"] > 0
    assert "0.3.36" in artifact.runtime_version
    session = RUNTIME.load(Artifact.from_dict(artifact.to_dict()), threads=1)
    try:
        logits = session.prefill(_prompt(spec))
        assert logits.shape == (spec.vocab_size,) and np.isfinite(logits).all()
    finally:
        session.close()


def child_session_run(artifact: dict, tokens: list[int]) -> dict:
    """Runs in a measuring child (torch imported and its threads started first, as the profiler does)."""
    session = RUNTIME.load(Artifact.from_dict(artifact), threads=2)
    try:
        session.prefill(tokens)
        logits = session.step(tokens[0])
        return {"argmax": int(logits.argmax()), "perf": session.perf(), "memory": session.memory()}
    finally:
        session.close()


def test_a_session_in_a_measuring_child(folder):
    from lfm2_nas.profiler.runner import run_in_child

    model = _model(LAYOUTS["mixed"], seed=13)
    artifact = _artifact(model, folder, "child")
    tokens = _prompt(model.spec)
    outcome = run_in_child(f"{__name__}:child_session_run", {"artifact": artifact.to_dict(), "tokens": tokens}, 2)
    assert outcome.ok, outcome.reason
    expected = _torch_logits(model, tokens, tokens[:1])[1]
    assert outcome.value["argmax"] == int(expected.argmax())
    assert outcome.value["perf"]["eval_tokens"] == 1 and outcome.value["perf"]["prompt_tokens"] == PROMPT


def test_export_from_a_checkpoint_matches_torch(tmp_path):
    model = _model(LAYOUTS["untied_head"], seed=4)
    save_pretrained(model, tmp_path / "ckpt")
    artifact = RUNTIME.export(model.spec, "f32", MAX_LEN, tmp_path / "m.gguf", checkpoint=tmp_path / "ckpt")
    assert artifact.details["output_type"] == "F32" and artifact.details["kv_cache_type"] == "f32"
    session = RUNTIME.load(artifact, threads=1)
    try:
        _check_parity(model, session)
    finally:
        session.close()


def test_failed_export_leaves_nothing(tmp_path):
    model = _model(LAYOUTS["mixed"])
    save_pretrained(model, tmp_path / "ckpt")
    other = LAYOUTS["kernel_5"]
    with pytest.raises(ExportError, match="not the requested spec"):
        RUNTIME.export(other, "f32", MAX_LEN, tmp_path / "x.gguf", checkpoint=tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.parametrize(
    "spec, quant, match",
    [
        (LAYOUTS["mixed"], "q5_k", "no quantization 'q5_k'"),
        (_spec("CCCC"), "f32", "without attention layers"),
        (LAYOUTS["mixed"].replace(conv_bias=True), "f32", "conv_bias"),
        (_spec("CCA", hidden_size=48, num_heads=4), "q4_0", "hidden_size 48"),
        (LAYOUTS["odd_ffn"], "q8_0", "FFN width 97"),
        (_spec("AA", attn_head_dim=20), "q4_0", r"attention width \(heads x head_dim\) 80"),
        (_spec("CCA", qk_norm=False), "f32", "needs qk_norm"),
        (_spec("CCA", attn_head_dim=24), "f32", "needs heads x head_dim = hidden_size"),
        (_spec("AA", rope_scaling=TINY_LLAMA3), "f32", "rope_scaling needs the llama architecture"),
    ],
)
def test_unrepresentable_exports_raise(spec, quant, match, tmp_path):
    with pytest.raises(ExportError, match=match):
        RUNTIME.export(spec, quant, MAX_LEN, tmp_path / "x.gguf")
    assert list(tmp_path.iterdir()) == []


def test_max_len_beyond_the_layout_raises(tmp_path):
    with pytest.raises(ExportError, match="max_len"):
        RUNTIME.export(LAYOUTS["mixed"].replace(max_position_embeddings=32), "f32", 64, tmp_path / "x.gguf")


# ---- sessions -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed(folder):
    model = _model(LAYOUTS["mixed"], seed=5)
    session = RUNTIME.load(_artifact(model, folder, "session"), threads=1)
    yield model, session
    session.close()


def test_rewind_to_the_prompt_repeats_the_same_step(mixed):
    model, session = mixed
    prompt, steps = _prompt(model.spec), _prompt(model.spec, 4, seed=3)
    expected = _torch_logits(model, prompt, steps)
    session.prefill(prompt)
    first = [session.step(t) for t in steps]
    for _ in range(3):
        session.rewind(PROMPT)
        assert session.position == PROMPT
        assert llamacpp_pos_max(session) == PROMPT - 1  # the cache holds positions 0 .. depth-1
        again = session.step(steps[0])
        np.testing.assert_array_equal(again, first[0])
    np.testing.assert_allclose(first[0], expected[1], atol=TOLERANCE, rtol=0)
    # keep going after a rewind: the following steps are the first run's
    for i, token in enumerate(steps[1:], start=1):
        np.testing.assert_array_equal(session.step(token), first[i])


def test_rewind_in_a_quantized_session(folder):
    """f16 KV cache and flash attention (the non-f32 settings) rewind the same way."""
    model = _model(LAYOUTS["mixed"], seed=14)
    session = RUNTIME.load(_artifact(model, folder, "rewind-q8", "q8_0"), threads=1)
    try:
        prompt = _prompt(model.spec)
        session.prefill(prompt)
        first = session.step(7)
        session.step(8)
        session.rewind(PROMPT)
        np.testing.assert_array_equal(session.step(7), first)
    finally:
        session.close()


def test_rewind_to_other_depths_runs_there(mixed):
    model, session = mixed
    prompt, steps = _prompt(model.spec), _prompt(model.spec, 6, seed=4)
    expected = _torch_logits(model, prompt, steps)  # [after prompt, after step 0, ...]
    session.prefill(prompt)
    for token in steps:
        session.step(token)
    session.rewind(PROMPT + 3)  # a depth inside the decoded part: rebuilt by re-running the tokens
    assert session.position == PROMPT + 3 and llamacpp_pos_max(session) == PROMPT + 2
    np.testing.assert_allclose(session.step(steps[3]), expected[4], atol=TOLERANCE, rtol=0)
    session.rewind(5)  # inside the prompt
    with torch.no_grad():
        cache = model.new_cache(1, MAX_LEN)
        model(torch.tensor([prompt[:5]]), cache)
        want = model(torch.tensor([[7]]), cache, last_only=True)[0, -1].numpy()
    np.testing.assert_allclose(session.step(7), want, atol=TOLERANCE, rtol=0)
    session.rewind(0)
    assert session.position == 0
    with pytest.raises(ValueError, match="cannot rewind to depth 3"):
        session.rewind(3)


def test_a_prompt_longer_than_a_micro_batch(folder):
    """1030 tokens run as micro-batches of 512 + 512 + 6 inside one llama_decode; the conv state and the
    KV cache carry across them."""
    model = _model(LAYOUTS["kernel_5"], seed=11)
    max_len = 1100
    session = RUNTIME.load(_artifact(model, folder, "long", max_len=max_len), threads=2)
    try:
        prompt = _prompt(model.spec, 1030, seed=12)
        with torch.no_grad():
            cache = model.new_cache(1, max_len)
            want = model(torch.tensor([prompt]), cache, last_only=True)[0, -1].numpy()
            want_step = model(torch.tensor([[5]]), cache, last_only=True)[0, -1].numpy()
        np.testing.assert_allclose(session.prefill(prompt), want, atol=TOLERANCE, rtol=0)
        session.step(9)
        session.rewind(1030)
        np.testing.assert_allclose(session.step(5), want_step, atol=TOLERANCE, rtol=0)
    finally:
        session.close()


def test_rewind_without_conv_layers(folder):
    model = _model(LAYOUTS["all_attention"], seed=6)
    session = RUNTIME.load(_artifact(model, folder, "rewind-attn"), threads=1)
    try:
        assert not session.recurrent
        prompt, steps = _prompt(model.spec), _prompt(model.spec, 5, seed=5)
        expected = _torch_logits(model, prompt, steps)
        session.prefill(prompt)
        for token in steps:
            session.step(token)
        session.rewind(PROMPT + 2)
        np.testing.assert_allclose(session.step(steps[2]), expected[3], atol=TOLERANCE, rtol=0)
    finally:
        session.close()


def llamacpp_pos_max(session) -> int:
    return session._lib.api.llama_memory_seq_pos_max(session._mem, 0)


def test_prefill_twice_gives_identical_logits(mixed):
    model, session = mixed
    prompt, steps = _prompt(model.spec, 20, seed=8), _prompt(model.spec, 3, seed=9)
    first = _run(session, prompt, steps)
    session.prefill(_prompt(model.spec, 30, seed=10))  # something else in between
    second = _run(session, prompt, steps)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_a_full_cache_and_bad_tokens_raise(mixed):
    model, session = mixed
    session.prefill(_prompt(model.spec, MAX_LEN))
    with pytest.raises(ValueError, match="cache is full"):
        session.step(1)
    with pytest.raises(ValueError, match="prefill needs 1..64 tokens"):
        session.prefill(_prompt(model.spec, MAX_LEN + 1))
    with pytest.raises(ValueError, match="token ids must be in 0..300"):
        session.prefill([0, 301])
    session.rewind(3)
    with pytest.raises(ValueError, match="token id -1"):
        session.step(-1)


def test_memory_reports_llama_cpp_buffers(mixed):
    model, session = mixed
    spec = model.spec
    memory = session.memory()
    assert memory["weights_bytes"] == 4 * sum(p.numel() for p in model.parameters())
    n_ctx = 256  # llama.cpp rounds n_ctx up to a multiple of 256
    kv = 2 * n_ctx * spec.num_attention_layers * spec.num_kv_heads * spec.head_dim * 4  # f32 K and V
    conv = spec.num_conv_layers * spec.hidden_size * (spec.conv_kernel - 1) * 4
    assert abs(memory["kv_bytes"] - kv) <= 0.01 * 2**20
    assert abs(memory["recurrent_bytes"] - conv) <= 0.01 * 2**20
    assert memory["cache_bytes"] == memory["kv_bytes"] + memory["recurrent_bytes"]
    assert memory["compute_bytes"] > 0


def test_weights_live_in_process_memory_not_in_a_mapped_file(folder):
    artifact = _artifact(_model(LAYOUTS["mixed"]), folder, "nommap")
    session = RUNTIME.load(artifact, threads=1)
    try:
        assert str(artifact.path) not in Path("/proc/self/maps").read_text()
    finally:
        session.close()
    with pytest.raises(RuntimeError, match=r"no field\(s\) \['use_mmap'\]"):
        llamacpp._set(llamacpp._library().api.llama_model_default_params(), use_mmap=False)


def test_perf_counts_prompt_and_decode_tokens(mixed):
    model, session = mixed
    session.perf(reset=True)
    session.prefill(_prompt(model.spec, 10))
    for token in (1, 2, 3):
        session.step(token)
    perf = session.perf(reset=True)
    assert perf["prompt_tokens"] == 10 and perf["eval_tokens"] == 3
    assert perf["eval_ms"] > 0 and perf["eval_ms_per_token"] == pytest.approx(perf["eval_ms"] / 3)
    assert session.perf()["eval_tokens"] == 0


def test_truncated_file_fails_to_load(folder, tmp_path):
    source = _artifact(_model(LAYOUTS["mixed"]), folder, "whole")
    data = source.path.read_bytes()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match="llama.cpp cannot load"):
        RUNTIME.load(Artifact(broken, "llamacpp", "f32", "", MAX_LEN, broken.stat().st_size, 0.0), threads=1)
    with pytest.raises(FileNotFoundError):
        RUNTIME.load(Artifact(tmp_path / "none.gguf", "llamacpp", "f32", "", MAX_LEN, 0, 0.0), threads=1)


# ---- the build check ------------------------------------------------------------------------------

AVX512_BUILD = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 | AVX512_VNNI = 1 | "
    "OPENMP = 1 | REPACK = 1 | "
)
ZEN1_FLAGS = "processor\t: 0\nflags\t\t: fpu sse sse2 pni ssse3 fma avx avx2 f16c bmi2\n"


def test_a_build_for_features_this_cpu_lacks_is_refused():
    with pytest.raises(RuntimeUnavailable, match=r"AVX512, AVX512_VNNI.*pip install --force-reinstall"):
        llamacpp.check_cpu_support(AVX512_BUILD, ZEN1_FLAGS)
    llamacpp.check_cpu_support(AVX512_BUILD.replace("AVX512", "XX"), ZEN1_FLAGS)
    llamacpp.check_cpu_support(AVX512_BUILD, "")  # no flags line (not Linux x86): nothing to compare


def test_this_build_runs_here():
    version = RUNTIME.version()
    assert version.startswith("llama-cpp-python 0.3.36")
    llamacpp.check_cpu_support(llamacpp._library().system_info, Path("/proc/cpuinfo").read_text())


def test_buffer_sizes_parse_llama_cpp_log_lines():
    lines = [
        "load_tensors:          CPU model buffer size =    12.50 MiB",
        "load_tensors:   CPU_REPACK model buffer size =     1.00 MiB",
        "llama_kv_cache:        CPU KV buffer size =     0.75 MiB",
        "llama_memory_recurrent:        CPU RS buffer size =     0.01 MiB",
        "llama_context:        CPU compute buffer size =     3.00 MiB",
    ]
    sizes = llamacpp.buffer_sizes(lines)
    assert sizes == {"model": 13.5 * 2**20, "KV": 0.75 * 2**20, "RS": round(0.01 * 2**20), "compute": 3 * 2**20}


def test_a_build_that_crashes_on_load_is_refused(monkeypatch):
    import subprocess

    def killed(command, **kwargs):
        return subprocess.CompletedProcess(command, -4, b"", b"")  # -SIGILL

    monkeypatch.setattr(llamacpp.subprocess, "run", killed)
    with pytest.raises(RuntimeUnavailable, match=r"SIGILL.*rebuild it here: CMAKE_ARGS="):
        llamacpp._Library()


def test_a_missing_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    hint = r"needs 'gguf'; install: CMAKE_ARGS=.*pip install -e '\.\[llamacpp\]'"
    with pytest.raises(RuntimeUnavailable, match=hint):
        llamacpp._Library()


def test_importing_the_runtime_loads_neither_torch_nor_llama_cpp():
    import subprocess
    import sys

    code = "import sys, lfm2_nas.runtimes.llamacpp; print(sorted({'torch', 'llama_cpp'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "[]"


def _state(session, flags: int = 0) -> np.ndarray:
    api = session._lib.api
    size = api.llama_state_seq_get_size_ext(session._ctx, 0, flags)
    buf = (llamacpp.ctypes.c_uint8 * size)()
    assert api.llama_state_seq_get_data_ext(session._ctx, buf, size, 0, flags) == size
    return np.frombuffer(buf, dtype=np.uint8).copy()


@pytest.mark.parametrize("quant", ["f32", "q8_0"])  # V stored transposed (flash attention off) / not
@pytest.mark.parametrize("name", ["mixed", "all_attention"])
def test_repeat_kv_state_reads_llama_cpp_state_format(quant, name, folder):
    """Grown to its own length the state comes back byte for byte; grown further it has the size the
    format implies and llama.cpp takes it; a state cut short or with a wrong tail is refused."""
    model = _model(LAYOUTS[name], seed=21)
    spec = model.spec
    session = RUNTIME.load(_artifact(model, folder, f"state-{name}", quant), threads=1)
    try:
        session.prefill(_prompt(spec, 10))
        state = _state(session)
        tail = len(_state(session, llamacpp._STATE_PARTIAL_ONLY)) - 8 if session.recurrent else 0  # less its header
        assert session.recurrent == (spec.num_conv_layers > 0)
        np.testing.assert_array_equal(llamacpp.repeat_kv_state(state, 10, tail), state)
        grown = llamacpp.repeat_kv_state(state, 40, tail)
        row = 2 * spec.num_kv_heads * spec.head_dim * (4 if quant == "f32" else 2)  # K + V bytes per cell and layer
        assert len(grown) - len(state) == 30 * (12 + spec.num_attention_layers * row)
        api = session._lib.api
        buf = (llamacpp.ctypes.c_uint8 * len(grown)).from_buffer(grown)
        assert api.llama_state_seq_set_data_ext(session._ctx, buf, len(grown), 0, 0) == len(grown)
        assert llamacpp_pos_max(session) == 39
        with pytest.raises(ValueError, match="not a llama.cpp state"):
            llamacpp.repeat_kv_state(state[4:], 40, tail)
        with pytest.raises(ValueError, match="ends inside its KV part"):
            llamacpp.repeat_kv_state(state[: len(state) - tail - 1], 40, 0)
        with pytest.raises(ValueError, match="before the state's end"):
            llamacpp.repeat_kv_state(state, 40, tail + 4)
    finally:
        session.close()


@pytest.mark.parametrize("name", ["mixed", "kv_heads_1", "all_attention"])
def test_synthetic_fill_is_the_repeated_rows_of_a_real_prefill(name, folder, monkeypatch):
    """After ``fill_synthetic(depth)`` a step runs at ``depth`` over K/V rows that repeat those of a real
    prefill of the first SYNTHETIC_BASE tokens, with that prefill's conv state: the torch model over a
    cache built the same way gives the same logits, and rewinding to the depth repeats the step."""
    monkeypatch.setattr(llamacpp, "SYNTHETIC_BASE", 8)
    model = _model(LAYOUTS[name], seed=22)
    spec = model.spec
    depth, tokens = 45, _prompt(spec, 45, seed=23)
    session = RUNTIME.load(_artifact(model, folder, f"fill-{name}"), threads=1)
    try:
        session.fill_synthetic(depth, tokens)
        assert session.position == depth and llamacpp_pos_max(session) == depth - 1
        got = session.step(17)
        session.step(18)
        session.rewind(depth)
        np.testing.assert_array_equal(session.step(17), got)
    finally:
        session.close()
    with torch.no_grad():
        cache = model.new_cache(1, MAX_LEN)
        model(torch.tensor([tokens[:8]]), cache)
        rows = torch.arange(depth) % 8
        cache.k[:, :, :, :depth] = cache.k[:, :, :, rows].clone()
        cache.v[:, :, :, :depth] = cache.v[:, :, :, rows].clone()
        cache.seek(depth)
        want = model(torch.tensor([[17]]), cache, last_only=True)[0, -1].numpy()
        cache.reset()
        real = model(torch.tensor([tokens + [17]]), cache, last_only=True)[0, -1].numpy()
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)
    if spec.num_attention_layers:  # negative control: the step did not see a real prefill's cache
        assert np.abs(got - real).max() > 100 * TOLERANCE
