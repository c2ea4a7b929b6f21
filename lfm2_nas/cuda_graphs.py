"""One decode step captured in a CUDA graph: the GPU path for batch-1 (or small-batch) decoding.

A decode step of a small model is launch-bound on a GPU: some 300-500 tiny kernels whose launch
overhead dwarfs the ~1 ms the weights take to stream. Capturing the step once and replaying it
launches them all at once.

Why ``torch.cuda.CUDAGraph`` by hand rather than ``torch.compile(mode="reduce-overhead")``: the
static cache (``HybridCache(static=True)``) already gives the step fixed shapes and fixed addresses,
which is all a graph needs, so there is nothing left for the compiler to discover. Capturing by
hand costs well under a second (compiling a 16-layer model takes minutes), cannot silently
recompile or fall back to eager when a guard fails, and keeps the input and output buffers
explicit for the profiler. What it gives up is kernel fusion; whether fusion is worth its compile
time is a measurement for the GPU profiler, not an assumption made here.

Usage::

    cache = model.new_cache(batch=1, max_len=4096, static=True)
    logits = prefill(model, prompt, cache)          # eager, any length
    decoder = GraphedDecoder(model, cache)          # captures at the cache's current position
    for _ in range(n):
        token = logits.argmax(-1, keepdim=True)
        logits = decoder.step(token)                # replay; logits (B, V) is a reused buffer

``cache.reset()`` followed by a new ``prefill`` keeps the graph valid: the cache never reallocates.
"""

from __future__ import annotations

import torch

from lfm2_nas.cache import HybridCache
from lfm2_nas.model import LFM2Model


class GraphedDecoder:
    """Replays one captured decode step of ``model`` over the static ``cache``.

    ``capture=False`` runs the very same static-cache step eagerly (no graph), which is what the
    CPU tests check; on a CUDA device leave it on.
    """

    def __init__(self, model: LFM2Model, cache: HybridCache, warmup_steps: int = 2, capture: bool = True) -> None:
        if not cache.static:
            raise ValueError("GraphedDecoder needs a static cache: model.new_cache(batch, max_len, static=True)")
        if capture and cache.device.type != "cuda":
            raise ValueError(
                f"CUDA graph capture needs the model and cache on a CUDA device, not {cache.device}; "
                "capture=False runs the same static step eagerly"
            )
        cache.check_room(warmup_steps + 1)
        self.model = model
        self.cache = cache
        self.graph: torch.cuda.CUDAGraph | None = None
        self.token = torch.zeros(cache.batch, 1, dtype=torch.long, device=cache.device)  # static input
        # Warm-up steps (and the capture itself) advance the cache; undo that afterwards. The K/V
        # they write beyond the current position are masked until real steps overwrite them.
        saved = cache.snapshot()
        with torch.inference_mode():
            if capture:
                side = torch.cuda.Stream(device=cache.device)
                side.wait_stream(torch.cuda.current_stream(cache.device))
                with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
                    for _ in range(warmup_steps):
                        self._run()
                torch.cuda.current_stream(cache.device).wait_stream(side)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.logits = self._run()
            else:
                for _ in range(warmup_steps):
                    self.logits = self._run()
        cache.restore(saved)

    def _run(self) -> torch.Tensor:
        return self.model(self.token, cache=self.cache)[:, -1]

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Feed ``token`` ``(B, 1)`` at the cache's position and return its logits ``(B, V)``.

        The returned tensor is the graph's output buffer: the next step overwrites it (clone it
        to keep it).
        """
        self.cache.check_room(1)
        self.token.copy_(token)
        if self.graph is None:
            with torch.inference_mode():
                self.logits = self._run()
        else:
            self.graph.replay()
            self.cache.seq_len += 1  # the replay advanced the device-side position only
        return self.logits
