"""The linear-kernel choice: made from measurements, stored in the hardware profile, applied in the
measuring child, never another machine's; both kernels give the same numerics."""

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from profiler_support import fake_cpu_profile

from lfm2_nas import kernels
from lfm2_nas.profiler import Settings, profile_layout
from lfm2_nas.profiler import hardware as hardware_module
from lfm2_nas.profiler.hardware import HardwareProfile, applicable_kernel_choice, measure_kernel_choice
from lfm2_nas.profiler.runner import ChildOutcome

ONEDNN = "onednn" in kernels.KERNELS
needs_onednn = pytest.mark.skipif(not ONEDNN, reason="this torch has no oneDNN")


@pytest.fixture(autouse=True)
def default_choice():
    """Every test starts and ends with the default (no table installed)."""
    kernels.set_choice(None)
    yield
    kernels.set_choice(None)


def test_choose_takes_the_fastest_kernel_per_key():
    timings = {
        "decode/float32/large": {"F.linear": 2e-3, "onednn": 1e-3},
        "prefill/float32/large": {"F.linear": 1e-3, "onednn": 2e-3},
        "decode/bfloat16/huge": {"F.linear": 5e-3},  # oneDNN did not run
        "decode/bfloat16/small": {},  # nothing ran: left to the default
        "decode/float32/small": {"F.linear": 1e-3, "onednn": 1e-3},  # a tie goes to the default
        "decode/float32/medium": {"F.linear": 1e-3, "onednn": 0.98e-3},  # within the margin: the default
        "prefill/float32/medium": {"F.linear": 1e-3, "onednn": 0.9e-3},  # beyond it: the faster
    }
    assert kernels.choose(timings) == {
        "decode/float32/large": "onednn", "prefill/float32/large": "F.linear",
        "decode/bfloat16/huge": "F.linear", "decode/float32/small": "F.linear",
        "decode/float32/medium": "F.linear", "prefill/float32/medium": "onednn",
    }
    with pytest.raises(ValueError, match="malformed kernel table key"):
        kernels.choose({"decode/float32": {"F.linear": 1.0}})


@needs_onednn
@pytest.mark.parametrize("faster", ["F.linear", "onednn"])
def test_the_measured_choice_follows_injected_timings(faster):
    """measure_kernel_choice times every candidate (here through a fake timer) and picks the fastest."""
    seen = []

    def fake_timer(name, fn, calls):
        seen.append(name)
        return (1.0 if name == faster else 3.0) * calls

    choice = measure_kernel_choice(["float32"], repeats=2, pool_bytes=1 << 20, timer=fake_timer)
    assert set(seen) == set(kernels.KERNELS)
    assert set(choice["table"]) == set(kernels.keys_for(["float32"]))
    assert set(choice["table"].values()) == {faster}
    timings = choice["seconds_per_call"]["decode/float32/large"]
    assert timings[faster] == pytest.approx(1.0) and min(timings.values()) == timings[faster]
    assert choice["torch_version"] == torch.__version__ and choice["cpu_fingerprint"] == hardware_module.cpu_fingerprint()


def test_a_kernel_that_does_not_run_here_is_never_chosen(monkeypatch):
    def broken(x, w, b):
        raise RuntimeError("could not create a primitive descriptor")

    monkeypatch.setitem(kernels.KERNELS, "broken", broken)
    choice = measure_kernel_choice(["float32"], repeats=1, pool_bytes=1 << 20, timer=lambda n, f, c: 1.0)
    assert all("broken" not in t for t in choice["seconds_per_call"].values())
    assert "broken" not in choice["table"].values()


def test_linear_looks_up_phase_dtype_and_bucket(monkeypatch):
    calls = []
    monkeypatch.setitem(kernels.KERNELS, "spy", lambda x, w, b: calls.append(tuple(w.shape)) or F.linear(x, w, b))
    kernels.set_choice({"decode/float32/medium": "spy"})
    small, medium = torch.randn(64, 64), torch.randn(1024, 1024)
    with torch.inference_mode():
        kernels.linear(torch.randn(1, 1, 1024), medium)  # decode, medium: the spy
        kernels.linear(torch.randn(1, 8, 1024), medium)  # prefill: default
        kernels.linear(torch.randn(1, 1, 64), small)  # decode, small: default
        kernels.linear(torch.randn(1, 1, 1024).double(), medium.double())  # another dtype: default
    assert calls == [(1024, 1024)]
    assert kernels.used() == {"decode/float32/medium": "spy", "prefill/float32/medium": "F.linear",
                              "decode/float32/small": "F.linear", "decode/float64/medium": "F.linear"}
    x = torch.randn(1, 1, 1024, requires_grad=True)
    assert kernels.kernel_name(x, medium) == "F.linear"  # a gradient is needed: always F.linear


def test_an_unknown_kernel_name_is_refused_and_nothing_installed():
    kernels.set_choice({"decode/float32/large": "onednn" if ONEDNN else "F.linear"})
    with pytest.raises(ValueError, match="does not offer"):
        kernels.set_choice({"decode/float32/large": "cublas"})
    with pytest.raises(ValueError, match="malformed"):
        kernels.set_choice({"decode/large": "F.linear"})
    assert kernels.current_choice() == {"decode/float32/large": "onednn" if ONEDNN else "F.linear"}


@needs_onednn
@pytest.mark.parametrize("size", kernels.BUCKETS)
@pytest.mark.parametrize("rows", [1, 128])
def test_both_kernels_give_the_same_numerics(size, rows):
    """At every bucket's representative shape, decode and prefill row counts, with and without bias."""
    generator = torch.Generator().manual_seed(0)
    out, inp = kernels.BUCKET_SHAPES[size]
    w = torch.randn(out, inp, generator=generator) * 0.02
    x, b = torch.randn(1, rows, inp, generator=generator), torch.randn(out, generator=generator)
    with torch.inference_mode():
        for bias in (None, b):
            ref = F.linear(x.double(), w.double(), None if bias is None else bias.double())
            for name, fn in kernels.KERNELS.items():
                got = fn(x, w, bias)
                assert got.shape == ref.shape and got.dtype == torch.float32, name
                assert (got.double() - ref).abs().max().item() <= 1e-5 * max(1.0, inp ** 0.5), name


# ---- stored in the hardware profile, applied on this machine only -----------------------------------------


def test_an_older_profile_without_a_kernel_table_loads_and_gets_one_measured_once(tmp_path, monkeypatch):
    profile = fake_cpu_profile(tmp_path)
    data = profile.to_dict()
    del data["kernel_choice"]  # as saved before kernel tables existed
    path = tmp_path / profile.file_name
    path.write_text(json.dumps(data))
    old = HardwareProfile.load(path)
    assert old.kernel_choice == {} and old.kernel_table == {}
    assert applicable_kernel_choice(old) == ({}, f"default: profile {old.label} has no kernel table")
    assert not hardware_module.has_saved_profile("cpu", tmp_path)  # measuring it needs the CPU: take the lock

    measured = {"table": {"decode/float32/large": "F.linear"}, "seconds_per_call": {}}
    children = []

    def fake_child(target, kwargs, threads, *a, **k):
        children.append((target, kwargs))
        return ChildOutcome(True, measured)

    monkeypatch.setattr(hardware_module, "run_in_child", fake_child)
    loaded = hardware_module.load_or_measure_hardware("cpu", directory=tmp_path)
    assert children == [("lfm2_nas.profiler.hardware:measure_kernel_choice", {"dtypes": ["float32"]})]
    assert loaded.kernel_table == measured["table"] and "added_to_older_profile" in loaded.kernel_choice
    assert HardwareProfile.load(path) == loaded  # saved into the same file
    assert hardware_module.load_or_measure_hardware("cpu", directory=tmp_path) == loaded
    assert len(children) == 1 and hardware_module.has_saved_profile("cpu", tmp_path)


def test_another_machines_table_is_never_applied(tmp_path):
    table = {"decode/float32/large": "F.linear"}
    here = fake_cpu_profile(tmp_path, table)
    assert applicable_kernel_choice(here) == (table, f"measured: profile {here.label}")
    other = replace(here, slug="cpu-intel-xeon-2cpu-amx")
    chosen, source = applicable_kernel_choice(other)
    assert chosen == {} and "another machine" in source
    elsewhere = replace(here, kernel_choice={**here.kernel_choice, "cpu_fingerprint": "GenuineIntel/6/143/8/105 MB"})
    chosen, source = applicable_kernel_choice(elsewhere)
    assert chosen == {} and "another CPU of the same slug" in source
    same = replace(here, kernel_choice={**here.kernel_choice, "cpu_fingerprint": hardware_module.cpu_fingerprint()})
    assert applicable_kernel_choice(same)[0] == table
    chosen, source = applicable_kernel_choice(replace(here, torch_version="0.0.1"))
    assert chosen == {} and "torch 0.0.1" in source
    assert applicable_kernel_choice(None) == ({}, "default: no hardware profile")
    busy = replace(here, kernel_choice={**here.kernel_choice, "other_cpu_cores": 1.5})
    chosen, source = applicable_kernel_choice(busy)
    assert chosen == table and "busy machine: 1.50 other cores" in source  # applied, but the row says so


@needs_onednn
def test_the_measuring_child_applies_the_profiles_choice_and_the_row_records_it(tmp_path):
    """lfm2-tiny's projections are all "small" weights: send decode to oneDNN, leave prefill alone."""
    hardware = fake_cpu_profile(tmp_path, {"decode/float32/small": "onednn", "prefill/float32/small": "F.linear"})
    settings = Settings(prompt_len=8, context_depth=8, threads=1, warmup=1, min_count=2, min_duration_s=0.0)
    result = profile_layout("lfm2-tiny", settings, hardware, store=tmp_path / "rows.jsonl")
    assert result.ok, result.reason
    row = result.to_row()
    assert row["kernel_choice"] == f"measured: profile {hardware.label}"
    used = dict(item.split("=") for item in row["linear_kernels"].split("; "))
    assert used["decode/float32/small"] == "onednn" and used["prefill/float32/small"] == "F.linear"
    # without a table, the default everywhere
    plain = profile_layout("lfm2-tiny", settings, fake_cpu_profile(tmp_path / "plain"), store=tmp_path / "plain.jsonl")
    assert set(dict(item.split("=") for item in plain.to_row()["linear_kernels"].split("; ")).values()) == {"F.linear"}
