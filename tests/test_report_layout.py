import pytest

from lfm2_nas import cost
from lfm2_nas.registry import get_spec
from lfm2_nas.report.layout import layout_caption, layout_strip


@pytest.mark.parametrize("name", ["lfm2-tiny", "lfm2-350m", "lfm2-2.6b", "lfm2-350m-dense"])
def test_strip_rows_add_up_to_the_cost_model(name):
    spec = get_spec(name)
    strip = layout_strip(spec)
    assert "".join("A" if op == "attention" else "C" for op in strip["op"]) == spec.pattern
    norms = 2 * spec.hidden_size * spec.num_layers + spec.hidden_size
    assert strip["op_params"].sum() + strip["ffn_params"].sum() + norms == cost.non_embedding_params(spec)
    assert strip["kv_bytes_per_token"].sum() == cost.kv_bytes_per_token(spec)
    assert strip["state_bytes"].sum() == cost.conv_state_bytes(spec)
    assert set(strip["ffn_dim"]) == {spec.ffn_dim}


def test_strip_dtype_and_operator_fields():
    strip = layout_strip(get_spec("lfm2-350m"), dtype="bfloat16")
    attn, conv = strip.iloc[2], strip.iloc[0]
    assert (attn["op"], attn["kv_heads"], attn["head_dim"], attn["kv_bytes_per_token"]) == ("attention", 8, 64, 2048)
    assert (conv["op"], conv["conv_kernel"], conv["state_bytes"]) == ("conv", 3, 1024 * 2 * 2)


def test_caption_names_widths_and_counts():
    text = layout_caption("lfm2-350m", get_spec("lfm2-350m"))
    assert "hidden 1024" in text and "FFN 4608" in text and "10 conv + 6 attention" in text
