"""DNN workloads: architectures, compute/memory figures and partition points.

Eight inference workloads feed the simulator and the schedulers: six real
torchvision image classifiers (random weights: timing and counting do not
depend on weight values, and nothing is downloaded) and two text classifiers
defined here (``lstm_text`` gives AutoScale's state its recurrent layers,
``transformer_text`` is a small BERT-style encoder).

For every workload :func:`analyse` runs one counted forward pass (batch 1, CPU)
and reports:

======================  ===================================================
column                  meaning
======================  ===================================================
flops                   FLOPs of conv / matmul / attention / recurrent ops
                        counted by ``torch.utils.flop_counter.FlopCounterMode``
                        (2 FLOPs per multiply-accumulate; elementwise ops,
                        normalisation, pooling, bias adds are not counted)
macs                    ``flops // 2``: every counted op is a MAC pair
params, weight_bytes    parameter count; bytes of the fp32 ``state_dict``
                        (parameters + buffers such as BatchNorm statistics)
activation_bytes_total  sum of the output bytes of every executed leaf
                        module (a memory-traffic proxy for the latency model)
input/output_bytes      bytes of the example input / the model output
n_conv / n_fc           ``nn.Conv*`` modules / ``nn.Linear`` modules (the
                        ``out_proj`` inside ``nn.MultiheadAttention`` belongs
                        to the attention layer and is not counted as fc)
n_recurrent             ``nn.RNNBase`` modules, weighted by ``num_layers``
n_attention             ``nn.MultiheadAttention`` modules
acc_fp32 / acc_int8     ImageNet-1K top-1 (%) from torchvision's weight-enum
                        metadata; NaN where none is published
======================  ===================================================

Partition points split the model into a local head and a remote tail at block
boundaries listed per model (regular expressions over module names, matched in
full, ordered by execution). Point 0 is the raw input (offload everything);
point *k* cuts after the *k*-th boundary module; the last point is the model
output (run everything locally). ``flops_before`` is the FLOPs executed before
the cut, read from the counter inside forward hooks; ``activation_bytes`` is
the size of the tensor crossing the cut (the module's output; for modules that
return a tuple, e.g. ``nn.LSTM``, its first element).

Computing is slow (torch, a few minutes for all eight on two cores), so the
figures are cached in ``data/workloads/`` by ``python -m bench workloads
--write``; :func:`load_workloads` and :func:`load_partitions` read that cache
without importing torch.
"""
from __future__ import annotations

import functools
import math
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import pandas as pd

from bench import paths
from hw.atomic import atomic_write_text

if TYPE_CHECKING:  # torch is imported lazily: the cache readers must stay cheap
    import torch

DATA_DIR = paths.DATA_DIR / "workloads"
WORKLOADS_CSV = "workloads.csv"
PARTITIONS_CSV = "partitions.csv"
SEED = 0
BATCH = 1

# Text models. assumed: BERT-base uncased WordPiece vocabulary (Devlin et al.
# 2019) and a two-class (sentiment-style) head; sequence length per the
# benchmark's foundation issue.
TEXT_SEQ_LEN = 128
TEXT_VOCAB = 30522
TEXT_CLASSES = 2
# assumed: classic LSTM text-classifier sizes (embedding 128, hidden 256, 2 layers).
LSTM_EMBED_DIM = 128
LSTM_HIDDEN = 256
LSTM_LAYERS = 2
# source: BERT-mini (L=4, H=256, A=4, FF=4H), Turc et al. 2019, "Well-Read
# Students Learn Better", Table 6 of the released miniatures.
BERT_LAYERS = 4
BERT_DIM = 256
BERT_HEADS = 4
BERT_FF = 1024

WORKLOAD_COLUMNS = [
    "workload", "domain", "input_shape", "flops", "macs", "params",
    "weight_bytes", "activation_bytes_total", "input_bytes", "output_bytes",
    "n_conv", "n_fc", "n_recurrent", "n_attention", "n_partition_points",
    "acc_fp32", "acc_int8", "acc_source",
]
PARTITION_COLUMNS = ["workload", "point", "name", "flops_before", "activation_bytes"]
FLOAT_FORMAT = "%.3f"


@dataclass(frozen=True)
class WorkloadSpec:
    """How to build one workload and where its boundaries and accuracy are.

    ``builder`` constructs the module (random weights, global RNG already
    seeded by :func:`build`); ``input_factory(generator)`` makes the example
    batch. Accuracy enums are dotted names resolved lazily in
    ``torchvision.models`` (fp32) and ``torchvision.models.quantization`` (int8).
    """

    name: str
    domain: str
    input_shape: tuple[int, ...]
    builder: Callable[[], Any]
    input_factory: Callable[[Any], Any]
    partition_patterns: tuple[str, ...]
    acc_fp32_enum: str | None = None
    acc_int8_enum: str | None = None
    description: str = ""


# ----------------------------------------------------------------------------
# builders


def _torchvision(fn: str, **kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        import torchvision.models

        return getattr(torchvision.models, fn)(weights=None, **kwargs)

    return build


def _image_input(shape: tuple[int, ...]) -> Callable[[Any], Any]:
    def make(gen: Any) -> Any:
        import torch

        return torch.randn(shape, generator=gen)

    return make


def _token_input(gen: Any) -> Any:
    import torch

    return torch.randint(0, TEXT_VOCAB, (BATCH, TEXT_SEQ_LEN), generator=gen)


@functools.lru_cache(maxsize=None)
def _text_model_classes() -> dict[str, type]:
    """Define the text models on first use, so importing this module skips torch."""
    import torch
    from torch import nn

    class LSTMTextClassifier(nn.Module):
        """Embedding -> 2 stacked LSTM layers -> linear head on the last step.

        The layers are separate single-layer ``nn.LSTM`` modules (equal to
        ``nn.LSTM(num_layers=2)`` at inference, where inter-layer dropout is
        off) so that a partition point can fall between them.
        """

        def __init__(self, vocab: int, embed_dim: int, hidden: int, layers: int, classes: int):
            super().__init__()
            self.embedding = nn.Embedding(vocab, embed_dim)
            self.lstm = nn.ModuleList(
                nn.LSTM(embed_dim if i == 0 else hidden, hidden, batch_first=True)
                for i in range(layers)
            )
            self.head = nn.Linear(hidden, classes)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.embedding(ids)
            for layer in self.lstm:
                x, _ = layer(x)
            return self.head(x[:, -1])

    class TokenPositionEmbedding(nn.Module):
        """BERT input embedding: token + learned position, then LayerNorm."""

        def __init__(self, vocab: int, seq_len: int, dim: int):
            super().__init__()
            self.tok = nn.Embedding(vocab, dim)
            self.pos = nn.Embedding(seq_len, dim)
            self.norm = nn.LayerNorm(dim)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            positions = torch.arange(ids.shape[1], device=ids.device)
            return self.norm(self.tok(ids) + self.pos(positions))

    class TransformerTextClassifier(nn.Module):
        """BERT-style encoder classifier: embedding, post-LN encoder, pooler on [CLS]."""

        def __init__(self, vocab: int, seq_len: int, dim: int, heads: int, ff: int,
                     layers: int, classes: int):
            super().__init__()
            self.embedding = TokenPositionEmbedding(vocab, seq_len, dim)
            layer = nn.TransformerEncoderLayer(dim, heads, ff, activation="gelu",
                                               batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.head = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, classes))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(self.embedding(ids))[:, 0])

    return {"lstm": LSTMTextClassifier, "transformer": TransformerTextClassifier}


def _build_lstm_text() -> Any:
    cls = _text_model_classes()["lstm"]
    return cls(TEXT_VOCAB, LSTM_EMBED_DIM, LSTM_HIDDEN, LSTM_LAYERS, TEXT_CLASSES)


def _build_transformer_text() -> Any:
    cls = _text_model_classes()["transformer"]
    return cls(TEXT_VOCAB, TEXT_SEQ_LEN, BERT_DIM, BERT_HEADS, BERT_FF, BERT_LAYERS,
               TEXT_CLASSES)


_IMG = (BATCH, 3, 224, 224)
_IMG_299 = (BATCH, 3, 299, 299)
_TOKENS = (BATCH, TEXT_SEQ_LEN)
_RESNET_POINTS = ("maxpool", r"layer\d\.\d+", "avgpool", "fc")

WORKLOADS: dict[str, WorkloadSpec] = {
    spec.name: spec
    for spec in [
        WorkloadSpec(
            "mobilenet_v2", "vision", _IMG, _torchvision("mobilenet_v2"), _image_input(_IMG),
            (r"features\.\d+", "classifier"),
            "MobileNet_V2_Weights.IMAGENET1K_V1",
            "MobileNet_V2_QuantizedWeights.IMAGENET1K_QNNPACK_V1",
            "MobileNetV2 (Sandler et al. 2018), torchvision",
        ),
        WorkloadSpec(
            "resnet18", "vision", _IMG, _torchvision("resnet18"), _image_input(_IMG),
            _RESNET_POINTS,
            "ResNet18_Weights.IMAGENET1K_V1",
            "ResNet18_QuantizedWeights.IMAGENET1K_FBGEMM_V1",
            "ResNet-18 (He et al. 2016), torchvision",
        ),
        WorkloadSpec(
            "resnet50", "vision", _IMG, _torchvision("resnet50"), _image_input(_IMG),
            _RESNET_POINTS,
            "ResNet50_Weights.IMAGENET1K_V1",
            "ResNet50_QuantizedWeights.IMAGENET1K_FBGEMM_V1",
            "ResNet-50 (He et al. 2016), torchvision",
        ),
        WorkloadSpec(
            "efficientnet_b0", "vision", _IMG, _torchvision("efficientnet_b0"),
            _image_input(_IMG),
            (r"features\.0", r"features\.[1-7]\.\d+", r"features\.8", "avgpool", "classifier"),
            "EfficientNet_B0_Weights.IMAGENET1K_V1", None,
            "EfficientNet-B0 (Tan & Le 2019), torchvision",
        ),
        WorkloadSpec(
            # aux_logits=False: the auxiliary head only runs in training.
            "inception_v3", "vision", _IMG_299,
            _torchvision("inception_v3", aux_logits=False, init_weights=True),
            _image_input(_IMG_299),
            (r"Conv2d_\w+", r"maxpool\d", r"Mixed_\w+", "avgpool", "fc"),
            "Inception_V3_Weights.IMAGENET1K_V1",
            "Inception_V3_QuantizedWeights.IMAGENET1K_FBGEMM_V1",
            "Inception-v3 (Szegedy et al. 2016), torchvision, 299x299 input",
        ),
        WorkloadSpec(
            "vit_b_16", "vision", _IMG, _torchvision("vit_b_16"), _image_input(_IMG),
            ("conv_proj", r"encoder\.layers\.encoder_layer_\d+", r"encoder\.ln", "heads"),
            "ViT_B_16_Weights.IMAGENET1K_V1", None,
            "ViT-B/16 (Dosovitskiy et al. 2021), torchvision",
        ),
        WorkloadSpec(
            "lstm_text", "text", _TOKENS, _build_lstm_text, _token_input,
            ("embedding", r"lstm\.\d+", "head"),
            None, None,
            "embedding + 2-layer LSTM + linear classifier, defined in bench.world.workloads",
        ),
        WorkloadSpec(
            "transformer_text", "text", _TOKENS, _build_transformer_text, _token_input,
            ("embedding", r"encoder\.layers\.\d+", "head"),
            None, None,
            "BERT-mini-style nn.TransformerEncoder classifier, defined in bench.world.workloads",
        ),
    ]
}


def get_spec(name: str) -> WorkloadSpec:
    """The registry entry for ``name``; :class:`WorkloadError` (a ValueError) naming the allowed names otherwise."""
    from bench.errors import WorkloadError

    try:
        return WORKLOADS[name]
    except (KeyError, TypeError):
        raise WorkloadError.at("workload", "unknown workload", name, ", ".join(sorted(WORKLOADS))) from None


def build(name: str, seed: int = SEED) -> tuple[Any, Any]:
    """Build workload ``name`` in eval mode with seeded random weights, plus its example input.

    The global torch RNG is forked, so callers' random state is untouched and
    two builds with the same seed are identical.
    """
    import torch

    spec = get_spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.builder()
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    return model, spec.input_factory(gen)


# ----------------------------------------------------------------------------
# counting


def _rnn_layer_flop(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of one fused CPU recurrent layer (``aten.mkldnn_rnn_layer``).

    Per time step and batch row: the input and hidden projections, i.e. a
    (G*H x I) and a (G*H x H) mat-vec, G gates. 2 FLOPs per MAC like
    torch's own mm formula; gate nonlinearities are elementwise and uncounted.
    """
    steps = math.prod(input_shape[:-1])
    return 2 * steps * (w_ih_shape[0] * w_ih_shape[1] + w_hh_shape[0] * w_hh_shape[1])


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the CPU SDPA kernel: torch's own QK^T and AV formula."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_flop_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas for CPU ops that ``FlopCounterMode`` does not know.

    torch registers SDPA formulas for the CUDA kernels only, and the CPU LSTM
    runs as one oneDNN op; without these the attention and recurrent layers
    would count as zero.
    """
    import torch

    aten = torch.ops.aten
    formulas: dict[Any, Callable[..., int]] = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        formulas[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flop
    if hasattr(aten, "mkldnn_rnn_layer"):
        formulas[aten.mkldnn_rnn_layer] = _rnn_layer_flop
    return formulas


class _SlowPathAttention:
    """Context: disable the fused MHA / encoder-layer fast path.

    The fast path runs a whole attention block as one op the flop counter
    cannot see and skips the inner modules' hooks.
    """

    def __enter__(self) -> None:
        import torch

        self._was = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)

    def __exit__(self, *exc: Any) -> None:
        import torch

        torch.backends.mha.set_fastpath_enabled(self._was)


def count_flops(model: Any, example_input: Any) -> int:
    """FLOPs of one forward pass of ``model`` (no grad), by ``FlopCounterMode``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), _SlowPathAttention():
        with FlopCounterMode(display=False, custom_mapping=_custom_flop_formulas()) as counter:
            model(example_input)
    return int(counter.get_total_flops())


def _tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a (nested) module output."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_tensor_bytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_tensor_bytes(o) for o in obj.values())
    return 0


def _cut_tensor(out: Any) -> Any:
    """The tensor that crosses a cut after a module: its output, or a tuple's first item."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out


def layer_counts(model: Any) -> dict[str, int]:
    """Counts of conv / fc / recurrent / attention layers in ``model``'s structure."""
    from torch import nn

    inside_attention = {
        id(sub)
        for m in model.modules() if isinstance(m, nn.MultiheadAttention)
        for sub in m.modules() if sub is not m
    }
    counts = {"n_conv": 0, "n_fc": 0, "n_recurrent": 0, "n_attention": 0}
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            counts["n_conv"] += 1
        elif isinstance(m, nn.Linear) and id(m) not in inside_attention:
            counts["n_fc"] += 1
        elif isinstance(m, nn.RNNBase):
            counts["n_recurrent"] += m.num_layers
        elif isinstance(m, nn.MultiheadAttention):
            counts["n_attention"] += 1
    return counts


def _leaf_modules(model: Any) -> list[Any]:
    """Modules whose outputs count as activations: childless ones, and MHA as a whole
    (its ``out_proj`` only holds weights and is never called)."""
    from torch import nn

    leaves, skip = [], set()
    for m in model.modules():
        if id(m) in skip:
            continue
        if isinstance(m, nn.MultiheadAttention):
            skip.update(id(s) for s in m.modules())
            leaves.append(m)
        elif not any(True for _ in m.children()):
            leaves.append(m)
    return leaves


def _partition_modules(model: Any, spec: WorkloadSpec) -> dict[str, Any]:
    """Modules whose names fully match one of the spec's patterns."""
    compiled = [re.compile(p) for p in spec.partition_patterns]
    found = {n: m for n, m in model.named_modules() if any(c.fullmatch(n) for c in compiled)}
    for pattern, c in zip(spec.partition_patterns, compiled):
        if not any(c.fullmatch(n) for n in found):
            raise ValueError(f"{spec.name}: partition pattern {pattern!r} matches no module")
    return found


def accuracy(spec: WorkloadSpec) -> tuple[float, float, str]:
    """(fp32 top-1 %, int8 top-1 %, source) from torchvision weight-enum metadata."""
    if spec.acc_fp32_enum is None:
        return math.nan, math.nan, "none: random-weight text model; no published accuracy (NaN)"
    import torchvision.models
    import torchvision.models.quantization as tvq

    def resolve(module: Any, dotted: str) -> Any:
        enum_name, member = dotted.split(".")
        return getattr(getattr(module, enum_name), member)

    fp32 = resolve(torchvision.models, spec.acc_fp32_enum)
    acc_fp32 = float(fp32.meta["_metrics"]["ImageNet-1K"]["acc@1"])
    source = f"torchvision meta ImageNet-1K acc@1; fp32: {spec.acc_fp32_enum}"
    if spec.acc_int8_enum is None:
        return acc_fp32, math.nan, source + "; int8: no quantized variant in torchvision (NaN)"
    int8 = resolve(tvq, spec.acc_int8_enum)
    if int8.meta.get("unquantized") is not fp32:
        raise ValueError(f"{spec.acc_int8_enum} is not quantized from {spec.acc_fp32_enum}")
    acc_int8 = float(int8.meta["_metrics"]["ImageNet-1K"]["acc@1"])
    return acc_fp32, acc_int8, source + f"; int8: {spec.acc_int8_enum}"


def analyse(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Compute the workload row and its partition points (one counted forward pass)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    spec = get_spec(name)
    model, x = build(name)
    boundaries = _partition_modules(model, spec)

    counter = FlopCounterMode(display=False, custom_mapping=_custom_flop_formulas())
    cuts: list[dict[str, Any]] = []
    leaf_bytes = [0]

    def on_boundary(qualname: str) -> Callable[..., None]:
        def hook(_m: Any, _inp: Any, out: Any) -> None:
            t = _cut_tensor(out)
            cuts.append({"name": qualname, "flops_before": int(counter.get_total_flops()),
                         "activation_bytes": t.numel() * t.element_size()})
        return hook

    def on_leaf(_m: Any, _inp: Any, out: Any) -> None:
        leaf_bytes[0] += _tensor_bytes(out)

    handles = [m.register_forward_hook(on_boundary(n)) for n, m in boundaries.items()]
    handles += [m.register_forward_hook(on_leaf) for m in _leaf_modules(model)]
    try:
        with torch.no_grad(), _SlowPathAttention(), counter:
            y = model(x)
    finally:
        for h in handles:
            h.remove()

    flops = int(counter.get_total_flops())
    input_bytes = x.numel() * x.element_size()
    output_bytes = y.numel() * y.element_size()
    names = [c["name"] for c in cuts]
    if sorted(names) != sorted(boundaries) or len(set(names)) != len(names):
        raise ValueError(f"{name}: each partition module must run exactly once, ran {names}")
    if cuts[-1]["flops_before"] != flops or cuts[-1]["activation_bytes"] != output_bytes:
        raise ValueError(f"{name}: last partition module {names[-1]!r} does not produce the output")
    if flops % 2:
        raise ValueError(f"{name}: odd FLOP count {flops}; MACs = FLOPs/2 would not hold")

    points = [{"name": "input", "flops_before": 0, "activation_bytes": input_bytes}] + cuts
    partitions = [{"workload": name, "point": i, **p} for i, p in enumerate(points)]
    acc_fp32, acc_int8, acc_source = accuracy(spec)
    state = model.state_dict()
    row = {
        "workload": name,
        "domain": spec.domain,
        "input_shape": "x".join(str(d) for d in x.shape),
        "flops": flops,
        "macs": flops // 2,
        "params": sum(p.numel() for p in model.parameters()),
        "weight_bytes": sum(t.numel() * t.element_size() for t in state.values()),
        "activation_bytes_total": leaf_bytes[0],
        "input_bytes": input_bytes,
        "output_bytes": output_bytes,
        **layer_counts(model),
        "n_partition_points": len(points),
        "acc_fp32": acc_fp32,
        "acc_int8": acc_int8,
        "acc_source": acc_source,
    }
    return row, partitions


# ----------------------------------------------------------------------------
# tables and cache


def _frames(rows: list[dict], parts: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    workloads = pd.DataFrame(rows, columns=WORKLOAD_COLUMNS)
    workloads = workloads.sort_values("workload", kind="stable").reset_index(drop=True)
    partitions = pd.DataFrame(parts, columns=PARTITION_COLUMNS)
    partitions = partitions.sort_values(["workload", "point"], kind="stable").reset_index(drop=True)
    return workloads, partitions


def workload_table(names: Sequence[str] | None = None,
                   progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute (workloads, partitions) tables for ``names`` (default: all)."""
    names = sorted(WORKLOADS) if names is None else list(names)
    for n in names:
        get_spec(n)
    if progress:
        from tqdm import tqdm

        names = tqdm(names, desc="workloads", file=sys.stderr)
    rows, parts = [], []
    for n in names:
        row, p = analyse(n)
        rows.append(row)
        parts.extend(p)
    return _frames(rows, parts)


def to_csv_text(df: pd.DataFrame) -> str:
    """Deterministic CSV text: fixed float format, '\\n' line ends, NaN as empty."""
    return df.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n", na_rep="")


def _readme_text() -> str:
    import torch
    import torchvision

    return f"""# Workload cache

Generated by `python -m bench workloads --write` (see `bench/world/workloads.py`);
do not edit by hand. Regenerate after changing a workload or upgrading torch.

- torch {torch.__version__}, torchvision {torchvision.__version__},
  Python {platform.python_version()}; batch {BATCH}, CPU, random weights (seed {SEED}).
- `workloads.csv`: one row per workload (columns documented in the module
  docstring). FLOPs come from `torch.utils.flop_counter.FlopCounterMode` with
  the fused-attention fast path off and formulas added for CPU SDPA and the
  oneDNN LSTM layer; only conv / matmul / attention / recurrent projections
  count (2 FLOPs per MAC), so `macs = flops / 2`. Accuracy is ImageNet-1K
  top-1 (%) read from torchvision weight-enum metadata (`acc_source` names
  the enums); NaN where no (quantized) weights are published.
- `partitions.csv`: candidate cut points per workload in execution order;
  point 0 = raw input (offload all), last = model output (all local);
  `flops_before` = FLOPs executed before the cut, `activation_bytes` = bytes
  of the tensor crossing it (fp32 activations; int64 token ids at point 0 of
  the text models).
"""


def write_cache(out_dir: Path | str = DATA_DIR, progress: bool = True) -> tuple[Path, Path]:
    """Compute all workloads and write the CSV cache plus its README."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workloads, partitions = workload_table(progress=progress)
    wpath, ppath = out / WORKLOADS_CSV, out / PARTITIONS_CSV
    # atomic: a crash mid-write keeps the previous cache whole (a half CSV would load as a short table)
    atomic_write_text(wpath, to_csv_text(workloads))
    atomic_write_text(ppath, to_csv_text(partitions))
    atomic_write_text(out / "README.md", _readme_text())
    return wpath, ppath


def _read_cache(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing; run `python -m bench workloads --write`")
    import io

    from bench.errors import WorkloadError
    from bench.validate import read_utf8

    text = read_utf8(path, WorkloadError)  # not UTF-8 / unreadable: one line naming the file
    try:
        df = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise WorkloadError.at(str(path), f"not a workload cache CSV ({' '.join(str(exc).split())[:120]})",
                               allowed="the CSV `python -m bench workloads --write` writes") from None
    if "workload" not in df.columns:
        raise WorkloadError.at(str(path), "lacks column 'workload'", list(df.columns),
                               "the CSV `python -m bench workloads --write` writes") from None
    return df


def load_workloads(data_dir: Path | str = DATA_DIR) -> pd.DataFrame:
    """The shipped per-workload table (no torch import)."""
    return _read_cache(Path(data_dir) / WORKLOADS_CSV)


def load_partitions(data_dir: Path | str = DATA_DIR) -> pd.DataFrame:
    """The shipped partition-point table (no torch import)."""
    return _read_cache(Path(data_dir) / PARTITIONS_CSV)
