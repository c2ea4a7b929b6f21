"""bfloat16 on CPU: the model computes prefill and decode in bf16 through the kernels the measured table
names for bf16 keys, and agrees with fp32 within bf16 tolerance. (Whether bf16 may be MEASURED on a CPU
is the hardware profile's call: refused where not native, see test_profiler_profile.)"""

import pytest
import torch

from lfm2_nas import kernels
from lfm2_nas.generation import decode_step, prefill
from lfm2_nas.model import LFM2Model, build_model
from lfm2_nas.registry import get_spec

#: bf16 keeps 8 bits of mantissa (relative rounding 2^-8 per operation): logits within a few percent
#: of the largest logit after a few layers of accumulation.
RELATIVE = 0.05


def _pair(pattern: str):
    """An fp32 model and a bf16 model holding the SAME (bf16-representable) weights."""
    spec = get_spec("lfm2-tiny", pattern=pattern)
    fp32 = build_model(spec, seed=2)
    with torch.no_grad():
        for p in fp32.parameters():
            p.copy_(p.bfloat16().float())
    bf16 = LFM2Model(spec, dtype=torch.bfloat16)
    bf16.load_state_dict({k: v.bfloat16() for k, v in fp32.state_dict().items()})
    return fp32, bf16.eval()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def _run(model, prompt, steps=4):
    """Prefill, then greedy decode steps fed with ``tokens`` (the fp32 run's, so both see the same input)."""
    cache = model.new_cache(1, prompt.shape[1] + steps)
    outs = [prefill(model, prompt, cache)]
    for token in range(steps):
        outs.append(decode_step(model, torch.tensor([[token + 7]]), cache))
    return outs


@pytest.fixture(autouse=True)
def default_choice():
    kernels.set_choice(None)
    yield
    kernels.set_choice(None)


@pytest.mark.parametrize("pattern", ["CCAC", "AAAA", "CCCC"])
@pytest.mark.parametrize("kernel", list(kernels.KERNELS))
def test_bf16_prefill_and_decode_match_fp32_within_bf16_tolerance(pattern, kernel):
    fp32, bf16 = _pair(pattern)
    prompt = torch.randint(0, 256, (1, 24), generator=torch.Generator().manual_seed(4))
    probe = lambda: kernels.KERNELS[kernel](torch.randn(1, 1, 64).bfloat16(), torch.randn(64, 64).bfloat16(), None)  # noqa: E731
    if not kernels.runs(probe):
        pytest.skip(f"{kernel} has no bf16 kernel on this CPU")
    with torch.inference_mode():
        reference = _run(fp32, prompt)
        kernels.set_choice(dict.fromkeys(kernels.keys_for(["bfloat16"]), kernel))
        ours = _run(bf16, prompt)
    assert all(o.dtype == torch.bfloat16 for o in ours)
    assert bf16.new_cache(1, 4).dtype == torch.bfloat16  # the cache is bf16 too: half the bytes to read
    for got, want in zip(ours, reference):
        assert _relative(got, want) < RELATIVE
    assert {k: v for k, v in kernels.used().items() if "bfloat16" in k} and set(
        v for k, v in kernels.used().items() if "bfloat16" in k) == {kernel}


def test_bf16_weights_are_half_the_bytes():
    fp32, bf16 = _pair("CCAC")
    assert sum(p.nbytes for p in bf16.parameters()) * 2 == sum(p.nbytes for p in fp32.parameters())
