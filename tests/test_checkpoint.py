"""HF-format checkpoints both ways: transformers -> ours, ours -> transformers, both config forms, errors."""

import json

import pytest
import torch
from conftest import max_diff, random_spec, randomize_, reference_of
from safetensors.torch import load_file, save_file
from transformers import Lfm2ForCausalLM

from lfm2_nas.checkpoint import CheckpointError, load_pretrained, save_pretrained
from lfm2_nas.hf_config import hf_config_from_spec, read_config, spec_from_hf_config
from lfm2_nas.model import LFM2Model
from lfm2_nas.registry import get_spec

TOLERANCE = 1e-4  # fp32, different summation orders
PROMPT = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]])


def _model(seed=0, **changes):
    spec = random_spec(seed).replace(vocab_size=64, **changes)
    return randomize_(LFM2Model(spec), seed).eval()


def _logits(model):
    with torch.inference_mode():
        if isinstance(model, Lfm2ForCausalLM):
            return model(PROMPT, use_cache=False).logits  # its cache fails on all-conv layouts
        return model(PROMPT)


# ---- transformers -> ours --------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("shard", [None, "20KB"], ids=["single", "sharded"])
def test_transformers_safetensors_load_into_ours(tmp_path, tied, shard):
    reference = reference_of(_model(3, tie_embeddings=tied))
    reference.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    if shard:
        assert (tmp_path / "model.safetensors.index.json").is_file()
        assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    ours = load_pretrained(tmp_path)
    assert ours.spec.tie_embeddings is tied
    assert max_diff(_logits(ours), _logits(reference)) <= TOLERANCE


def _save_bin(reference, folder, shards: int):
    """The older torch ``.bin`` layout transformers wrote (one file, or shards plus an index)."""
    reference.config.save_pretrained(folder)
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    if shards == 1:
        torch.save(state, folder / "pytorch_model.bin")
        return
    names = sorted(state)
    weight_map = {}
    for i in range(shards):
        shard_name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {n: state[n] for n in names[i::shards]}
        torch.save(part, folder / shard_name)
        weight_map.update(dict.fromkeys(part, shard_name))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.mark.parametrize("shards", [1, 3])
def test_transformers_torch_bin_loads_into_ours(tmp_path, shards):
    reference = reference_of(_model(5, tie_embeddings=False))
    _save_bin(reference, tmp_path, shards)
    assert max_diff(_logits(load_pretrained(tmp_path)), _logits(reference)) <= TOLERANCE


def test_bf16_checkpoint_loads_at_the_requested_dtype(tmp_path):
    reference = reference_of(_model(2)).to(torch.bfloat16)
    reference.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path)
    assert ours.head_weight.dtype == torch.float32
    for name, tensor in reference.state_dict().items():
        if name in ours.state_dict():
            assert torch.equal(ours.state_dict()[name], tensor.float()), name
    assert load_pretrained(tmp_path, dtype=torch.bfloat16).head_weight.dtype == torch.bfloat16


# ---- ours -> transformers --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 6, 9])
def test_ours_load_in_transformers_unchanged(tmp_path, seed):
    ours = _model(seed)
    save_pretrained(ours, tmp_path)
    reference = Lfm2ForCausalLM.from_pretrained(tmp_path).eval()
    assert reference.dtype == torch.float32
    assert max_diff(_logits(reference), _logits(ours)) <= TOLERANCE
    assert json.loads((tmp_path / "config.json").read_text())["layer_types"] == list(ours.spec.layer_types)


def test_round_trip_is_exact_and_leaves_no_temporary_files(tmp_path):
    ours = _model(4, tie_embeddings=False)
    save_pretrained(ours, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    again = load_pretrained(tmp_path)
    assert again.spec == ours.spec
    for name, tensor in ours.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_tied_head_is_not_stored(tmp_path):
    save_pretrained(_model(0, tie_embeddings=True), tmp_path)
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")


# ---- config forms ----------------------------------------------------------------------------

OLDER_CONFIG = {
    "model_type": "lfm2",
    "architectures": ["Lfm2ForCausalLM"],
    "vocab_size": 64,
    "hidden_size": 24,
    "num_hidden_layers": 5,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "full_attn_idxs": [1, 4],
    "block_ff_dim": 96,
    "block_multiple_of": 16,
    "block_auto_adjust_ff_dim": True,
    "block_ffn_dim_multiplier": 1.0,
    "tie_embedding": False,
    "rope_theta": 2500.0,
    "conv_L_cache": 4,
    "conv_bias": True,
    "norm_eps": 1e-6,
    "block_dim": 24,  # ignored extras of the older files
    "conv_dim": 24,
}


def test_older_config_form_reads_like_transformers(tmp_path):
    spec = spec_from_hf_config(OLDER_CONFIG)
    assert spec.pattern == "CACCA"
    assert (spec.ff_dim, spec.ffn_dim) == (96, 64)
    assert spec.tie_embeddings is False and spec.rope_theta == 2500.0
    assert (spec.conv_kernel, spec.conv_bias, spec.norm_eps) == (4, True, 1e-6)
    # Weights written by us, config replaced by the older form: transformers must read it the same way.
    model = randomize_(LFM2Model(spec), 1).eval()
    save_pretrained(model, tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(OLDER_CONFIG))
    ours = load_pretrained(tmp_path)
    reference = Lfm2ForCausalLM.from_pretrained(tmp_path).eval()
    assert max_diff(_logits(ours), _logits(reference)) <= TOLERANCE


def test_newer_config_form_round_trips_every_field():
    for seed in range(24):
        spec = random_spec(seed)
        assert spec_from_hf_config(json.loads(json.dumps(hf_config_from_spec(spec)))) == spec


def test_missing_keys_take_transformers_defaults():
    spec = spec_from_hf_config({"model_type": "lfm2"})
    assert (spec.hidden_size, spec.num_layers, spec.num_heads, spec.num_kv_heads) == (2560, 32, 32, 8)
    assert set(spec.layer_types) == {"full_attention"}  # neither layer_types nor full_attn_idxs
    assert spec.rope_theta == 1e6 and spec.tie_embeddings and spec.ff_dim == 12288


def test_official_size_config_reads_exactly(tmp_path):
    spec = get_spec("lfm2-2.6b")
    (tmp_path / "config.json").write_text(json.dumps(hf_config_from_spec(spec)))
    assert read_config(tmp_path) == spec


# ---- errors name the problem -----------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    model = _model(7, tie_embeddings=False)
    save_pretrained(model, tmp_path)
    return tmp_path


def _edit_weights(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


def test_missing_tensor_is_named(saved):
    _edit_weights(saved, lambda t: t.pop("model.layers.1.self_attn.k_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing 1 tensor\(s\): model\.layers\.1\.self_attn\.k_proj\.weight"):
        load_pretrained(saved)


def test_unexpected_tensor_is_named(saved):
    _edit_weights(saved, lambda t: t.update({"model.layers.9.extra.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected 1 tensor\(s\): model\.layers\.9\.extra\.weight"):
        load_pretrained(saved)


def test_misshaped_tensor_is_named_with_both_shapes(saved):
    def edit(tensors):
        tensors["lm_head.weight"] = tensors["lm_head.weight"][:-1].clone()

    _edit_weights(saved, edit)
    with pytest.raises(CheckpointError, match=r"lm_head\.weight has shape \(63, \d+\), config implies \(64, \d+\)"):
        load_pretrained(saved)


def test_other_model_type_is_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(CheckpointError, match="model_type is 'llama', not 'lfm2'"):
        load_pretrained(saved)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda f: (f / "config.json").unlink(), "no config.json"),
        (lambda f: (f / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda f: (f / "config.json").write_text("[1, 2]"), "does not hold a JSON object"),
        (lambda f: (f / "model.safetensors").unlink(), "no weights in"),
        (lambda f: (f / "model.safetensors").write_bytes(b"garbage"), "cannot read weights file"),
        (lambda f: _set(f, hidden_size=25), "hidden_size 25 is not divisible by num_heads"),
        (lambda f: _set(f, hidden_size="wide"), "no valid LFM2 layout"),
        (lambda f: _set(f, rope_parameters={"rope_type": "yarn", "factor": 2.0}), "rope_type 'yarn'"),
        (lambda f: _set(f, num_hidden_layers=99), "layer_types but num_hidden_layers=99"),
    ],
    ids=["no-config", "bad-json", "not-object", "no-weights", "corrupt-weights", "bad-width", "bad-type",
         "rope-type", "layer-count"],
)
def test_broken_folders_give_one_clear_error(saved, breakage, message):
    breakage(saved)
    with pytest.raises(CheckpointError, match=message) as info:
        load_pretrained(saved)
    assert "\n" not in str(info.value)


def _set(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def test_shard_index_naming_an_absent_file_is_an_error(saved):
    (saved / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00009.safetensors"}}))
    with pytest.raises(CheckpointError, match="model-00009.safetensors"):
        load_pretrained(saved)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(tmp_path / "nowhere")


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)  # the CLI turns it into one 'error:' line


@pytest.mark.parametrize("changes, field", [(dict(attn_head_dim=32), "attn_head_dim"), (dict(qk_norm=False), "qk_norm"),
                                            (dict(rope_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                                                    original_max_position_embeddings=64)), "rope_scaling")])
def test_peer_attention_is_refused_before_anything_is_written(changes, field, tmp_path):
    """An LFM2 config.json cannot express a peer model's attention: one clear error, no files."""
    from lfm2_nas.checkpoint import build_checkpoint

    spec = get_spec("lfm2-tiny", **changes)
    with pytest.raises(CheckpointError, match=f"cannot express {field}"):
        build_checkpoint(spec, tmp_path / "out")
    with pytest.raises(CheckpointError, match=field):
        save_pretrained(LFM2Model(spec), tmp_path / "out")
    assert not (tmp_path / "out").exists()
