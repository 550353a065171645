"""Operator-class features of a DNN: what the layer-aware latency model needs.

One counted forward pass (batch 1, CPU, no grad) splits a model's work into six
operator classes. Every aten op that runs is classified (views and metadata ops
are skipped) and contributes FLOPs, memory traffic and one kernel to its class:

============  =====================================================================
class         ops
============  =====================================================================
conv          ``aten.convolution`` with ``groups == 1`` (dense, incl. 1x1 pointwise)
dwconv        ``aten.convolution`` with ``groups > 1`` (depthwise and grouped)
matmul        ``mm`` / ``addmm`` / ``bmm`` / ``linear`` ... outside attention blocks
attention     every op inside an ``nn.MultiheadAttention`` block (QKV and output
              projections, scores, softmax, weighted sum)
recurrent     every op inside an ``nn.RNNBase`` module (LSTM/GRU/RNN layers)
elementwise   everything else: activations, normalisation, pooling, residual adds,
              concatenation, embedding look-ups, ...
============  =====================================================================

* ``*_flops``: FLOPs by ``torch.utils.flop_counter``'s formulas (2 per MAC, with
  the suite's CPU formulas for SDPA and the oneDNN LSTM, see
  :mod:`bench.world.workloads`); ops without a formula (elementwise, softmax, ...)
  count one operation per output element, so elementwise work is not zero.
* ``*_bytes``: bytes of every input and output tensor of every op (fp32,
  unfused: an upper bound of the DRAM traffic that the fitted bandwidth scales);
  an embedding look-up reads its output's size, not the whole table.
* ``*_kernels``: number of ops (kernel launches of an unfused runtime).

The classification is the same one :func:`class_times_ms` uses to split a host's
measured per-module times (forward hooks), so host timings and features line up.

Reference models: besides the suite's eight workloads, calibration rows from the
literature measure other classic networks (MobileNet V1, SqueezeNet, ShuffleNet,
MnasNet, DenseNet, VGG, ...). Their features come from the same counter
(torchvision definitions; MobileNet V1, which torchvision lacks, is defined here
after Howard et al. 2017, Table 1). ``python -m bench.world.opclasses --write``
writes ``data/workloads/op_classes.csv`` for all of them.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from bench.paths import DATA_DIR as _DATA_DIR
from hw.atomic import atomic_write_text

DATA_DIR = _DATA_DIR / "workloads"
OP_CLASSES_CSV = "op_classes.csv"
OP_CLASSES = ("conv", "dwconv", "matmul", "attention", "recurrent", "elementwise")
FEATURES = ("flops", "bytes", "kernels")
COLUMNS = ["model", "suite", *[f"{c}_{f}" for c in OP_CLASSES for f in FEATURES]]

# torchvision reference networks measured by calibration sources (constructor kwargs).
_TV_REFERENCES: dict[str, dict[str, Any]] = {
    "alexnet": {}, "squeezenet1_0": {}, "squeezenet1_1": {}, "resnet34": {}, "resnet101": {}, "resnet152": {},
    "densenet121": {}, "densenet161": {}, "densenet169": {}, "densenet201": {},
    "vgg11": {}, "vgg13": {}, "vgg16": {}, "vgg19": {},
    "shufflenet_v2_x0_5": {}, "shufflenet_v2_x1_0": {}, "shufflenet_v2_x1_5": {}, "shufflenet_v2_x2_0": {},
    "mnasnet0_5": {}, "mnasnet0_75": {}, "mnasnet1_0": {}, "mnasnet1_3": {},
    "googlenet": {"aux_logits": False, "init_weights": True}, "mobilenet_v3_large": {},
}
#: Text reference models measured by calibration sources (token input of the suite's length, 128).
_TEXT_REFERENCES = ("bert_base", "mobilebert")
REFERENCE_MODELS = ("mobilenet_v1", *_TV_REFERENCES, *_TEXT_REFERENCES)


# --------------------------------------------------------------------------- models

def mobilenet_v1(width: float = 1.0, classes: int = 1000) -> Any:
    """MobileNet V1 (Howard et al. 2017, Table 1): a 3x3 stem, 13 depthwise-separable blocks, pool, fc."""
    from torch import nn

    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    c = lambda n: int(n * width)  # noqa: E731
    plan = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
            *[(512, 512, 1)] * 5, (512, 1024, 2), (1024, 1024, 1)]
    layers = [nn.Conv2d(3, c(32), 3, 2, 1, bias=False), nn.BatchNorm2d(c(32)), nn.ReLU(inplace=True)]
    layers += [block(c(i), c(o), s) for i, o, s in plan]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c(1024), classes))


def bert_base() -> Any:
    """BERT-Base (Devlin et al. 2019, section 3: L=12, H=768, A=12, feed-forward 4H), the suite's encoder classifier."""
    from bench.world import workloads as wl

    cls = wl._text_model_classes()["transformer"]
    return cls(wl.TEXT_VOCAB, wl.TEXT_SEQ_LEN, 768, 12, 3072, 12, wl.TEXT_CLASSES)


def mobilebert() -> Any:
    """MobileBERT (Sun et al. 2020, Table 1, column MobileBERT), the work of one forward pass.

    24 blocks; each: a 512->128 bottleneck in, multi-head attention over 128 features with 4
    heads, four stacked feed-forward networks 128->512->128, a 128->512 bottleneck out; the
    embedding is 128-wide, widened to 512 by a kernel-3 convolution over the token axis.
    Normalisation is elementwise (NoNorm is a per-feature scale and shift). Counted for the
    latency model only: the structure, not the trained weights, decides the work.
    """
    import torch
    from torch import nn

    from bench.world import workloads as wl

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bottleneck_in = nn.Linear(512, 128)
            self.attention = nn.MultiheadAttention(128, 4, batch_first=True)
            self.norm1 = nn.LayerNorm(128)
            self.ffn = nn.ModuleList(nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 128))
                                     for _ in range(4))
            self.norms = nn.ModuleList(nn.LayerNorm(128) for _ in range(4))
            self.bottleneck_out = nn.Linear(128, 512)
            self.norm_out = nn.LayerNorm(512)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.bottleneck_in(x)
            h = self.norm1(h + self.attention(h, h, h, need_weights=False)[0])
            for ffn, norm in zip(self.ffn, self.norms):
                h = norm(h + ffn(h))
            return self.norm_out(x + self.bottleneck_out(h))

    class MobileBert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(wl.TEXT_VOCAB, 128)
            self.widen = nn.Conv1d(128, 512, 3, padding=1)
            self.blocks = nn.ModuleList(Block() for _ in range(24))
            self.head = nn.Linear(512, wl.TEXT_CLASSES)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.widen(self.embedding(ids).transpose(1, 2)).transpose(1, 2)
            for block in self.blocks:
                x = block(x)
            return self.head(x[:, 0])

    return MobileBert()


def build_model(name: str, seed: int = 0) -> tuple[Any, Any]:
    """A suite workload (:func:`bench.world.workloads.build`) or a reference model, eval mode, with its input."""
    import torch

    from bench.world import workloads as wl

    if name in wl.WORKLOADS:
        return wl.build(name, seed)
    if name not in REFERENCE_MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: suite workloads {sorted(wl.WORKLOADS)} "
                         f"or reference models {sorted(REFERENCE_MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "mobilenet_v1":
            model = mobilenet_v1()
        elif name in _TEXT_REFERENCES:
            model = bert_base() if name == "bert_base" else mobilebert()
            model.eval()
            return model, wl._token_input(torch.Generator().manual_seed(seed))
        else:
            import torchvision.models

            model = getattr(torchvision.models, name)(weights=None, **_TV_REFERENCES[name])
    model.eval()
    return model, torch.randn((1, 3, 224, 224), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- classification

def _context_modules(model: Any) -> tuple[list[Any], list[Any]]:
    from torch import nn

    attn = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    rnn = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    return attn, rnn


class _Context:
    """Depth counters for 'inside an attention block' / 'inside a recurrent layer', kept by hooks."""

    def __init__(self, model: Any):
        self.attn = 0
        self.rnn = 0
        self.handles = []
        attn, rnn = _context_modules(model)
        for mods, key in ((attn, "attn"), (rnn, "rnn")):
            for m in mods:
                self.handles.append(m.register_forward_pre_hook(self._enter(key)))
                self.handles.append(m.register_forward_hook(self._leave(key), always_call=True))

    def _enter(self, key: str) -> Callable[..., None]:
        def hook(*_a: Any) -> None:
            setattr(self, key, getattr(self, key) + 1)
        return hook

    def _leave(self, key: str) -> Callable[..., None]:
        def hook(*_a: Any) -> None:
            setattr(self, key, getattr(self, key) - 1)
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


_MATMUL_OPS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addbmm", "addmv", "mv", "dot"}


def classify_op(name: str, args: Sequence[Any], in_attention: bool, in_recurrent: bool) -> str:
    """Operator class of one aten op (``name`` = overload packet name, e.g. ``convolution``)."""
    if in_recurrent:
        return "recurrent"
    if in_attention:
        return "attention"
    if name in ("convolution", "_convolution", "conv2d", "conv1d", "mkldnn_convolution"):
        groups = args[8] if len(args) > 8 else 1
        return "dwconv" if int(groups) > 1 else "conv"
    if name in _MATMUL_OPS:
        return "matmul"
    return "elementwise"


def _tensors(obj: Any) -> list[Any]:
    import torch
    from torch.utils._pytree import tree_flatten

    return [t for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]


def _nbytes(tensors: Iterable[Any]) -> int:
    seen, total = set(), 0
    for t in tensors:
        key = (t.data_ptr(), t.numel(), t.dtype) if t.numel() else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


@functools.lru_cache(maxsize=1)
def _flop_registry() -> dict[Any, Callable[..., int]]:
    from torch.utils.flop_counter import FlopCounterMode

    from bench.world.workloads import _custom_flop_formulas

    return dict(FlopCounterMode(display=False, custom_mapping=_custom_flop_formulas()).flop_registry)


def count_op_classes(model: Any, example: Any) -> dict[str, float]:
    """FLOPs, bytes and kernels per operator class of one forward pass (see module docstring)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from bench.world.workloads import _SlowPathAttention

    registry = _flop_registry()
    out = {f"{c}_{f}": 0 for c in OP_CLASSES for f in FEATURES}
    ctx = _Context(model)

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            if func.is_view or func._overloadpacket.__name__ in ("detach", "lift_fresh", "alias"):
                return result
            outs = _tensors(result)
            if not outs:
                return result
            name = func._overloadpacket.__name__
            cls = classify_op(name, args, ctx.attn > 0, ctx.rnn > 0)
            formula = registry.get(func._overloadpacket)
            flops = formula(*args, **kwargs, out_val=result) if formula else sum(t.numel() for t in outs)
            if name == "embedding":  # reads the looked-up rows, not the whole table
                nbytes = 2 * _nbytes(outs) + _nbytes(_tensors(args[1:]))
            else:
                nbytes = _nbytes(_tensors((args, kwargs)) + outs)
            out[f"{cls}_flops"] += int(flops)
            out[f"{cls}_bytes"] += int(nbytes)
            out[f"{cls}_kernels"] += 1
            return result

    try:
        with torch.no_grad(), _SlowPathAttention(), Mode():
            model(example)
    finally:
        ctx.remove()
    return out


# --------------------------------------------------------------------------- host timing

def module_class(m: Any) -> str | None:
    """Operator class of a leaf module (or a whole attention / recurrent block); None for containers."""
    from torch import nn

    if isinstance(m, nn.MultiheadAttention):
        return "attention"
    if isinstance(m, nn.RNNBase):
        return "recurrent"
    if any(True for _ in m.children()):
        return None
    if isinstance(m, nn.modules.conv._ConvNd):
        return "dwconv" if m.groups > 1 else "conv"
    if isinstance(m, nn.Linear):
        return "matmul"
    return "elementwise"


def _timed_modules(model: Any) -> list[tuple[Any, str]]:
    """Modules timed by hooks: attention / recurrent blocks as a whole, other leaves individually."""
    from torch import nn

    picked, skip = [], set()
    for m in model.modules():
        if id(m) in skip:
            continue
        cls = module_class(m)
        if isinstance(m, (nn.MultiheadAttention, nn.RNNBase)):
            skip.update(id(s) for s in m.modules())
        if cls is not None:
            picked.append((m, cls))
    return picked


def class_times_ms(model: Any, example: Any, runs: int, clock: str = "wall") -> tuple[list[float], list[dict[str, float]]]:
    """Per-run total latency (ms) and per-class split of it, from forward hooks around the classified modules.

    Time outside any timed module (residual adds, reshapes, functional ops in a
    ``forward``) is elementwise work and goes to ``elementwise``; so the classes
    add up to the total. Hooks cost a few microseconds per module, which the
    totals include (they are reported next to the hook-free latency). ``clock``:
    ``wall`` (``perf_counter``) or ``cpu`` (the calling thread's CPU time, which
    other load cannot inflate; meaningful with one intra-op thread).
    """
    now = time.thread_time_ns if clock == "cpu" else time.perf_counter_ns
    import torch

    from bench.world.workloads import _SlowPathAttention

    stamps: dict[int, float] = {}
    acc = {c: 0.0 for c in OP_CLASSES}
    handles = []

    def pre(m: Any, *_a: Any) -> None:
        stamps[id(m)] = now()

    def post_for(cls: str) -> Callable[..., None]:
        def post(m: Any, *_a: Any) -> None:
            acc[cls] += (now() - stamps.pop(id(m))) / 1e6
        return post

    for m, cls in _timed_modules(model):
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post_for(cls)))
    totals, splits = [], []
    try:
        with torch.inference_mode(), _SlowPathAttention():
            for _ in range(runs):
                for c in acc:
                    acc[c] = 0.0
                t0 = now()
                model(example)
                total = (now() - t0) / 1e6
                split = dict(acc)
                split["elementwise"] += max(total - sum(acc.values()), 0.0)
                totals.append(total)
                splits.append(split)
    finally:
        for h in handles:
            h.remove()
    return totals, splits


# --------------------------------------------------------------------------- table

def op_class_table(models: Sequence[str] | None = None, progress: bool = False) -> pd.DataFrame:
    """One row of op-class features per model (default: suite workloads, then reference models)."""
    from bench.world import workloads as wl

    names = list(models) if models is not None else [*sorted(wl.WORKLOADS), *REFERENCE_MODELS]
    if progress:
        from tqdm import tqdm

        names = tqdm(names, desc="op classes", file=sys.stderr)
    rows = []
    for n in names:
        model, x = build_model(n)
        rows.append({"model": n, "suite": n in wl.WORKLOADS, **count_op_classes(model, x)})
    return pd.DataFrame(rows, columns=COLUMNS)


def load_op_classes(data_dir: Path | str = DATA_DIR) -> pd.DataFrame:
    """The shipped op-class table (no torch import)."""
    path = Path(data_dir) / OP_CLASSES_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing; run `python -m bench.world.opclasses --write`")
    return pd.read_csv(path)


def features(table: pd.DataFrame, model: str) -> Mapping[str, float]:
    """The feature row of ``model``; ValueError naming the known models otherwise."""
    hit = table[table["model"] == model]
    if hit.empty:
        raise ValueError(f"no op-class features for {model!r}; known: {sorted(table['model'])}")
    return hit.iloc[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.world.opclasses", description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="recompute every model and write the table")
    parser.add_argument("--out", default=str(DATA_DIR))
    args = parser.parse_args(argv)
    if args.write:
        table = op_class_table(progress=True)
        path = Path(args.out) / OP_CLASSES_CSV
        atomic_write_text(path, table.to_csv(index=False, lineterminator="\n"))
        print(f"wrote {path}")
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(load_op_classes(args.out).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
