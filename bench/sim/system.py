"""Build the simulator's (workload x action) tables from device profiles and workloads.

Two action sets share one core (:mod:`bench.sim.core`):

* :func:`autoscale_system` - AutoScale's execution targets: every DVFS level of
  every local target (CPU, GPU, DSP), the connected peer, and the cloud over each
  radio of the edge device;
* :func:`dvfo_system` - DVFO's (f_CPU, f_GPU, f_MEM, xi): the head of the DNN runs
  on the edge GPU, a share xi of the feature maps at the split point is quantised
  to 8 bits and sent to the cloud, which runs the tail on them while the edge runs
  the tail on the rest.

Suite choices (documented, configurable by arguments):

* the work of a workload is its operator-class features (FLOPs, fp32 bytes and
  kernels per class, ``data/workloads/op_classes.csv``), costed by each target's
  layer-aware model (:mod:`bench.world.profiles`; the target scales bytes by its
  precision); a workloads table without those features falls back to one dense
  class of ``flops`` and ``weight_bytes + activation_bytes_total``;
* an image request uploads the input as 8-bit pixels (fp32 tensor bytes / 4); a
  text request uploads its token tensor as is; the result downloaded is
  ``output_bytes``;
* accuracy: fp32 and fp16 targets keep ``acc_fp32``; int8 targets use
  ``acc_int8``; accuracies are fractions (the workloads table stores percent);
* an INT8 target (the phone's DSP) runs only DNNs for which an INT8 model exists
  (torchvision publishes its accuracy); the others run as a float graph where the
  profile's float path says (``data/calibration/float_path.yaml``: the SD845's NNAPI
  runs them on the Adreno in fp32), else on the CPU, at that target's highest level -
  so the DSP is not a free lunch for every DNN; such a request also occupies that
  target's queue (``ActionTables.runs_on``), not the DSP's;
* DVFO (inputs in ``data/dvfo/model.yaml``, each sourced or ``assumed:``):
  ``host_flop_share`` of the FLOPs (pre/post-processing, host operators) run on
  the CPU at f_CPU, the rest on the GPU at (f_GPU, f_MEM); the tail's local and
  remote FLOPs and bytes scale linearly with (1 - xi) and xi; the split point is
  the interior partition point with the smallest cut tensor among those before
  ``head_max_flop_fraction`` of the FLOPs; offloaded feature maps are quantised
  to ``feature_bits`` and divided by ``compression_ratio``; accuracy loss vs xi
  comes from the measured curve ``data/dvfo/accuracy_vs_xi.csv`` (column
  ``accuracy_loss``, a fraction), rows of the ``accuracy_ranking`` ranking
  (``attention``; ``random`` is the control, an ablation), linearly interpolated;
* a timed-out offload (see :mod:`bench.sim.core`) falls back to the CPU at its top
  level (AutoScale) or to the same frequencies with xi = 0 (DVFO);
  ``offload_timeout_ms`` is per app class (the workload's ``domain``).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd


from bench.errors import DataFileError
from bench.world.float_path import float_target, load_float_paths
from bench.world.network import load_link
from bench.paths import DATA_DIR
from bench.validate import read_yaml
from bench.world.profiles import OP_CLASSES, PRECISION_BYTES, DeviceProfile, Target, Work, load_profile
from bench.world.scenarios import InterferenceModel, load_interference_model
from bench.sim.core import ActionTables, Route, SimConstants, Simulator, load_sim_constants, load_thermal_model

ACCURACY_CURVE = DATA_DIR / "dvfo" / "accuracy_vs_xi.csv"
DVFO_MODEL = DATA_DIR / "dvfo" / "model.yaml"
RANKINGS = ("attention", "random")


class DVFOModelError(DataFileError):
    """``data/dvfo/model.yaml`` is malformed; the message names the key, the value and what is allowed."""


def load_dvfo_model(path: str | Path = DVFO_MODEL) -> dict:
    """DVFO's model inputs (values only; sources stay in the file), checked."""
    where = Path(path).name
    data = read_yaml(path, DVFOModelError)
    keys = {"host_flop_share": (0.0, 1.0), "head_max_flop_fraction": (0.0, 1.0), "feature_bits": (1, 32),
            "compression_ratio": (1e-9, np.inf), "accuracy_ranking": None}
    if not isinstance(data, dict) or set(data) != set(keys):
        raise DVFOModelError(f"{where}: keys {sorted(data) if isinstance(data, dict) else data!r}; "
                             f"allowed (all required): {sorted(keys)}")
    out = {}
    for k, rng in keys.items():
        e = data[k]
        if not isinstance(e, dict) or set(e) != {"value", "source"} or not str(e["source"]).strip():
            raise DVFOModelError(f"{where}.{k}: expected {{value, source}} with a non-empty source, got {e!r}")
        v = e["value"]
        if rng is None:
            if v not in RANKINGS:
                raise DVFOModelError(f"{where}.{k}: {v!r}; allowed: {list(RANKINGS)}")
        elif not isinstance(v, (int, float)) or isinstance(v, bool) or not (rng[0] <= v <= rng[1]):
            raise DVFOModelError(f"{where}.{k}: {v!r}; allowed: a number in [{rng[0]}, {rng[1]}]")
        out[k] = v
    return out


def _capped_index(levels: np.ndarray, cap_fraction: float) -> np.ndarray:
    """For each level, the index of the level run under a thermal cap (the highest not above the cap)."""
    levels = np.asarray(levels, dtype=float)
    allowed = np.flatnonzero(levels <= cap_fraction * levels.max() + 1e-9)
    top = int(allowed[np.argmax(levels[allowed])]) if len(allowed) else int(np.argmin(levels))
    return np.where(levels > levels[top], top, np.arange(len(levels)))


def _timeouts(wl: pd.DataFrame, constants: SimConstants) -> np.ndarray:
    """Offload timeout (ms) per workload: its app class is the workload's domain (vision; anything else: text)."""
    t = constants.offload_timeout_ms
    return np.array([t["vision"] if str(d) == "vision" else t["text"] for d in wl["domain"]], dtype=float)
_WORKLOAD_COLUMNS = ("workload", "domain", "flops", "weight_bytes", "activation_bytes_total", "input_bytes",
                     "output_bytes", "n_conv", "n_fc", "n_recurrent", "n_attention", "acc_fp32", "acc_int8")


def _profile(p: DeviceProfile | str | Path | None) -> DeviceProfile | None:
    return p if (p is None or isinstance(p, DeviceProfile)) else load_profile(p)


_FEATURE_COLUMNS = tuple(f"{c}_{f}" for c in OP_CLASSES for f in ("flops", "bytes", "kernels"))


def _workloads(df: pd.DataFrame | None, op_classes: pd.DataFrame | None = None) -> pd.DataFrame:
    """The workloads table with its op-class feature columns joined on (NaN where a workload has none)."""
    if df is None:
        from bench.world.workloads import load_workloads
        df = load_workloads()
    missing = [c for c in _WORKLOAD_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"workloads table lacks column(s) {missing}; needed: {list(_WORKLOAD_COLUMNS)}")
    df = df.reset_index(drop=True)
    if all(c in df.columns for c in _FEATURE_COLUMNS):
        return df
    if op_classes is None:
        from bench.world.opclasses import load_op_classes
        op_classes = load_op_classes()
    feats = op_classes.rename(columns={"model": "workload"})[["workload", *_FEATURE_COLUMNS]]
    return df.drop(columns=[c for c in _FEATURE_COLUMNS if c in df.columns]).merge(feats, on="workload", how="left")


def _work(row: pd.Series) -> Work:
    """A workload's op-class work; one dense class of its FLOPs and bytes where no features are known."""
    if all(np.isfinite(float(row[c])) for c in _FEATURE_COLUMNS):
        return Work.from_features(row)
    return Work.aggregate(float(row["flops"]), float(row["weight_bytes"] + row["activation_bytes_total"]))


def _work_matrix(wl: pd.DataFrame) -> Work:
    """All workloads' work as (W, 1) arrays, for (workload x action) tables."""
    works = [_work(r) for _, r in wl.iterrows()]
    col = lambda get: {c: np.array([float(get(w)[c]) for w in works])[:, None] for c in OP_CLASSES}  # noqa: E731
    return Work(col(lambda w: w.flops), col(lambda w: w.bytes), col(lambda w: w.kernels))


def subsample_levels(levels: np.ndarray, k: int | None) -> np.ndarray:
    """``k`` evenly spread levels including the lowest and highest (all when k is None)."""
    levels = np.asarray(levels, dtype=float)
    if k is None or k >= len(levels):
        return levels
    if k < 1:
        raise ValueError(f"number of levels must be >= 1, got {k}")
    if k == 1:
        return levels[-1:]
    return levels[np.unique(np.round(np.linspace(0, len(levels) - 1, k)).astype(int))]


def _mem_bytes(row: pd.Series, precision: str) -> float:
    return float(row["weight_bytes"] + row["activation_bytes_total"]) * PRECISION_BYTES[precision]


def _model_parts(t: Target, work: Work, f, fm) -> tuple[np.ndarray, np.ndarray]:
    """(CPU-sensitive ms, memory-sensitive ms) of the target's model, without the fixed term.

    Compute-bound classes and the per-kernel launch cost (host-side dispatch) are
    CPU-sensitive; memory-bound classes are memory-sensitive.
    """
    comp, mem, overhead = t.parts_ms(work, f, fm)
    return comp + (overhead - t.fixed_ms), mem


def _accuracy(row: pd.Series, precision: str) -> tuple[float, float]:
    """(accuracy fraction, loss fraction vs fp32) of a workload at a precision."""
    fp32 = float(row["acc_fp32"]) / 100.0
    if precision != "int8":
        return fp32, 0.0
    int8 = float(row["acc_int8"]) / 100.0
    if not np.isfinite(int8):  # no INT8 model: the request ran as a float graph (float path above)
        return fp32, 0.0
    return int8, max(fp32 - int8, 0.0) if np.isfinite(fp32) else 0.0


def has_int8_model(row: pd.Series) -> bool:
    """Whether an INT8 model of the workload exists (torchvision publishes its accuracy)."""
    return bool(np.isfinite(float(row["acc_int8"])))


def _upload_bytes(row: pd.Series, vision_bits: float = 8.0) -> float:
    """Bytes an offload uploads: an image as ``vision_bits``-bit values (the fp32 tensor has 32), text as is."""
    return float(row["input_bytes"]) * (vision_bits / 32.0 if str(row["domain"]) == "vision" else 1.0)


class System:
    """A built simulator plus what was used to build it (profiles, workloads)."""

    def __init__(self, sim: Simulator, workloads: pd.DataFrame, edge: DeviceProfile, extras: Mapping | None = None):
        self.sim = sim
        self.workloads = workloads
        self.edge = edge
        self.extras = dict(extras or {})


def _links_and_routes(edge: DeviceProfile, peer: DeviceProfile | None, cloud_radios: Sequence[str]):
    names = list(dict.fromkeys(["wifi", "lte"] + list(edge.radios)))
    links = [load_link(n) for n in names]
    routes = [Route(f"cloud_{r}", names.index(r), links[names.index(r)].rtt_ms) for r in cloud_radios]
    if peer is not None and "wifi" in edge.radios:
        j = names.index("wifi")
        routes.append(Route("peer", j, links[j].lan_rtt_ms))
    return links, routes


def autoscale_system(edge="phone_sd845", cloud="cloud_rtx3080", peer="peer_laptop", workloads: pd.DataFrame | None = None,
                     max_levels_per_target: int | None = None, interference: InterferenceModel | None = None,
                     **sim_kwargs) -> System:
    """AutoScale's action set over ``edge`` (+ ``peer``) (+ ``cloud``) (see module docstring)."""
    edge, cloud, peer = _profile(edge), _profile(cloud), _profile(peer)
    wl = _workloads(workloads)
    links, routes = _links_and_routes(edge, peer, list(edge.radios) if cloud is not None else [])
    rows: list[dict] = []
    for name, t in edge.targets.items():
        for f in subsample_levels(t.freq_mhz, max_levels_per_target):
            rows.append({"name": f"{name}@{f:g}", "target": name, "kind": "local", "freq_mhz": f,
                         "mem_freq_mhz": float(t.mem_freq_mhz[-1]), "route": -1, "precision": t.precision})
    for qi, r in enumerate(routes):
        remote = peer if r.name == "peer" else cloud
        rt = remote.primary_target
        rows.append({"name": r.name, "target": "peer" if r.name == "peer" else "cloud", "kind": "offload",
                     "freq_mhz": float(rt.freq_mhz[-1]), "mem_freq_mhz": float(rt.mem_freq_mhz[-1]), "route": qi,
                     "precision": rt.precision})
    actions = pd.DataFrame(rows)
    W, A = len(wl), len(actions)
    z = lambda: np.zeros((W, A))  # noqa: E731
    pre, pre_cpu, pre_mem, pre_gpu, p_local = z(), z(), z(), z(), z()
    up_bits, down_bits, remote_ms, remote_p, acc, loss = z(), z(), z(), z(), z(), z()
    offloads = np.zeros((W, A), dtype=bool)
    runs_on = np.full((W, A), "", dtype=object)  # the local target that runs (and queues) each request
    it = interference or load_interference_model()
    constants = sim_kwargs.pop("constants", None) or load_sim_constants()
    for wi, row in wl.iterrows():
        for ai, act in actions.iterrows():
            if act["kind"] == "local":
                t, f, fm = edge.targets[act["target"]], act["freq_mhz"], act["mem_freq_mhz"]
                if t.precision == "int8" and not has_int8_model(row):
                    # No INT8 model exists for this DNN: the runtime runs the float graph where the profile's
                    # float path says (bench/world/float_path.py; the CPU where none is given), at its top level.
                    t, _why = float_target(edge, act["target"], load_float_paths())
                    f, fm = float(t.freq_mhz[-1]), float(t.mem_freq_mhz[-1])
                # it occupies the processor that runs it (the float path's host keeps its name), not the DSP
                runs_on[wi, ai] = t.name
                work = _work(row)
                lat, power, _src = t.estimate(row["workload"], work, f, fm)
                comp, memt = _model_parts(t, work, f, fm)
                scale = lat / float(t.work_latency_ms(work, f, fm))
                coupling = 1.0 if t.kind == "cpu" else it.accel_cpu_coupling
                pre[wi, ai] = lat
                pre_cpu[wi, ai] = comp * scale * coupling
                pre_mem[wi, ai] = memt * scale
                # a GPU-bound co-runner (game, camera pipeline) slows the GPU's compute, not the CPU's or DSP's
                pre_gpu[wi, ai] = comp * scale if t.kind == "gpu" else 0.0
                p_local[wi, ai] = power if np.isfinite(power) else float(t.power_w(f, fm))
                acc[wi, ai], loss[wi, ai] = _accuracy(row, t.precision)
            else:
                remote = (peer if act["target"] == "peer" else cloud).primary_target
                lat, power, _src = remote.estimate(row["workload"], _work(row))
                offloads[wi, ai] = True
                up_bits[wi, ai] = _upload_bytes(row, constants.vision_upload_bits_per_value) * 8
                down_bits[wi, ai] = float(row["output_bytes"]) * 8
                remote_ms[wi, ai] = lat
                remote_p[wi, ai] = power if np.isfinite(power) else float(remote.power_w())
                acc[wi, ai], loss[wi, ai] = _accuracy(row, remote.precision)
    # a timed-out offload runs on the fallback target at its top level (data/sim/model.yaml)
    fb_target = constants.fallback_target if constants.fallback_target in edge.targets else next(iter(edge.targets))
    fb_rows = actions.index[(actions["kind"] == "local") & (actions["target"] == fb_target)]
    fb_action = int(actions.loc[fb_rows, "freq_mhz"].idxmax())
    fallback = np.where(actions["kind"].to_numpy() == "offload", fb_action, -1).astype(np.int64)
    # thermal throttling: each local target's levels above the cap run at the highest level under it
    thermal = sim_kwargs.pop("thermal", None) or load_thermal_model(edge.kind)
    throttle_to = np.arange(len(actions), dtype=np.int64)
    if thermal is not None:
        for name in edge.targets:
            rows = actions.index[(actions["kind"] == "local") & (actions["target"] == name)].to_numpy()
            if len(rows):
                throttle_to[rows] = rows[_capped_index(actions.loc[rows, "freq_mhz"].to_numpy(), thermal.cap_fraction)]
    tables = ActionTables(tuple(wl["workload"]), actions, pre, pre_cpu, pre_mem, z(), z(), z(), p_local, offloads,
                          actions["route"].to_numpy(dtype=np.int64), up_bits, down_bits, remote_ms, remote_p, acc, loss,
                          pre_gpu_ms=pre_gpu, par_gpu_ms=z(), timeout_ms=_timeouts(wl, constants), fallback=fallback,
                          throttle_to=throttle_to, runs_on=runs_on)
    sim = Simulator(tables, links, routes, it, edge.idle_power_w, constants=constants, thermal=thermal, **sim_kwargs)
    return System(sim, wl, edge, {"cloud": cloud, "peer": peer})


# --------------------------------------------------------------------------- DVFO

def load_accuracy_curve(curve: pd.DataFrame | str | Path | None = None, ranking: str = "attention") -> pd.DataFrame:
    """The measured accuracy-vs-xi curve (columns ``xi, accuracy, accuracy_loss``; loss a fraction).

    A curve with a ``ranking`` column (the shipped one: ``attention`` and the ``random``
    control) is reduced to the rows of ``ranking``.
    """
    if ranking not in RANKINGS:
        raise ValueError(f"accuracy ranking {ranking!r} is invalid; allowed: {list(RANKINGS)}")
    if curve is None:
        curve = ACCURACY_CURVE
    if not isinstance(curve, pd.DataFrame):
        path = Path(curve)
        if not path.exists():
            raise FileNotFoundError(f"DVFO accuracy-vs-xi curve {path} does not exist; it is measured by the DVFO "
                                    f"attention stage (or pass accuracy_curve=<DataFrame or CSV path>)")
        curve = pd.read_csv(path)
    if "ranking" in curve.columns:
        if ranking not in set(curve["ranking"]):
            raise ValueError(f"accuracy curve has no rows with ranking {ranking!r}; it has {sorted(set(curve['ranking']))}")
        curve = curve[curve["ranking"] == ranking]
    if curve["xi"].duplicated().any():
        raise ValueError("accuracy curve has duplicate xi rows; give one ranking's rows (column 'ranking')")
    missing = [c for c in ("xi", "accuracy_loss") if c not in curve.columns]
    if missing:
        raise ValueError(f"accuracy curve lacks column(s) {missing}; needed: ['xi', 'accuracy', 'accuracy_loss']")
    curve = curve.sort_values("xi").reset_index(drop=True)
    if curve["xi"].min() > 0 or curve["xi"].max() < 1:
        raise ValueError("accuracy curve must cover xi from 0 to 1")
    if (curve["accuracy_loss"].abs() > 1).any():
        raise ValueError("accuracy_loss must be a fraction (0.01 = one percentage point), values found above 1")
    return curve


def choose_split(parts: pd.DataFrame, total_flops: float, head_max_flop_fraction: float = 0.5) -> pd.Series:
    """The interior partition point with the smallest cut tensor before ``head_max_flop_fraction`` of the FLOPs."""
    parts = parts.sort_values("point")
    interior = parts.iloc[1:-1]
    interior = interior[interior["flops_before"] <= head_max_flop_fraction * total_flops]
    if interior.empty:
        return parts.iloc[0]
    return interior.loc[interior["activation_bytes"].idxmin()]


def dvfo_system(edge="jetson_xavier_nx", cloud="cloud_rtx3080", workloads: pd.DataFrame | None = None,
                partitions: pd.DataFrame | None = None, accuracy_curve=None,
                n_cpu_levels: int | None = 4, n_gpu_levels: int | None = 5, n_mem_levels: int | None = 3,
                xi_levels: Sequence[float] | int = 6, host_flop_share: float | None = None,
                head_max_flop_fraction: float | None = None, radio: str | None = None,
                interference: InterferenceModel | None = None, accuracy_ranking: str | None = None,
                feature_bits: float | None = None, compression_ratio: float | None = None, **sim_kwargs) -> System:
    """DVFO's action set (see module docstring). Arguments left None take ``data/dvfo/model.yaml``."""
    model = load_dvfo_model()
    host_flop_share = model["host_flop_share"] if host_flop_share is None else host_flop_share
    head_max_flop_fraction = model["head_max_flop_fraction"] if head_max_flop_fraction is None else head_max_flop_fraction
    accuracy_ranking = model["accuracy_ranking"] if accuracy_ranking is None else accuracy_ranking
    feature_bits = model["feature_bits"] if feature_bits is None else feature_bits
    compression_ratio = model["compression_ratio"] if compression_ratio is None else compression_ratio
    constants = sim_kwargs.pop("constants", None) or load_sim_constants()
    edge, cloud = _profile(edge), _profile(cloud)
    wl = _workloads(workloads)
    if partitions is None:
        from bench.world.workloads import load_partitions
        partitions = load_partitions()
    curve = load_accuracy_curve(accuracy_curve, accuracy_ranking)
    for key in ("cpu", "gpu"):
        if key not in edge.targets:
            raise ValueError(f"DVFO needs an edge profile with 'cpu' and 'gpu' targets; {edge.name} has {list(edge.targets)}")
    cpu, gpu = edge.targets["cpu"], edge.targets["gpu"]
    radio = radio or (edge.radios[0] if edge.radios else "wifi")
    links, routes = _links_and_routes(edge, None, [radio])
    xis = np.linspace(0.0, 1.0, int(xi_levels)) if np.isscalar(xi_levels) else np.asarray(xi_levels, dtype=float)
    if xis.min() < 0 or xis.max() > 1:
        raise ValueError("xi levels must lie in [0, 1]")
    fc_l, fg_l = subsample_levels(cpu.freq_mhz, n_cpu_levels), subsample_levels(gpu.freq_mhz, n_gpu_levels)
    fm_l = subsample_levels(gpu.mem_freq_mhz, n_mem_levels)
    grid = list(itertools.product(range(len(fc_l)), range(len(fg_l)), range(len(fm_l)), range(len(xis))))
    actions = pd.DataFrame([{"name": f"cpu{fc_l[i]:g}_gpu{fg_l[j]:g}_mem{fm_l[k]:g}_xi{xis[m]:.2f}",
                             "i_cpu": i, "i_gpu": j, "i_mem": k, "i_xi": m, "cpu_mhz": fc_l[i], "gpu_mhz": fg_l[j],
                             "mem_mhz": fm_l[k], "xi": xis[m], "route": 0 if xis[m] > 0 else -1} for i, j, k, m in grid])
    fc = actions["cpu_mhz"].to_numpy()[None, :]
    fg = actions["gpu_mhz"].to_numpy()[None, :]
    fm = actions["mem_mhz"].to_numpy()[None, :]
    xi = actions["xi"].to_numpy()[None, :]
    it = interference or load_interference_model()
    flops = wl["flops"].to_numpy(dtype=float)[:, None]
    work = _work_matrix(wl)
    heads, cuts = [], []
    for _, r in wl.iterrows():
        p = partitions[partitions["workload"] == r["workload"]]
        if p.empty:  # no partition points: the cut is the input itself
            heads.append(0.0)
            cuts.append(float(r["input_bytes"]))
        else:
            s = choose_split(p, float(r["flops"]), head_max_flop_fraction)
            heads.append(float(s["flops_before"]))
            cuts.append(float(s["activation_bytes"]))
    head_frac = (np.array(heads) / wl["flops"].to_numpy(dtype=float))[:, None]
    c = host_flop_share

    def local(frac):
        """(time, cpu-, mem-, gpu-sensitive parts, energy) of running ``frac`` of the DNN locally, no fixed term.

        A CPU-bound co-runner slows the host share (and the GPU's CPU-side launch share, the
        coupling); a memory-bound one the memory-bound part; a GPU-bound one the GPU's compute.
        """
        g_comp, g_mem = _model_parts(gpu, work.scaled(frac * (1 - c)), fg, fm)
        c_comp, _ = _model_parts(cpu, Work.aggregate(flops * frac * c, 0.0), fc, fm)
        t_gpu, t_cpu = g_comp + g_mem, c_comp
        energy = gpu.power_w(fg, fm) * t_gpu + cpu.power_w(fc) * t_cpu
        return t_gpu + t_cpu, c_comp + it.accel_cpu_coupling * g_comp, g_mem, g_comp, energy

    fixed = gpu.latency_ms(0.0, 0.0, fg, fm) + cpu.latency_ms(0.0, 0.0, fc)
    pre_t, pre_c, pre_m, pre_g, pre_e = local(head_frac)
    par_t, par_c, par_m, par_g, par_e = local((1 - head_frac) * (1 - xi))
    pre_t = pre_t + fixed
    pre_e = pre_e + gpu.power_w(fg, fm) * gpu.latency_ms(0.0, 0.0, fg, fm) + cpu.power_w(fc) * cpu.latency_ms(0.0, 0.0, fc)
    W, A = len(wl), len(actions)
    power = (pre_e + par_e) / np.maximum(pre_t + par_t, 1e-12)
    offloads = np.broadcast_to(xi > 0, (W, A)).copy()
    rt = cloud.primary_target
    remote_ms = rt.work_latency_ms(work.scaled((1 - head_frac) * xi)) * offloads
    remote_p = np.broadcast_to(rt.power_w(), (W, A)).copy()
    # fp32 feature maps quantised to feature_bits, then compressed
    up_bits = np.array(cuts)[:, None] * (feature_bits / 32.0) * 8 * xi / compression_ratio
    down_bits = wl["output_bytes"].to_numpy(dtype=float)[:, None] * 8 * offloads
    loss = np.broadcast_to(np.interp(xi, curve["xi"], curve["accuracy_loss"]), (W, A)).copy()
    acc = wl["acc_fp32"].to_numpy(dtype=float)[:, None] / 100.0 - loss
    bc = lambda x: np.broadcast_to(x, (W, A)).copy()  # noqa: E731
    # a timed-out offload re-runs the whole DNN on the edge at the same frequencies (xi = 0)
    keys = list(zip(actions["i_cpu"], actions["i_gpu"], actions["i_mem"]))
    local_of = {k: i for i, (k, x) in enumerate(zip(keys, actions["xi"])) if x == 0}
    fallback = np.array([local_of.get(k, -1) if x > 0 else -1 for k, x in zip(keys, actions["xi"])], dtype=np.int64)
    # thermal throttling: CPU and GPU levels above the cap run at the highest level under it (f_MEM and xi kept)
    thermal = sim_kwargs.pop("thermal", None) or load_thermal_model(edge.kind)
    throttle_to = np.arange(len(actions), dtype=np.int64)
    if thermal is not None:
        ci, gi = _capped_index(fc_l, thermal.cap_fraction), _capped_index(fg_l, thermal.cap_fraction)
        index_of = {k: i for i, k in enumerate(zip(actions["i_cpu"], actions["i_gpu"], actions["i_mem"], actions["i_xi"]))}
        throttle_to = np.array([index_of[(ci[i], gi[j], k, m)] for (i, j, k, m) in index_of], dtype=np.int64)
    tables = ActionTables(tuple(wl["workload"]), actions, bc(pre_t), bc(pre_c), bc(pre_m), bc(par_t), bc(par_c),
                          bc(par_m), bc(power), offloads, actions["route"].to_numpy(dtype=np.int64),
                          bc(up_bits), bc(down_bits), bc(remote_ms), remote_p, bc(acc), loss,
                          pre_gpu_ms=bc(pre_g), par_gpu_ms=bc(par_g), timeout_ms=_timeouts(wl, constants),
                          fallback=fallback, throttle_to=throttle_to)
    sim = Simulator(tables, links, routes, it, edge.idle_power_w, constants=constants, thermal=thermal, **sim_kwargs)
    extras = {"cloud": cloud, "split_flops_before": np.array(heads), "split_bytes": np.array(cuts),
              "cpu_mhz": fc_l, "gpu_mhz": fg_l, "mem_mhz": fm_l, "xi": xis, "curve": curve,
              "host_flop_share": c, "head_max_flop_fraction": head_max_flop_fraction,
              "accuracy_ranking": accuracy_ranking, "feature_bits": feature_bits, "compression_ratio": compression_ratio}
    return System(sim, wl, edge, extras)
