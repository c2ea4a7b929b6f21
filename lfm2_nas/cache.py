"""Static hybrid cache: K/V for attention layers, the last ``K-1`` conv inputs for conv layers.

Allocated once per (spec, batch, max length, dtype, device) and written in place by position, so
decoding never reallocates or concatenates. Its size equals :func:`lfm2_nas.cost.cache_bytes`.

Two ways of tracking the position:

* eager (default): ``seq_len`` is a Python int; attention reads only the filled prefix of K/V.
* static (``static=True``): the position lives in a device tensor and attention reads the whole
  ``max_len`` buffer under a mask, so one decode step has fixed shapes and addresses and can be
  captured in a CUDA graph. The host-side ``seq_len`` is kept in step by the caller's ``advance``.
"""

from __future__ import annotations

import torch

from lfm2_nas.spec import ModelSpec


class HybridCache:
    """Preallocated per-sequence state of an LFM2 layout.

    ``k``/``v``: ``(n_attention_layers, batch, kv_heads, max_len, head_dim)``;
    ``conv``: ``(n_conv_layers, batch, hidden, K-1)``. Layer ``i`` uses slot ``slot_of[i]``.
    """

    def __init__(
        self,
        spec: ModelSpec,
        batch: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        static: bool = False,
    ) -> None:
        if batch < 1 or max_len < 1:
            raise ValueError(f"cache needs batch >= 1 and max_len >= 1, got batch={batch}, max_len={max_len}")
        if max_len > spec.max_position_embeddings:
            raise ValueError(
                f"max_len {max_len} exceeds the layout's max_position_embeddings {spec.max_position_embeddings}"
            )
        self.spec = spec
        self.batch = batch
        self.max_len = max_len
        self.static = static
        kv_shape = (spec.num_attention_layers, batch, spec.num_kv_heads, max_len, spec.head_dim)
        conv_shape = (spec.num_conv_layers, batch, spec.hidden_size, spec.conv_kernel - 1)
        self.k = torch.zeros(kv_shape, dtype=dtype, device=device)
        self.v = torch.zeros(kv_shape, dtype=dtype, device=device)
        self.conv = torch.zeros(conv_shape, dtype=dtype, device=device)
        self.slot_of: dict[int, int] = {}
        for indices in (spec.attention_indices, spec.conv_indices):
            self.slot_of.update({layer: slot for slot, layer in enumerate(indices)})
        self.seq_len = 0
        # Device-side position for static (graph-captured) decoding.
        self.position = torch.zeros((), dtype=torch.long, device=self.k.device)
        self._key_index = torch.arange(max_len, device=self.k.device)
        self._static_step: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def nbytes(self) -> int:
        """Bytes allocated for K, V and conv state together."""
        return self.k.nbytes + self.v.nbytes + self.conv.nbytes

    @property
    def dtype(self) -> torch.dtype:
        return self.k.dtype

    @property
    def device(self) -> torch.device:
        return self.k.device

    def reset(self) -> None:
        """Forget every sequence without reallocating (stale K/V are never read past ``seq_len``)."""
        self.seq_len = 0
        self.position.zero_()
        self.conv.zero_()

    def seek(self, depth: int) -> None:
        """Treat positions ``0 .. depth-1`` as filled: the next token goes to position ``depth``.

        K/V already written there are kept (the profiler rewinds to a depth before every timed step,
        and fills a cache synthetically by writing K/V and then seeking). Conv state is not touched.
        """
        if not 0 <= depth <= self.max_len:
            raise ValueError(f"cannot seek to position {depth}: the cache holds 0..{self.max_len}")
        self.seq_len = depth
        self.position.fill_(depth)

    def snapshot(self) -> tuple[int, torch.Tensor, torch.Tensor]:
        """A copy of the position and the conv state, for :meth:`restore`.

        K/V are not copied: entries past the position are never read before being rewritten.
        """
        return self.seq_len, self.position.clone(), self.conv.clone()

    def restore(self, snapshot: tuple[int, torch.Tensor, torch.Tensor]) -> None:
        """Go back to a :meth:`snapshot` (in place; no reallocation)."""
        self.seq_len = snapshot[0]
        self.position.copy_(snapshot[1])
        self.conv.copy_(snapshot[2])

    def positions(self, tokens: int) -> torch.Tensor:
        """Absolute positions ``(tokens,)`` of the next ``tokens`` tokens; raises if they do not fit."""
        self.check_room(tokens)
        if self.static:
            index = self.position + torch.arange(tokens, device=self.device)
            # Computed once per forward, used by every attention layer's update_kv.
            self._static_step = (index, self._key_index[None, :] <= index[:, None])
            return index
        return torch.arange(self.seq_len, self.seq_len + tokens, device=self.device)

    def advance(self, tokens: int) -> None:
        """Mark ``tokens`` more positions as filled (called once per forward, after all layers)."""
        self.seq_len += tokens
        if self.static:
            self.position.add_(tokens)

    def update_kv(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """Write ``k, v`` ``(B, kv_heads, T, d)`` at the next positions of ``layer``.

        Returns ``(keys, values, mask, causal)`` to attend over: either a prefix view with
        ``causal`` (fresh prefill) or no mask (one token), or an explicit boolean mask
        ``(T, S)`` (a chunk after earlier tokens, or any step of a static cache). The model calls
        :meth:`positions` once per forward before the layers; this uses what it computed.
        """
        slot = self.slot_of[layer]
        tokens = k.shape[2]
        if self.static:
            index, mask = self._static_step  # set by positions(), which the model calls first
            self.k[slot].index_copy_(2, index, k)
            self.v[slot].index_copy_(2, index, v)
            return self.k[slot], self.v[slot], mask, False
        start = self.seq_len
        end = start + tokens
        self.k[slot, :, :, start:end] = k
        self.v[slot, :, :, start:end] = v
        keys, values = self.k[slot, :, :, :end], self.v[slot, :, :, :end]
        if start == 0 or tokens == 1:
            return keys, values, None, tokens > 1
        mask = torch.arange(end, device=self.device)[None, :] <= torch.arange(start, end, device=self.device)[:, None]
        return keys, values, mask, False

    def conv_state(self, layer: int) -> torch.Tensor:
        """The ``(B, hidden, K-1)`` view holding ``layer``'s last ``K-1`` inputs ``B*x``."""
        return self.conv[self.slot_of[layer]]

    def check_room(self, tokens: int) -> None:
        """Raise ``ValueError`` unless ``tokens`` more tokens fit."""
        if self.seq_len + tokens > self.max_len:
            raise ValueError(
                f"cache is full: {self.seq_len} + {tokens} tokens exceed max_len {self.max_len}; "
                "allocate a longer cache"
            )
