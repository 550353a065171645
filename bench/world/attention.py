"""Measured spatial-channel attention: accuracy against the offload ratio xi.

DVFO (Zhang, Zhao, Li, Lin, Liu, "DVFO: Learning-Based DVFS for Energy-Efficient
Edge-Cloud Collaborative Inference", arXiv 2306.01811, IEEE TMC 2024; authors'
IPSN 2023 poster) splits a DNN: the edge runs the head, a *spatial-channel
attention* module finds the feature maps of secondary importance, those are
quantised and offloaded (remote prediction) while the important ones continue
locally (local prediction), and a fusion module mixes the two predictions with
a weight lambda. The DRL agent picks the share xi of offloaded feature maps, so
the simulator needs accuracy as a function of xi. This module **measures** that
curve on a network the suite trains itself instead of assuming one.

Everything below the citation level is a **suite choice** (the paper does not
publish these details); each choice is stated where it is made:

=======================  ===================================================
Stage                    What this module does
=======================  ===================================================
data                     scikit-learn digits (``load_digits``: 1797 8x8
                         images, 10 classes, ships with the package, no
                         download), pixels / 16, stratified 60/20/20
                         train / validation / test split.
head (edge)              conv3x3(1->16) ReLU, conv3x3(16->C) ReLU, maxpool 2:
                         the split point is a C x 4 x 4 feature map.
attention (edge)         CBAM (Woo et al., "CBAM: Convolutional Block
                         Attention Module", ECCV 2018): channel attention =
                         sigmoid(MLP(avgpool) + MLP(maxpool)) with one shared
                         MLP (reduction ``reduction``), then spatial attention
                         = sigmoid(conv over [channel-mean, channel-max]);
                         3x3 kernel instead of CBAM's 7x7 because the maps
                         are 4x4.
channel ranking          score of channel c = mean channel-attention weight
                         M_c over the *training* set (one dataset-level
                         ranking, not per sample: the offloaded channel set,
                         and so the payload layout, is then fixed for a given
                         xi, as the simulator assumes). Lowest score is
                         offloaded first; ties by channel index.
offload                  the lowest-ranked ``round(xi * C)`` channels of the
                         attention-refined map, quantised to uint8
                         (per-tensor affine, one scale / zero point per
                         request, range widened to include 0), dequantised
                         on the remote side. ``offload_bytes`` counts the
                         uint8 payload only (the 8-byte float32 scale + int32
                         zero point header is not counted).
tails                    local (edge) and remote (cloud) classifier, both
                         flatten -> Linear(C*16, hidden) -> ReLU -> Linear(10)
                         on all C channels with the channels they do not get
                         set to zero.
training                 phase 1 (``epochs``): head + attention + both tails
                         end to end on full feature maps (remote tail through
                         the 8-bit quantiser with a straight-through
                         gradient). Phase 2 (``finetune_epochs``): head and
                         attention frozen, both tails fine-tuned with random
                         channel subsets per sample (offload count uniform in
                         0..C, subset uniform) so that they handle *any*
                         mask. The masks deliberately do **not** follow the
                         attention ranking: the tails are then the same for
                         the attention ranking and for the random-ranking
                         control, so the comparison measures the ranking
                         alone.
fusion weight lambda     ``lambda_rule="validation"`` (default): per xi and
                         ranking, the lambda on a grid of ``lambda_steps``
                         values in [0, 1] with the highest validation
                         accuracy (ties: closest to the kept share
                         1 - k/C, then the smaller); never tuned on test.
                         ``"kept_share"``: lambda = 1 - k/C. Always
                         lambda = 1 at xi = 0 (local tail only) and 0 at
                         xi = 1 (remote tail only).
control                  ``n_random_rankings`` random channel permutations,
                         evaluated exactly like the attention ranking.
repeats                  ``n_models`` networks, each with its own split,
                         initialisation, training and attention ranking
                         (digits' test split is only 360 images, so one
                         network's curve moves by single images); a row of
                         the curve is the mean over all model x ranking
                         evaluations, ``accuracy_sd`` their spread. The
                         rows also carry each tail's accuracy alone
                         (``local_accuracy``: the edge if the cloud is
                         unreachable; ``remote_accuracy``), which shows
                         *what* the ranking puts where.
=======================  ===================================================

Reproducibility: one integer seed fans out through ``numpy.random.SeedSequence``
to the split, the weight initialisation, the training shuffles and masks, and the
random rankings (``torch.Generator`` objects; no global random state is used).
Training runs on CPU with ``torch.use_deterministic_algorithms(True)`` and
``num_threads`` threads; both settings are restored afterwards. The shipped curve
``data/dvfo/accuracy_vs_xi.csv`` is written by::

    python -m bench.world.attention --write data/dvfo/accuracy_vs_xi.csv
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata as _md
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

#: Output columns of :func:`measure_accuracy_vs_xi`, in order (required first).
CURVE_COLUMNS: tuple[str, ...] = (
    "xi",  # requested offload ratio
    "ranking",  # "attention" | "random"
    "accuracy",  # test accuracy of the fused prediction (mean over models and rankings)
    "accuracy_loss",  # accuracy at xi = 0 (all local) minus accuracy here; < 0 when fusion helps
    "lambda",  # fusion weight of the local prediction (mean over models and rankings)
    "offload_bytes",  # uint8 payload per request: round(xi*C)*H*W
    "n_test",  # test images per model
    "offloaded_channels",  # round(xi * C)
    "n_models",  # independently trained networks averaged over
    "n_rankings",  # per model: 1 for attention, n_random_rankings for random
    "accuracy_sd",  # population sd of accuracy over all model x ranking evaluations
    "local_accuracy",  # local tail alone on the kept channels (the edge without the cloud)
    "remote_accuracy",  # remote tail alone on the offloaded, 8-bit channels
)
#: Columns of :attr:`AttentionResult.per_model` (one row per single evaluation).
PER_MODEL_COLUMNS: tuple[str, ...] = (
    "model", "xi", "ranking", "ranking_id", "accuracy", "lambda", "offload_bytes", "offloaded_channels",
    "local_accuracy", "remote_accuracy",
)
RANKINGS = ("attention", "random")
LAMBDA_RULES = ("validation", "kept_share")
N_CLASSES = 10
#: Float format of the shipped CSV (fixed so the file is byte-reproducible).
CSV_FLOAT_FORMAT = "%.6f"
DEFAULT_CSV = Path(__file__).resolve().parents[2] / "data" / "dvfo" / "accuracy_vs_xi.csv"


@dataclass(frozen=True)
class AttentionConfig:
    """Everything that determines the measured curve (the defaults are the shipped one)."""

    seed: int = 0
    """One integer seed; fanned out with ``numpy.random.SeedSequence``."""
    channels: int = 16
    """C, channels of the feature map at the split point (the offload granule)."""
    hidden: int = 64
    """Hidden width of the local and the remote tail."""
    reduction: int = 4
    """Channel-attention MLP reduction ratio (CBAM's r); C must be divisible by it."""
    epochs: int = 30
    """Phase 1 epochs: head + attention + both tails on full feature maps."""
    finetune_epochs: int = 30
    """Phase 2 epochs: tails only, random channel-subset masks."""
    lr: float = 3e-3
    """Adam learning rate (both phases)."""
    batch_size: int = 64
    """Mini-batch size (both phases)."""
    xi_levels: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    """Offload ratios to measure, each in [0, 1]; must include 0 (the reference)."""
    lambda_rule: str = "validation"
    """How lambda is chosen per xi: ``"validation"`` (grid search on the validation split) or ``"kept_share"`` (1 - k/C)."""
    lambda_steps: int = 21
    """Points of the lambda grid in [0, 1] for the validation rule (21 -> step 0.05)."""
    n_random_rankings: int = 8
    """Random channel permutations in the control (per model)."""
    n_models: int = 5
    """Independently trained networks (own split, initialisation, training and ranking, seeds spawned from ``seed``); the curve averages over them."""
    val_fraction: float = 0.2
    """Share of the data in the validation split (used for lambda only)."""
    test_fraction: float = 0.2
    """Share of the data in the held-out test split."""
    num_threads: int = 1
    """torch CPU threads while training/evaluating (fixed for bit-reproducibility)."""

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> None:
            raise ValueError(
                f"AttentionConfig.{name}={getattr(self, name)!r} is invalid; allowed: {allowed}"
            )

        for name in ("channels", "hidden", "reduction", "batch_size", "lambda_steps",
                     "n_random_rankings", "n_models", "num_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(name, "an integer >= 1")
        if self.lambda_steps < 2:
            bad("lambda_steps", "an integer >= 2")
        for name in ("epochs", "finetune_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                bad(name, "an integer >= 0")
        if self.epochs + self.finetune_epochs < 1:
            bad("epochs", "epochs + finetune_epochs >= 1")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            bad("seed", "an integer >= 0")
        if self.channels % self.reduction:
            bad("reduction", f"a divisor of channels={self.channels}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            bad("lr", "a number > 0")
        if self.lambda_rule not in LAMBDA_RULES:
            bad("lambda_rule", " | ".join(LAMBDA_RULES))
        xs = tuple(self.xi_levels)
        if not xs or any(not isinstance(x, (int, float)) or not 0.0 <= x <= 1.0 for x in xs):
            bad("xi_levels", "a non-empty sequence of numbers in [0, 1]")
        if 0.0 not in xs:
            bad("xi_levels", "a sequence that includes 0.0 (the all-local reference)")
        if len(set(xs)) != len(xs):
            bad("xi_levels", "distinct values")
        object.__setattr__(self, "xi_levels", tuple(float(x) for x in xs))
        for name in ("val_fraction", "test_fraction"):
            if not 0.05 <= getattr(self, name) <= 0.45:
                bad(name, "a fraction in [0.05, 0.45]")

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (round-trips through ``AttentionConfig(**d)``)."""
        d = dataclasses.asdict(self)
        d["xi_levels"] = list(d["xi_levels"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AttentionConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown AttentionConfig field(s) {unknown}; allowed: {sorted(known)}")
        d = dict(d)
        if "xi_levels" in d:
            d["xi_levels"] = tuple(d["xi_levels"])
        return cls(**d)


def offloaded_channels(xi: float, channels: int) -> int:
    """k = round(xi * C): channels offloaded at ratio xi (Python rounding, half to even)."""
    if not 0.0 <= xi <= 1.0:
        raise ValueError(f"xi={xi!r} is invalid; allowed: a number in [0, 1]")
    return int(round(xi * channels))


# --------------------------------------------------------------------------- quantiser
@dataclass(frozen=True)
class Quantized:
    """An 8-bit per-tensor affine payload: ``x ~= (q - zero_point) * scale``.

    ``q`` has shape (B, ...); each of the B requests is one tensor with its own
    ``scale`` (float32, shape (B,)) and ``zero_point`` (int32, shape (B,)).
    """

    q: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor

    def payload_bytes_per_request(self) -> int:
        """Bytes of one request's uint8 payload (header not counted)."""
        return int(self.q[0].numel() * self.q.element_size()) if self.q.shape[0] else 0


def quantize_uint8(x: torch.Tensor) -> Quantized:
    """Uniform affine uint8 quantisation, one (scale, zero point) per leading index.

    The range is [min(x_min, 0), max(x_max, 0)] so that 0 is exact (offloaded
    ReLU maps are non-negative, zero point then 0); scale = range / 255 (1.0 for
    an all-zero tensor, where any scale is exact); zero point = round(-min/scale).
    Round-trip error per element is at most scale / 2 (plus float rounding).
    """
    if x.ndim < 1 or x.shape[0] == 0:
        return Quantized(x.to(torch.uint8), torch.ones(x.shape[:1]), torch.zeros(x.shape[:1], dtype=torch.int32))
    flat = x.detach().reshape(x.shape[0], -1).float()
    if flat.shape[1] == 0:
        lo = hi = torch.zeros(x.shape[0])
    else:
        lo = torch.clamp(flat.min(dim=1).values, max=0.0)
        hi = torch.clamp(flat.max(dim=1).values, min=0.0)
    scale = (hi - lo) / 255.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = torch.clamp(torch.round(-lo / scale), 0, 255)
    q = torch.clamp(torch.round(flat / scale[:, None]) + zero_point[:, None], 0, 255)
    return Quantized(q.to(torch.uint8).reshape(x.shape), scale, zero_point.to(torch.int32))


def dequantize_uint8(p: Quantized) -> torch.Tensor:
    """The remote side: float32 ``(q - zero_point) * scale``."""
    shape = (-1,) + (1,) * (p.q.ndim - 1)
    return (p.q.float() - p.zero_point.float().reshape(shape)) * p.scale.reshape(shape)


def _fake_quant_ste(x: torch.Tensor) -> torch.Tensor:
    """Quantise-dequantise in the forward pass, identity gradient (straight-through)."""
    return x + (dequantize_uint8(quantize_uint8(x)) - x).detach()


# --------------------------------------------------------------------------- model
class ChannelAttention(nn.Module):
    """CBAM channel attention: M_c = sigmoid(MLP(avgpool F) + MLP(maxpool F))."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(channels, channels // reduction), nn.ReLU(), nn.Linear(channels // reduction, channels)
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(f.mean(dim=(2, 3))) + self.mlp(f.amax(dim=(2, 3))))


class SpatialAttention(nn.Module):
    """CBAM spatial attention: M_s = sigmoid(conv([mean_c F, max_c F]))."""

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([f.mean(dim=1, keepdim=True), f.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class SplitNet(nn.Module):
    """Head -> CBAM -> (local tail, remote tail); see the module docstring."""

    def __init__(self, channels: int, hidden: int, reduction: int) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, channels, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.channel_att = ChannelAttention(channels, reduction)
        self.spatial_att = SpatialAttention(3)
        self.local_tail = self._tail(channels, hidden)
        self.remote_tail = self._tail(channels, hidden)

    @staticmethod
    def _tail(channels: int, hidden: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, hidden), nn.ReLU(), nn.Linear(hidden, N_CLASSES))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention-refined split-point map F'' (B, C, 4, 4) and channel weights M_c (B, C)."""
        f = self.head(x)
        m_c = self.channel_att(f)
        f = f * m_c[:, :, None, None]
        return f * self.spatial_att(f), m_c


def _init_params(model: nn.Module, gen: torch.Generator) -> None:
    """PyTorch's default Conv/Linear initialisation, drawn from ``gen`` (not the global RNG)."""
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(mod.weight, a=5 ** 0.5, generator=gen)
            fan_in = mod.weight[0].numel()
            bound = 1.0 / fan_in ** 0.5
            nn.init.uniform_(mod.bias, -bound, bound, generator=gen)


# --------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _deterministic_cpu(num_threads: int) -> Iterator[None]:
    """Fixed thread count + deterministic algorithms, restored on exit."""
    prev = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled())
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(prev[0])
        torch.use_deterministic_algorithms(prev[1], warn_only=prev[2])


def _torch_gen(ss: np.random.SeedSequence) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))


def _load_splits(cfg: AttentionConfig, ss: np.random.SeedSequence) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Stratified train / val / test split of scikit-learn's digits, images scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    s1, s2 = (int(s) for s in ss.generate_state(2))
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=cfg.test_fraction, stratify=y, random_state=s1)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=cfg.val_fraction / (1.0 - cfg.test_fraction), stratify=y_rest, random_state=s2)
    return {k: (torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(b)) for k, (a, b) in
            {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}.items()}


def _random_offload_masks(batch: int, channels: int, gen: torch.Generator) -> torch.Tensor:
    """Per sample: offload count k ~ U{0..C}, then a uniform k-subset. (B, C) bool, True = offloaded."""
    k = torch.randint(0, channels + 1, (batch, 1), generator=gen)
    ranks = torch.argsort(torch.argsort(torch.rand(batch, channels, generator=gen), dim=1), dim=1)
    return ranks < k


def _masked_ce(logits: torch.Tensor, y: torch.Tensor, use: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the samples where ``use`` is True (0 if none)."""
    per = F.cross_entropy(logits, y, reduction="none") * use.float()
    return per.sum() / use.float().sum().clamp(min=1.0)


def _train(model: SplitNet, data: dict, cfg: AttentionConfig, gen: torch.Generator) -> None:
    x, y = data["train"]
    n = x.shape[0]
    # Phase 1: everything, full maps; the remote tail sees the 8-bit map.
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            f, _ = model.features(x[idx])
            loss = F.cross_entropy(model.local_tail(f), y[idx]) + \
                F.cross_entropy(model.remote_tail(_fake_quant_ste(f)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    # Phase 2: head + attention frozen (so the ranking is final), tails on random masks.
    with torch.no_grad():
        f_all, _ = model.features(x)
    tails = list(model.local_tail.parameters()) + list(model.remote_tail.parameters())
    opt = torch.optim.Adam(tails, lr=cfg.lr)
    for _ in range(cfg.finetune_epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            f = f_all[idx]
            off = _random_offload_masks(len(idx), cfg.channels, gen)
            offf = off[:, :, None, None].float()
            local_in = f * (1.0 - offf)
            remote_in = dequantize_uint8(quantize_uint8(f * offf))  # zeros stay exactly 0
            loss = _masked_ce(model.local_tail(local_in), y[idx], (~off).any(dim=1)) + \
                _masked_ce(model.remote_tail(remote_in), y[idx], off.any(dim=1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def _offload_split(f: torch.Tensor, offload_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Local input, remote (dequantised) input and payload bytes per request for one channel set."""
    local_in = f.clone()
    local_in[:, offload_idx] = 0.0
    remote_in = torch.zeros_like(f)
    payload = quantize_uint8(f[:, offload_idx].contiguous())  # the tensor that goes over the link
    remote_in[:, offload_idx] = dequantize_uint8(payload)
    return local_in, remote_in, payload.payload_bytes_per_request()


def _choose_lambda(cfg: AttentionConfig, k: int, p_loc: torch.Tensor, p_rem: torch.Tensor, y: torch.Tensor) -> float:
    kept_share = 1.0 - k / cfg.channels
    if k == 0:
        return 1.0
    if k == cfg.channels:
        return 0.0
    if cfg.lambda_rule == "kept_share":
        return kept_share
    grid = [i / (cfg.lambda_steps - 1) for i in range(cfg.lambda_steps)]
    correct = [int(((lam * p_loc + (1.0 - lam) * p_rem).argmax(dim=1) == y).sum()) for lam in grid]
    best = max(correct)
    return min((lam for lam, c in zip(grid, correct) if c == best), key=lambda lam: (abs(lam - kept_share), lam))


@dataclass
class AttentionResult:
    """What one run measures: the curve plus the rankings it used."""

    curve: pd.DataFrame
    """Accuracy vs xi, columns :data:`CURVE_COLUMNS` (means over models and rankings)."""
    per_model: pd.DataFrame
    """One row per (model, xi, ranking, ranking_id): the individual evaluations."""
    channel_scores: np.ndarray
    """Mean channel-attention weight per channel over each model's training set, shape (n_models, C)."""
    attention_order: np.ndarray
    """Per model, channel indices lowest score first (the offload order), shape (n_models, C)."""
    feature_shape: tuple[int, int, int]
    """(C, H, W) of the split-point map."""
    split_sizes: tuple[int, int, int]
    """Images in (train, validation, test), the same for every model."""
    train_seconds: float = field(default=0.0)
    """Wall time of training, all models (informational; not part of any written file)."""


def _run_one_model(config: AttentionConfig, model_id: int, ss: np.random.SeedSequence):
    """Split, train, rank and evaluate one network; rows for ``per_model``."""
    ss_split, ss_init, ss_train, ss_rank = ss.spawn(4)
    data = _load_splits(config, ss_split)
    with torch.random.fork_rng(devices=[]):  # nn defaults draw from the global RNG; keep it untouched
        model = SplitNet(config.channels, config.hidden, config.reduction)
    _init_params(model, _torch_gen(ss_init))  # every weight is then redrawn from the seed
    t0 = time.perf_counter()
    _train(model, data, config, _torch_gen(ss_train))
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        _, m_c = model.features(data["train"][0])
        scores = m_c.mean(dim=0).double().numpy()
        attention_order = np.argsort(scores, kind="stable")
        f_val, _ = model.features(data["val"][0])
        f_test, _ = model.features(data["test"][0])
        rank_rng = np.random.default_rng(ss_rank)
        orders = {"attention": [attention_order],
                  "random": [rank_rng.permutation(config.channels) for _ in range(config.n_random_rankings)]}
        rows = _evaluate(model, config, model_id, orders, f_val, data["val"][1], f_test, data["test"][1])
    sizes = tuple(int(data[k][0].shape[0]) for k in ("train", "val", "test"))
    return rows, scores, attention_order, tuple(f_test.shape[1:]), sizes, train_s


def run_attention_experiment(config: AttentionConfig) -> AttentionResult:
    """Train ``n_models`` networks, rank their channels, measure accuracy vs xi (module docstring)."""
    rows, scores, orders, train_s = [], [], [], 0.0
    with _deterministic_cpu(config.num_threads):
        for model_id, ss in enumerate(np.random.SeedSequence(config.seed).spawn(config.n_models)):
            r, sc, order, shape, sizes, t = _run_one_model(config, model_id, ss)
            rows += r
            scores.append(sc)
            orders.append(order)
            train_s += t
    per_model = pd.DataFrame(rows, columns=list(PER_MODEL_COLUMNS))
    groups = per_model.groupby(["xi", "ranking"], sort=False)
    curve = pd.DataFrame({
        "xi": [xi for xi, _ in groups.groups],
        "ranking": [r for _, r in groups.groups],
        "accuracy": groups["accuracy"].mean().to_numpy(),
        "accuracy_loss": np.nan,
        "lambda": groups["lambda"].mean().to_numpy(),
        "offload_bytes": groups["offload_bytes"].first().to_numpy(),
        "n_test": sizes[2],
        "offloaded_channels": groups["offloaded_channels"].first().to_numpy(),
        "n_models": config.n_models,
        "n_rankings": groups["ranking_id"].nunique().to_numpy(),
        "accuracy_sd": groups["accuracy"].std(ddof=0).to_numpy(),
        "local_accuracy": groups["local_accuracy"].mean().to_numpy(),
        "remote_accuracy": groups["remote_accuracy"].mean().to_numpy(),
    }, columns=list(CURVE_COLUMNS))
    # Every (model, ranking) payload has the same size at one xi: check, don't assume.
    if (groups["offload_bytes"].nunique() != 1).any():
        raise AssertionError("offload payload size differs between rankings at one xi")
    ref = float(curve.loc[curve["xi"] == 0.0, "accuracy"].iloc[0])
    curve["accuracy_loss"] = ref - curve["accuracy"]
    return AttentionResult(curve, per_model, np.stack(scores), np.stack(orders), shape, sizes, train_s)


def _evaluate(model: SplitNet, cfg: AttentionConfig, model_id: int, orders: dict,
              f_val, y_val, f_test, y_test) -> list[list]:
    rows = []
    n_test = int(y_test.shape[0])
    for xi in cfg.xi_levels:
        k = offloaded_channels(xi, cfg.channels)
        for ranking in RANKINGS:
            for ranking_id, order in enumerate(orders[ranking]):
                idx = torch.as_tensor(np.asarray(order[:k], dtype=np.int64))
                probs, nbytes = {}, set()
                for split, f in (("val", f_val), ("test", f_test)):
                    local_in, remote_in, nb = _offload_split(f, idx)
                    probs[split] = (torch.softmax(model.local_tail(local_in), dim=1),
                                    torch.softmax(model.remote_tail(remote_in), dim=1))
                    nbytes.add(nb)
                lam = _choose_lambda(cfg, k, *probs["val"], y_val)
                p_loc, p_rem = probs["test"]
                fused = lam * p_loc + (1.0 - lam) * p_rem
                acc, acc_loc, acc_rem = (int((p.argmax(dim=1) == y_test).sum()) / n_test
                                         for p in (fused, p_loc, p_rem))
                (nb,) = nbytes
                rows.append([model_id, xi, ranking, ranking_id, acc, lam, nb, k, acc_loc, acc_rem])
    return rows


def measure_accuracy_vs_xi(config: AttentionConfig | None = None) -> pd.DataFrame:
    """Accuracy against the offload ratio xi for the attention and the random ranking.

    One row per (xi, ranking); columns :data:`CURVE_COLUMNS`. Deterministic: the
    same config gives a bit-identical frame.
    """
    return run_attention_experiment(config or AttentionConfig()).curve


# --------------------------------------------------------------------------- files
def curve_to_csv(curve: pd.DataFrame) -> str:
    """The CSV text with fixed float formatting (byte-reproducible)."""
    buf = io.StringIO()
    curve.to_csv(buf, index=False, float_format=CSV_FLOAT_FORMAT, lineterminator="\n")
    return buf.getvalue()


def load_accuracy_curve(path: str | Path = DEFAULT_CSV, ranking: str = "attention") -> pd.DataFrame:
    """Read a written curve (the simulator's entry point), one ranking, sorted by xi."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking={ranking!r} is invalid; allowed: {' | '.join(RANKINGS)}")
    df = pd.read_csv(path)
    missing = [c for c in CURVE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(CURVE_COLUMNS)}")
    return df[df["ranking"] == ranking].sort_values("xi").reset_index(drop=True)


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "numpy", "pandas", "scikit-learn"):
        try:
            out[pkg] = _md.version(pkg)
        except _md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def mid_xi_means(curve: pd.DataFrame, lo: float = 0.3, hi: float = 0.7) -> pd.DataFrame:
    """Mean of the accuracy columns over lo <= xi <= hi, one row per ranking."""
    mid = curve[(curve["xi"] >= lo - 1e-9) & (curve["xi"] <= hi + 1e-9)]
    return mid.groupby("ranking")[["accuracy", "local_accuracy", "remote_accuracy"]].mean()


def _summary_lines(curve: pd.DataFrame) -> list[str]:
    att = curve[curve["ranking"] == "attention"]
    worst = att.loc[att["accuracy_loss"].idxmax()]
    mid = mid_xi_means(curve)
    lines = [f"- largest accuracy loss with the attention ranking: {worst['accuracy_loss']:.4f} at xi = "
             f"{worst['xi']:.1f}; mean loss over all xi: {att['accuracy_loss'].mean():.4f}."]
    for col in ("accuracy", "local_accuracy", "remote_accuracy"):
        lines.append(f"- mean `{col}` over 0.3 <= xi <= 0.7: attention {mid.loc['attention', col]:.4f}, "
                     f"random {mid.loc['random', col]:.4f}.")
    return lines


def _readme(result: AttentionResult, config: AttentionConfig, csv_name: str, command: str) -> str:
    c, h, w = result.feature_shape
    lines = [
        "# DVFO spatial-channel attention: measured accuracy vs offload ratio xi",
        "",
        "Generated by `bench/world/attention.py`; do not edit by hand. Regenerate with",
        "",
        f"    {command}",
        "",
        "Provenance",
        "",
        "- source: measured (this suite trains the network itself; nothing typed in).",
        "- dataset: scikit-learn `load_digits` (UCI optical recognition of handwritten digits,",
        "  1797 8x8 images, 10 classes; ships inside scikit-learn, no download);",
        "  stratified split train {} / validation {} / test {} images, drawn anew for each".format(*result.split_sizes),
        f"  of the {config.n_models} independently trained networks the curve averages over.",
        "- method: DVFO (Zhang et al., arXiv 2306.01811, IEEE TMC 2024; IPSN 2023 poster) as",
        "  described in docs/papers.md; CBAM attention (Woo et al., ECCV 2018); every other detail",
        "  is a suite choice documented in the `bench.world.attention` module docstring.",
        f"- split-point feature map: C x H x W = {c} x {h} x {w}; offloaded channels are",
        f"  quantised to uint8, so offload_bytes = round(xi*C)*H*W = round(xi*{c})*{h * w}",
        "  (payload only; the 8-byte scale/zero-point header is not counted).",
        f"- seed: {config.seed}; library versions: "
        + ", ".join(f"{k} {v}" for k, v in _versions().items()) + ".",
        "- determinism: CPU, `torch.use_deterministic_algorithms(True)`, "
        f"{config.num_threads} thread(s); the CSV is byte-identical across reruns on one machine",
        "  (floats written with a fixed format).",
        "",
        "Summary (computed from the CSV rows at write time)",
        "",
        *_summary_lines(result.curve),
        "",
        "Configuration (`AttentionConfig`, also in the `.meta.json` sidecar):",
        "",
        "```json",
        json.dumps(config.to_dict(), indent=2),
        "```",
        "",
        "Files",
        "",
        f"- `{csv_name}`: one row per (xi, ranking). `ranking=attention` ranks channels by",
        "  the mean channel-attention weight over the training set; `ranking=random` is the",
        f"  control ({config.n_random_rankings} random permutations per network). `accuracy` is the",
        f"  mean over the {config.n_models} networks (x rankings), `accuracy_sd` the spread of the",
        "  single evaluations. `lambda` is the fusion weight of the local prediction, chosen",
        f"  by rule `{config.lambda_rule}` (validation split, never test). `accuracy_loss` is",
        "  accuracy at xi = 0 (all local) minus accuracy at xi (negative where fusing both",
        "  tails beats the local tail alone). `local_accuracy` / `remote_accuracy`: each tail",
        "  alone on its channels.",
        "- `channel_scores.csv`: per network, the attention score of every channel and its",
        "  offload rank (0 = offloaded first).",
        "- `accuracy_vs_xi.meta.json`: configuration, split sizes, library versions, command.",
        "",
    ]
    return "\n".join(lines)


def write_outputs(csv_path: str | Path, config: AttentionConfig | None = None,
                  command: str = "python -m bench.world.attention --write data/dvfo/accuracy_vs_xi.csv") -> AttentionResult:
    """Measure and write the curve, ``channel_scores.csv``, a ``.meta.json`` sidecar and README.md."""
    config = config or AttentionConfig()
    result = run_attention_experiment(config)
    csv_path = Path(csv_path)
    out_dir = csv_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path.write_text(curve_to_csv(result.curve), encoding="utf-8")
    score_rows = []
    for m, (sc, order) in enumerate(zip(result.channel_scores, result.attention_order)):
        rank = np.empty(config.channels, dtype=np.int64)
        rank[order] = np.arange(config.channels)
        score_rows.append(pd.DataFrame({"model": m, "channel": np.arange(config.channels),
                                        "attention_score": sc, "offload_rank": rank}))
    (out_dir / "channel_scores.csv").write_text(curve_to_csv(pd.concat(score_rows, ignore_index=True)),
                                                encoding="utf-8")
    meta = {"config": config.to_dict(), "feature_shape_chw": list(result.feature_shape),
            "split_sizes_train_val_test": list(result.split_sizes), "versions": _versions(),
            "command": command, "source": "measured"}
    csv_path.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (out_dir / "README.md").write_text(_readme(result, config, csv_path.name, command), encoding="utf-8")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.world.attention", description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="CSV", help="write the curve (and README, scores, sidecar) here")
    parser.add_argument("--seed", type=int, default=AttentionConfig.seed, help="the one seed (default %(default)s)")
    args = parser.parse_args(argv)
    config = AttentionConfig(seed=args.seed)
    if args.write:
        command = "python -m bench.world.attention --write " + args.write
        if args.seed != AttentionConfig.seed:
            command += f" --seed {args.seed}"
        result = write_outputs(args.write, config, command)
    else:
        result = run_attention_experiment(config)
    print(result.curve.to_string(index=False))
    print(f"trained {config.n_models} networks in {result.train_seconds:.1f} s", file=sys.stderr)
    for m, (sc, order) in enumerate(zip(result.channel_scores, result.attention_order)):
        print(f"model {m} channel scores (offloaded first): "
              + ", ".join(f"{c}:{sc[c]:.3f}" for c in order), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
