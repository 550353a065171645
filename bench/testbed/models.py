"""The suite's workloads as the testbed runs them: warm full models, split heads/tails, wire formats.

Full models come from :func:`bench.world.workloads.build` (random weights, batch 1).
A split model cuts at the partition point the simulator's DVFO system uses
(:func:`bench.sim.system.choose_split`): the model is traced with
``torch.fx`` keeping the cut module whole, the graph is split after it with
``torch.fx.passes.split_module``; ``head(x)`` returns the cut tensor and
``tail(f)`` the output. Only cuts that one tensor crosses are supported (the
partition points are block boundaries, so that holds for the suite's CNNs).

Wire formats (what the link carries, as the simulator counts it):

* image input: uint8 pixels (the fp32 tensor's bytes / 4), the server rescales to [0, 1];
* token input: the int64 token tensor as is;
* a feature-map share: uint8 per-tensor affine (:func:`bench.world.attention.quantize_uint8`)
  of the offloaded channels, with a small JSON header (shape, channels, scale, zero point);
* result: the fp32 output tensor.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Warm:
    """A built model with its example input, ready for batch-1 inference."""

    name: str
    domain: str
    model: Any
    example: Any
    head: Any = None
    tail: Any = None
    cut: str = ""


def _domain(name: str) -> str:
    from bench.world.workloads import load_workloads

    wl = load_workloads().set_index("workload")
    return str(wl.at[name, "domain"])


def split_point(name: str) -> str:
    """The module name at which the simulator's DVFO system splits workload ``name`` ("" = no split)."""
    from bench.sim.system import choose_split
    from bench.world.workloads import load_partitions, load_workloads

    wl = load_workloads().set_index("workload")
    parts = load_partitions()
    p = parts[parts["workload"] == name]
    if p.empty:
        return ""
    s = choose_split(p, float(wl.at[name, "flops"]))
    return "" if int(s["point"]) in (int(p["point"].min()), int(p["point"].max())) else str(s["name"])


def _split(model: Any, cut: str) -> tuple[Any, Any]:
    import torch.fx as fx
    from torch.fx.passes.split_module import split_module

    class CutTracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return qualname == cut or super().is_leaf_module(m, qualname)

    graph = CutTracer().trace(model)
    gm = fx.GraphModule(model, graph)
    part, seen = {}, False
    for node in gm.graph.nodes:
        part[node.name] = 1 if seen else 0
        if node.op == "call_module" and node.target == cut:
            seen = True
    if not seen:
        raise ValueError(f"cut module {cut!r} is not called in the traced graph")
    split = split_module(gm, model, lambda n: part[n.name])
    head, tail = split.submod_0, split.submod_1
    n_in = sum(1 for n in tail.graph.nodes if n.op == "placeholder")
    if n_in != 1:
        raise ValueError(f"{n_in} tensors cross the cut {cut!r}; the testbed splits only where one does")
    return head, tail


def warm(name: str, with_split: bool = False, runs: int = 2) -> Warm:
    """Build workload ``name`` (and its split at the simulator's cut), run it ``runs`` times untimed."""
    import torch

    from bench.world.workloads import build

    model, example = build(name)
    model.eval()
    w = Warm(name, _domain(name), model, example)
    if with_split:
        w.cut = split_point(name)
        if w.cut:
            w.head, w.tail = _split(model, w.cut)
    with torch.inference_mode():
        for _ in range(runs):
            model(example)
            if w.head is not None:
                w.tail(w.head(example))
    return w


# --------------------------------------------------------------------------- wire formats

def encode_input(w: Warm) -> bytes:
    """The request body of a full-model offload (see module docstring)."""
    x = w.example
    if w.domain == "vision":
        # pixels as 8-bit: the example tensor (any float range) mapped onto 0..255
        lo, hi = float(x.min()), float(x.max())
        q = ((x - lo) / max(hi - lo, 1e-12) * 255.0).round().clamp(0, 255).to(dtype=__import__("torch").uint8)
        return q.numpy().tobytes()
    return x.numpy().astype(np.int64).tobytes()


def decode_input(w: Warm, body: bytes):
    import torch

    shape = tuple(w.example.shape)
    if w.domain == "vision":
        arr = np.frombuffer(body, dtype=np.uint8).reshape(shape)
        return torch.from_numpy(arr.astype(np.float32) / 255.0)
    return torch.from_numpy(np.frombuffer(body, dtype=np.int64).reshape(shape).copy())


def encode_output(y) -> bytes:
    t = y[0] if isinstance(y, (tuple, list)) else y
    return t.detach().float().numpy().tobytes()


def channel_importance(f) -> np.ndarray:
    """Per-channel importance of a feature map: mean |activation| (a channel-attention stand-in)."""
    return f.detach().abs().float().mean(dim=tuple(i for i in range(f.ndim) if i != 1)).numpy()


def encode_share(f, xi: float) -> tuple[bytes, np.ndarray]:
    """Quantise the ``xi`` share of least important channels of ``f``; returns (body, offloaded channel ids)."""
    from bench.world.attention import offloaded_channels, quantize_uint8

    k = offloaded_channels(xi, int(f.shape[1]))
    order = np.argsort(channel_importance(f), kind="stable")  # least important first: DVFO offloads secondary features
    idx = np.sort(order[:k])
    q = quantize_uint8(f[:, idx].contiguous())
    header = json.dumps({"shape": list(f.shape), "channels": idx.tolist(), "scale": float(q.scale[0]),
                         "zero_point": int(q.zero_point[0])}).encode()
    return struct.pack("<I", len(header)) + header + q.q.numpy().tobytes(), idx


def decode_share(body: bytes):
    """The server side of :func:`encode_share`: the full-shape feature map, zeros outside the offloaded channels."""
    import torch

    from bench.world.attention import Quantized, dequantize_uint8

    (n,) = struct.unpack("<I", body[:4])
    h = json.loads(body[4:4 + n])
    shape, idx = h["shape"], h["channels"]
    sub = list(shape)
    sub[1] = len(idx)
    q = torch.from_numpy(np.frombuffer(body[4 + n:], dtype=np.uint8).reshape(sub).copy())
    deq = dequantize_uint8(Quantized(q, torch.tensor([h["scale"]]), torch.tensor([h["zero_point"]], dtype=torch.int32)))
    f = torch.zeros(shape)
    f[:, idx] = deq
    return f


def fuse(local_logits: np.ndarray, remote_logits: np.ndarray, xi: float) -> np.ndarray:
    """DVFO's fusion with the weight lambda = kept share (1 - xi) on the local prediction."""
    return (1.0 - xi) * local_logits + xi * remote_logits
