"""Replay a network's forward pass as a CUDA graph, one graph per input shape.

An eager forward of the restoration network launches many small kernels; where the GPU finishes them
faster than Python can launch them (small images, tiles, batches of many files) the host is the limit.
A CUDA graph records the launches once and replays them with one call, so the host cost per forward
no longer grows with the number of kernels.

Graphs fit inference because its shapes repeat. ``spatial_restore.tiling.tiled_forward`` balances its
tiles: every tile of an image has the same size, edge tiles included (the last tile of an axis starts
at ``size - length`` instead of being cut short), so a 3840x2160 photo at tile 1024 is 12 tiles of
1008x768 and one graph; a folder of same-sized photos reuses it, and a self-ensemble adds at most the
transposed shape. Images run whole (no larger than the tile) give one graph per distinct size.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]
Key = tuple[tuple[int, ...], torch.dtype, torch.device]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    static_output: torch.Tensor


class GraphedForward:
    """``forward(x) -> y`` on CUDA tensors, captured as a CUDA graph per (shape, dtype, device) of ``x``.

    The first call for a new key copies ``x`` into a static (contiguous) input buffer, runs ``forward``
    ``warmup`` times on a side stream (lazy initialisation, Triton compilation and cuDNN/cuBLAS set-up
    must happen before capture, not inside it), captures one call into a ``torch.cuda.CUDAGraph`` and
    replays it. Later calls copy ``x`` into the buffer, replay, and return a clone of the static output
    (the graph overwrites that buffer on its next replay). Everything runs under inference mode.

    Up to ``max_graphs`` graphs are kept, least recently used evicted first. All captures share one
    memory pool per device (``torch.cuda.graph_pool_handle()``), so the graphs' intermediate tensors
    reuse the same memory and the pool grows to about one eager forward of the largest shape plus
    the static buffers, not one forward per graph. Sharing is safe here because replays run one at a
    time on the caller's stream and each output is cloned before another graph can replay; the static
    input buffers live outside the pool.

    What ``forward`` must satisfy (it does for SpatialMambaUNet under autocast): the same kernels for
    every input of one shape (no host synchronisation, no data-dependent shapes or branches, no
    CPU-to-GPU copies inside it), a single tensor as output, and parameters updated in place if at all
    (a graph reads the addresses it recorded: moving or replacing the weights needs ``clear()``).
    Put an autocast region inside ``forward``, so the casts are captured with it. Not thread-safe.
    """

    def __init__(self, forward: Forward, max_graphs: int = 4, warmup: int = 2) -> None:
        if max_graphs < 1 or warmup < 1:
            raise ValueError(f"need max_graphs >= 1 and warmup >= 1, got {max_graphs} and {warmup}")
        self.forward = forward
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.captures = 0  # graphs captured so far (evictions make it exceed len(self))
        self._graphs: OrderedDict[Key, _Captured] = OrderedDict()
        self._pools: dict[torch.device, tuple[int, int]] = {}
        self._streams: dict[torch.device, torch.cuda.Stream] = {}

    def __len__(self) -> int:
        return len(self._graphs)

    def clear(self) -> None:
        """Drop every graph (their memory returns to the caching allocator once none is left)."""
        self._graphs.clear()

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda":
            raise ValueError(f"CUDA graphs replay GPU work: the input must be a CUDA tensor, got one on {x.device}")
        key: Key = (tuple(x.shape), x.dtype, x.device)
        captured = self._graphs.get(key)
        if captured is None:
            captured = self._capture(x, key)
        else:
            self._graphs.move_to_end(key)
            captured.static_input.copy_(x)
        captured.graph.replay()
        return captured.static_output.clone()

    def _capture(self, x: torch.Tensor, key: Key) -> _Captured:
        while len(self._graphs) >= self.max_graphs:
            self._graphs.popitem(last=False)  # its static output's memory goes back to the shared pool
        device = x.device
        with torch.cuda.device(device):
            if device not in self._streams:
                self._streams[device] = torch.cuda.Stream(device)
                self._pools[device] = torch.cuda.graph_pool_handle()
            stream, pool = self._streams[device], self._pools[device]
            static_input = torch.empty(x.shape, dtype=x.dtype, device=device)
            static_input.copy_(x)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):  # warm-up off the capturing stream, as torch's CUDA graph notes advise
                for _ in range(self.warmup):
                    self.forward(static_input)
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, pool=pool, stream=stream):
                    static_output = self.forward(static_input)
            except torch.cuda.OutOfMemoryError:
                raise
            except RuntimeError as err:
                raise RuntimeError(f"CUDA graph capture of the forward pass failed for input {tuple(x.shape)} "
                                   f"{x.dtype}: it does something a graph cannot record (a host synchronisation, "
                                   f"a CPU-to-GPU copy, a data-dependent shape); run it without CUDA graphs ({err})"
                                   ) from err
        if not isinstance(static_output, torch.Tensor):
            raise TypeError(f"GraphedForward needs a forward that returns one tensor, got {type(static_output)}")
        captured = _Captured(graph, static_input, static_output)
        self._graphs[key] = captured
        self.captures += 1
        return captured
