"""The ``params.yaml`` schema and its loader.

Each section is a frozen dataclass whose fields carry a docstring (``doc``) and
their limits (``ge``/``le``/``choices``) in field metadata. :func:`load_params`
validates the whole file before any work starts: an unknown key, a wrong type
or an out-of-range value raises :class:`ParamsError` naming the key (as a dotted
path) and what is allowed. Later stages add their own section dataclass to
:class:`Params`. The learners' configs (in ``bench.policies``) carry their
limits the same way, in their own fields' metadata (:func:`bench.validate.bounded`):
a new field is one line with its range, and ``tests/test_config.py`` fails on a
number without one. ``Engine`` (where cells run) is a section here too, so this
module imports nothing from the pipeline it configures (``tests/test_layers.py``).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import os
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from bench.errors import BenchError, ConfigError, allowed_list, short
from bench.paths import PARAMS_FILE, REPO_ROOT
from bench.validate import bounded, read_yaml, safe_name

#: the built-in meters; what params.yaml accepts is :func:`adapter_names` (plugins included)
ADAPTERS = ("auto", "none", "rapl", "nvml", "jetson", "android", "replay")


def adapter_names() -> list[str]:
    """``auto``, ``none`` and every meter registered in ``hw.METERS`` (plugins included)."""
    import hw

    return ["auto", "none", *hw.METERS.names()]


def learner_names() -> list[str]:
    """Every learner registered in ``bench.policies.LEARNERS`` (plugins included)."""
    from bench.policies import LEARNERS

    return LEARNERS.names()


class ParamsError(ConfigError):
    """params.yaml is invalid; the message names the key and what is allowed."""


def spec(default: Any, doc: str, **limits: Any) -> Any:
    """A params.yaml field with its docstring and limits (:func:`bench.validate.bounded`; the keys are
    :data:`bench.validate.LIMIT_KEYS`), read by the validator and by ``params --describe``."""
    return bounded(default, doc=doc, **limits)


def _workload_names() -> list[str]:
    from bench.world.workloads import WORKLOADS  # lazy: keeps `bench.config` free of torch

    return sorted(WORKLOADS)


def _profile_names() -> list[str]:
    from bench.world.profiles import list_profiles

    return list_profiles()


@dataclass(frozen=True)
class ProfileParams:
    """Stage ``profile`` (notebooks/01_profile.ipynb): workload analysis and host measurement."""

    workloads: tuple[str, ...] = spec(
        ("mobilenet_v2", "resnet18", "resnet50", "efficientnet_b0", "inception_v3", "vit_b_16",
         "lstm_text", "transformer_text"),
        "DNN workloads to time on this host (names from bench.world.workloads.WORKLOADS).",
        choices=_workload_names, min_len=1)
    warmup: int = spec(2, "Untimed runs per workload before measuring (caches, allocator, lazy init).", ge=0, le=100)
    repeats: int = spec(10, "Minimum timed runs per workload; latency_ms is their median, latency_p95_ms the 95th "
                        "percentile. More runs follow until the median's 95% CI is within ci_rel (max_repeats cap).",
                        ge=1, le=10_000)
    max_repeats: int = spec(60, "Cap on timed runs per workload (measurement hygiene: repeats until the median is "
                            "tight or this cap).", ge=1, le=100_000)
    ci_rel: float = spec(0.02, "Stop timing a workload once the 95% confidence interval of its median latency is "
                         "within +-ci_rel of it.", ge=0.0, le=1.0)
    max_warmup: int = spec(30, "Cap on warm-up runs; warm-up ends earlier once three consecutive runs agree within "
                           "warmup_tol.", ge=0, le=10_000)
    warmup_tol: float = spec(0.05, "Relative spread (max/min - 1) of three consecutive warm-up runs that counts as "
                             "stable.", ge=0.0, le=10.0)
    noisy_cv: float = spec(0.10, "Robust coefficient of variation (IQR/1.349/median) of a workload's timings above "
                           "which the machine is reported noisy (trace metadata and notebook).", ge=0.0, le=10.0)
    class_runs: int = spec(8, "Hooked runs per workload that split its latency into operator classes for the host "
                           "fit.", ge=3, le=10_000)
    fit_quantile: float = spec(0.10, "Quantile of a workload's timed runs the host fit uses (other load only adds "
                               "time, so a low quantile estimates the machine's own cost; the trace keeps the median).",
                               ge=0.0, le=1.0)
    fit_on_cpu_time: bool = spec(True, "With threads 1, fit the inference thread's CPU time instead (other load "
                                 "that deschedules it cannot inflate it); the trace keeps wall-clock latency.")
    threads: int = spec(1, "torch intra-op threads for the host measurement; 0 keeps torch's default (all cores). "
                        "1 on a shared machine: more threads spin and stall when other processes hold the cores.",
                        ge=0, le=1024)
    adapter: str = spec("auto", "Energy meter for the host measurement: 'auto' picks the best one available "
                        "(nvml > rapl > jetson) and falls back to none; 'none' records latency only (meter: none, "
                        "energy NaN); 'replay' replays replay_log; a plugin meter by its registered name.",
                        choices=adapter_names)
    replay_log: str = spec("", "A recorded tegrastats log or samples .jsonl for adapter 'replay' (else empty); "
                           "a relative path is taken from the directory of params.yaml and must exist.")
    reference_profiles: tuple[str, ...] = spec(
        ("phone_sd845", "jetson_xavier_nx", "peer_laptop", "cloud_rtx3080"),
        "Shipped device profiles (data/profiles/*.yaml) to tabulate next to the host profile.",
        choices=_profile_names)

    def __post_init__(self):
        if (self.adapter == "replay") != bool(self.replay_log):
            raise ParamsError.at("params.yaml: profile.replay_log", "must be set exactly when profile.adapter is "
                                 f"'replay' (adapter={short(self.adapter)})", self.replay_log)


def _policy_names() -> list[str]:
    from bench.policies import REGISTRY

    return sorted(REGISTRY)


def _scenario_names() -> list[str]:
    from bench.world.scenarios import list_scenarios

    return list_scenarios()


def _scenario_families(names: list[str]) -> dict[str, str]:
    """Scenario name -> its pre-registered family (data/scenarios/*.yaml ``family``; default its name)."""
    from bench.world.scenarios import scenario_families

    return scenario_families(names)


def _autoscale_config():
    from bench.policies.autoscale import AutoScaleConfig

    return AutoScaleConfig


def _dvfo_config():
    from bench.policies.dvfo_config import DVFOConfig  # not bench.policies.dvfo: that imports torch (issue 25)

    return DVFOConfig


@dataclass(frozen=True)
class TrainRun:
    """One training run: a learner on a device profile."""

    learner: str = spec("autoscale", "Which learner to train (bench.policies.LEARNERS; plugins add names).",
                        choices=learner_names)
    profile: str = spec("phone_sd845", "Edge device profile it learns to schedule on: a name under data/profiles, "
                        "or the path of a profile YAML (relative to the repo root), e.g. "
                        "results/profile/host_profile.yaml from the profile stage.")

    def __post_init__(self):
        from bench.errors import DataFileError
        from bench.world.profiles import is_profile_path, list_profiles, load_profile, unmeasured_numbers

        if not is_profile_path(self.profile) and self.profile not in list_profiles():  # _build prefixes the run
            raise ValueError(f"profile = {self.profile!r} is not allowed; allowed values: {list_profiles()} "
                             f"or the path of a profile .yaml file")
        if is_profile_path(self.profile):
            from bench.world.profiles import resolve_profile

            try:
                warn_outside_repo("params.yaml: train.runs.*.profile", resolve_profile(self.profile),
                                  "its numbers become the simulated device")
            except DataFileError:
                pass  # not found: load_profile below says so in one line
        try:
            missing = unmeasured_numbers(load_profile(self.profile))
        except DataFileError as exc:
            raise ValueError(f"profile = {self.profile!r}: {exc}") from None
        if missing:
            raise ValueError(f"profile = {self.profile!r} has numbers that were not measured (NaN): {missing}; "
                             "give them values with a source (README, 'Bring your own device')")


def _default_runs() -> dict[str, TrainRun]:
    return {"autoscale_phone": TrainRun("autoscale", "phone_sd845"), "dvfo_jetson": TrainRun("dvfo", "jetson_xavier_nx")}


@dataclass(frozen=True)
class EvalSuite:
    """One comparison: a trained run against baselines on a set of scenarios (same devices as the run)."""

    run: str = spec("autoscale_phone", "A key of train.runs: the trained learner and the devices it was trained on.")
    policies: tuple[str, ...] = spec(("cpu_only", "cloud_only", "greedy_oracle"),
                                     "Policies compared (bench.policies registry); the run's learner is added.",
                                     choices=_policy_names, min_len=1)
    scenarios: tuple[str, ...] = spec(("wifi_strong",), "Scenarios (data/scenarios) every policy is run on; "
                                      "the learner may have trained on them.", choices=_scenario_names, min_len=1)
    heldout_scenarios: tuple[str, ...] = spec((), "Held-out scenarios every policy is also run on; the suite's "
                                              "learner may not train on them (checked against its scenarios).",
                                              choices=_scenario_names)


@dataclass(frozen=True)
class EvaluateParams:
    """Stage ``evaluate`` (notebooks/03_evaluate.ipynb): every policy x scenario x seed."""

    seeds: int = spec(5, "Evaluation episodes per (policy, scenario); their seeds derive from the top-level seed "
                      "and never coincide with training seeds.", ge=1, le=1000)
    steps: int = spec(0, "0 (the default, the shipped pipeline): every episode covers every step of its scenario "
                      "(the scenario's own `steps`). A positive value caps episodes, for CI-sized runs only.",
                      ge=0, le=100_000)
    workers: int = spec(0, "Parallel worker processes; 0 = one per CPU core.", ge=0, le=256)
    n_boot: int = spec(1000, "Bootstrap replicates for the 95% confidence intervals.", ge=0, le=100_000)
    headroom_threshold: float = spec(0.05, "A scenario whose headroom 1 - E_bound / E_best_static_dnn is below this "
                                     "is marked 'no room for learning' and not used to rank learners (docs/bound.md).",
                                     ge=0, le=1)
    capture_target: float = spec(0.70, "The share of a family's headroom (from the certified lower end) a learner "
                                 "should capture where that headroom is at least capture_target_headroom; README "
                                 "names the families where it does not (issue 23).", ge=0, le=1)
    capture_target_headroom: float = spec(0.10, "The headroom from which capture_target applies (issue 23).",
                                          ge=0, le=1)
    suites: dict[str, EvalSuite] = field(default_factory=dict, metadata={
        "doc": "Named comparisons (names: a letter, then letters, digits, '_' or '-'; they name output files).",
        "safe_keys": True})


@dataclass(frozen=True)
class TrainParams:
    """Stage ``train`` (notebooks/02_train.ipynb): one DVC stage per entry of ``runs``.

    ``autoscale`` and ``dvfo`` hold the learners' configs (bench.policies.autoscale.AutoScaleConfig,
    bench.policies.dvfo.DVFOConfig); their ``seed`` and device fields are set by the stage from the
    top-level seed and the run's profile.
    """

    runs: dict[str, TrainRun] = field(default_factory=_default_runs, metadata={
        "doc": "Named training runs (names: a letter, then letters, digits, '_' or '-'; each becomes "
               "results/train/NAME).", "safe_keys": True, "min_len": 1})
    curve_seeds: int = spec(3, "Seeds whose learning curves the report draws (mean and range); the first is the "
                            "trained policy, the others are trained only for their curves.", ge=1, le=20)
    autoscale: Any = field(default=None, metadata={"doc": "AutoScaleConfig fields (see its docstrings).",
                                                   "type": _autoscale_config})
    dvfo: Any = field(default=None, metadata={"doc": "DVFOConfig fields (see its docstrings).", "type": _dvfo_config})

    def __post_init__(self):
        for name in _LEARNER_CONFIGS:
            if getattr(self, name) is None:
                object.__setattr__(self, name, _LEARNER_CONFIGS[name]()())
            cfg = getattr(self, name)
            if cfg.seed != 0:
                raise ParamsError.at(f"params.yaml: train.{name}.seed", "learners take their seed from the top-level "
                                     f"'seed' (fanned out per run); remove train.{name}.seed", cfg.seed, "0 (absent)")


    def learner_config(self, learner: str) -> Any:
        """The config of ``learner``: train.autoscale / train.dvfo, a plugin learner's ``train.<name>``
        section, or (no section) its config class's defaults."""
        if learner in _LEARNER_CONFIGS:
            return getattr(self, learner)
        sections = getattr(self, "plugin_sections", {})
        if learner in sections:
            return sections[learner]
        from bench.policies import LEARNERS

        return LEARNERS[learner].config_class()()

    @staticmethod
    def _extra_sections() -> dict[str, type]:
        """Keys allowed besides the fields: one section per plugin learner, typed by its config class."""
        from bench.policies import LEARNERS

        return {name: spec.config_class() for name, spec in LEARNERS.items() if name not in _LEARNER_CONFIGS}


#: learners whose config is a field of ``train`` (train.autoscale, train.dvfo); a plugin learner's
#: section is ``train.<name>`` (``TrainParams._extra_sections``), or its config's defaults
_LEARNER_CONFIGS = {"autoscale": _autoscale_config, "dvfo": _dvfo_config}


@dataclass(frozen=True)
class SweepGrid:
    """One grid of a sweep: a learner trained on each profile under each config variant, then
    compared with ``policies`` on ``scenarios`` (every combination, ``sweep.seeds`` seeds each)."""

    learner: str = spec("autoscale", "Which learner to train (its env decides the action set).",
                        choices=learner_names)
    profiles: tuple[str, ...] = spec(("phone_sd845",), "Edge device profiles to train and evaluate on.",
                                     choices=_profile_names, min_len=1)
    configs: dict[str, Any] = field(default_factory=lambda: {"default": {}}, metadata={
        "doc": "Learner config variants: name -> overrides of train.<learner> (e.g. {eps_low: {epsilon_end: 0.05}}); "
               "an empty mapping trains params.yaml's config as it is. Names: a letter, then letters, digits, "
               "'_' or '-' (they name directories under results/sweep).", "safe_keys": True})
    policies: tuple[str, ...] = spec(("cpu_only", "cloud_only", "greedy_oracle"),
                                     "Policies compared (bench.policies registry); the learner is added.",
                                     choices=_policy_names, min_len=1)
    scenarios: tuple[str, ...] = spec(("wifi_strong",), "Scenarios every policy runs on.", choices=_scenario_names,
                                      min_len=1)

    def __post_init__(self):
        if not self.configs:
            raise ParamsError("params.yaml: sweep.grids.*.configs must name at least one variant (e.g. {default: {}})")
        for name, over in self.configs.items():
            if not isinstance(over, Mapping):
                raise ParamsError(f"params.yaml: sweep.grids.*.configs.{name} must be a mapping of learner fields "
                                  f"to values, got {over!r}")
        for key in ("profiles", "policies", "scenarios"):  # a repeat would run (and train) the same cells twice
            names = getattr(self, key)
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:  # ValueError: _build prefixes the grid's name
                raise ValueError(f"{key} lists {short(repeated)} more than once; allowed: each name at most once")

    @property
    def n_cells_per_seed(self) -> int:
        """Cells per evaluation seed: profiles x configs x (learner + other policies) x scenarios."""
        policies = 1 + sum(1 for p in self.policies if p != self.learner)
        return len(self.profiles) * len(self.configs) * policies * len(self.scenarios)


@dataclass(frozen=True)
class SweepParams:
    """Stage ``sweep`` (``python -m bench sweep``): a grid of profiles x learner configs x policies x
    scenarios x seeds, trained and evaluated on ``engine``; resumable. Off by default."""

    enabled: bool = spec(False, "Run the sweep. Off: the stage writes an empty table and a summary saying so.")
    seeds: int = spec(3, "Evaluation episodes per (profile, config, policy, scenario).", ge=1, le=10_000)
    steps: int = spec(200, "Requests per evaluation episode.", ge=10, le=100_000)
    grids: dict[str, SweepGrid] = field(default_factory=dict, metadata={
        "doc": "Named grids (names: a letter, then letters, digits, '_' or '-'; they name directories).",
        "safe_keys": True})

    def __post_init__(self):
        # bounded before anything is built: the driver holds every cell's definition in memory
        cells = {name: grid.n_cells_per_seed * self.seeds for name, grid in self.grids.items()}
        total = sum(cells.values())
        if total > MAX_SWEEP_CELLS:
            biggest = max(cells, key=cells.get)
            raise ParamsError(f"params.yaml: sweep: the grids expand to {total:,} cells (grid {biggest!r}: "
                              f"{cells[biggest]:,} = its profiles x configs x policies x scenarios x sweep.seeds "
                              f"{self.seeds}); allowed: at most {MAX_SWEEP_CELLS:,} (fewer seeds or a smaller grid)")


#: assumed: a bound on one sweep's cells. The driver keeps each cell's definition (~1 KB) and
#: the store one parquet file per cell; 2e5 cells are ~0.2 GB of definitions and a directory
#: a file system lists in seconds. A 2.2e7-cell grid used to die building its cell list.
MAX_SWEEP_CELLS = 200_000


@dataclass(frozen=True)
class TestbedParams:
    """Stage ``testbed`` (bench/testbed): shipped policies live on this machine vs the simulator.

    Off by default: it needs root, network namespaces, ``tc`` and ``stress-ng``. With ``enabled: false``
    the stage writes an empty table that says so; ``enabled: true`` runs every policy x scenario live.
    """

    enabled: bool = spec(False, "Run the live testbed (root, ip netns, tc, stress-ng); false writes an empty table.")
    policies: tuple[str, ...] = spec(("cpu_only", "cloud_only", "neurosurgeon", "random", "autoscale"),
                                     "Policies run live (registry names; oracle and hindsight statics excluded; "
                                     "autoscale is trained on the simulator twin of this host first).",
                                     choices=_policy_names)
    scenarios: tuple[str, ...] = spec(("wifi_strong", "wifi_weak", "cpu_corunner"),
                                      "Scenarios (data/scenarios); their mixes are restricted to `workloads`.",
                                      choices=_scenario_names)
    requests: int = spec(40, "Live requests per (policy, scenario).", ge=1, le=10_000)
    workloads: tuple[str, ...] = spec(("mobilenet_v2", "lstm_text"), "Workloads the edge and the server keep warm.",
                                      choices=_workload_names)
    threads: int = spec(1, "Torch threads of the edge and of the server.", ge=1, le=256)
    edge_cpus: tuple[int, ...] = spec((0,), "CPUs the edge and its stress-ng co-runners are pinned to.",
                                      ge=0, le=4095)
    server_cpus: tuple[int, ...] = spec((1,), "CPUs the server is pinned to.", ge=0, le=4095)
    corunners: bool = spec(True, "Run stress-ng co-runners following each scenario's interference trace.")
    autoscale_steps: int = spec(20_000, "AutoScale's training steps on the simulator twin.", ge=1, le=10_000_000)

    def __post_init__(self):
        from bench.policies import live_excluded

        excluded = live_excluded()  # registered with each policy (PolicyInfo.live)
        bad = [p for p in self.policies if p in excluded]
        if bad:
            raise ParamsError(f"params.yaml: testbed.policies: {bad} cannot run live on this host; "
                              f"excluded: {excluded}")


@dataclass(frozen=True)
class SensitivityParams:
    """Stage ``sensitivity`` (bench/pipeline/sensitivity.py, docs/sensitivity.md): every ``assumed:`` constant of
    the simulator's data one at a time x each factor, plus a joint Latin-hypercube sample, re-evaluated cheaply
    with the learners as trained; which verdicts flip. Off by default (an empty table in a second)."""

    enabled: bool = spec(False, "Run the sensitivity analysis. Off: the stage writes an empty table and a summary.")
    factors: tuple[float, ...] = spec((0.5, 2.0), "One-at-a-time factors applied to each assumed constant.",
                                      gt=0, le=100, min_len=1)
    lhs_samples: int = spec(32, "Worlds of the joint Latin-hypercube sample (log-uniform in [x0.5, x2]).",
                            ge=0, le=100_000)
    seeds: int = spec(2, "Episodes per (policy, scenario) in each perturbed world.", ge=1, le=1_000)
    steps: int = spec(200, "Requests per episode (capped by the scenario's length).", ge=10, le=100_000)
    n_boot: int = spec(200, "Bootstrap resamples behind each verdict's CI.", ge=0, le=100_000)
    policies: tuple[str, ...] = spec(("cpu_only", "gpu_only", "edge_gpu_max", "cloud_only", "best_static_dnn",
                                      "distilled", "appealnet", "oracle"),
                                     "References re-evaluated per world (those a suite evaluates); the suites' "
                                     "trained learners are added when results/train holds them. Policies that "
                                     "train (drldo) are left out: their claims are not re-assessed.",
                                     choices=_policy_names)


def _radio_profile_names() -> list[str]:
    from bench.world.network import list_radio_profiles

    return list_radio_profiles()


@dataclass(frozen=True)
class WorldParams:
    """The physical world every stage simulates (bench/world)."""

    radio_profile: str = spec("era2018", "Radio energy model (data/network/<profile>): 'era2018' (measurements on "
                              "phones of the reference profile's generation where found) or 'huang2012' (Huang et al., "
                              "MobiSys 2012), so the effect of the choice is one comparison away.",
                              choices=_radio_profile_names)


@dataclass(frozen=True)
class ObjectiveParams:
    """The one objective (bench/sim/objective.py, docs/bound.md): episode device energy above idle + λ per miss."""

    violation_cost_mj: float = spec(1000.0, "λ: the device energy (mJ) one missed latency target or accuracy bound "
                                    "is worth. The Lagrangian bound, gap to the bound and headroom use E + λ·misses; "
                                    "the QoS-first variant is the limit λ -> inf over feasible deadlines.",
                                    ge=0, le=1e9)


# --------------------------------------------------------------------------- engine
# Where evaluation cells and sweep jobs run (bench/pipeline/engine.py runs them); the schema lives here
# with the other sections, so params.yaml's loader imports nothing from the pipeline it configures.

BACKENDS = ("local-processes", "dask", "dask-slurm")


@dataclass(frozen=True)
class SlurmSettings:
    """What each Slurm job asks for (``engine.slurm``); one single-core worker per job."""

    queue: str = ""
    """Slurm partition (``-p``); empty = the cluster's default."""
    memory: str = "4GB"
    """Memory per job (a worker imports torch: give it at least 2 GB)."""
    walltime: str = "01:00:00"
    """Wall-time limit per job (HH:MM:SS)."""
    account: str = ""
    """Slurm account (``-A``); empty = none."""


@dataclass(frozen=True)
class Engine:
    """Which backend runs the cells (``engine`` in params.yaml)."""

    backend: str = "local-processes"
    """``local-processes`` | ``dask`` | ``dask-slurm``."""
    address: str = ""
    """Dask scheduler address of a running cluster (backend ``dask``); empty = start a local one."""
    workers: int = bounded(0, ge=0, le=100_000)
    """Worker processes (local pool, local Dask cluster or Slurm jobs); 0 = one per core of this machine."""
    slurm: SlurmSettings = field(default_factory=SlurmSettings)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"engine.backend = {self.backend!r}; allowed: {', '.join(BACKENDS)}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 0 <= self.workers <= 100_000:
            raise ValueError(f"engine.workers = {self.workers!r}; allowed: an integer in [0, 100000] (0 = one per core)")
        if self.address and self.backend != "dask":
            raise ValueError(f"engine.address is only used with backend 'dask' (backend is {self.backend!r})")
        if self.address:
            try:  # the form only; whether a scheduler answers there: probe_scheduler
                split_address(self.address)
            except EngineAddressError as exc:
                raise ValueError(str(exc)) from None  # params.yaml's loader prefixes where it came from

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Engine":
        """From params.yaml's ``engine`` mapping (as papermill passes it to a notebook)."""
        data = dict(data)
        slurm = SlurmSettings(**data.pop("slurm", {}) or {})
        return cls(**data, slurm=slurm)

    @property
    def n_workers(self) -> int:
        return self.workers or local_cores()


#: the schemes Dask's comms accept; tcp (and a bare host:port) is probed, the others only checked for form
ADDRESS_SCHEMES = ("tcp", "tls", "ucx", "inproc", "ws", "wss")


class EngineAddressError(ConfigError):
    """``engine.address`` is malformed, unreachable, or not a Dask scheduler (one line, exit 2)."""


def split_address(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a Dask address (``tcp://host:8786``, ``host:8786``, ``tcp://[::1]:8786``);
    port 0 for schemes without one. Raises :class:`EngineAddressError` on a malformed address."""
    allowed = "tcp://HOST:PORT (or HOST:PORT, tls://HOST:PORT) of a running Dask scheduler"
    if not isinstance(address, str) or not address or any(c.isspace() for c in address) or len(address) > 300:
        raise EngineAddressError(f"engine.address = {address!r:.80}: malformed; allowed: {allowed}")
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme not in ADDRESS_SCHEMES:
        raise EngineAddressError(f"engine.address = {address!r:.80}: unknown scheme {scheme!r}; allowed: "
                                 f"{', '.join(s + '://' for s in ADDRESS_SCHEMES)}")
    if scheme in ("inproc", "ucx"):
        return scheme, rest, 0
    host, colon, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise EngineAddressError(f"engine.address = {address!r:.80}: needs a host and a port 1-65535; "
                                 f"allowed: {allowed}")
    return scheme, host, int(port)


def local_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Params:
    """Everything in params.yaml."""

    plugins: tuple[str, ...] = spec((), "Python files (relative to params.yaml) or module names imported before "
                                    "validation: they register policies, learners, meters or scenario kinds "
                                    "(docs/extending.md). Installed plugins need no entry here (entry points).")
    seed: int = spec(20261123, "The one seed; every random generator is derived from it via numpy.random.SeedSequence.",
                     ge=0, le=2**63 - 1)
    profile: ProfileParams = field(default_factory=ProfileParams, metadata={"doc": ProfileParams.__doc__})
    train: TrainParams = field(default_factory=TrainParams, metadata={"doc": TrainParams.__doc__})
    evaluate: EvaluateParams = field(default_factory=EvaluateParams, metadata={"doc": EvaluateParams.__doc__})
    objective: ObjectiveParams = field(default_factory=ObjectiveParams, metadata={"doc": ObjectiveParams.__doc__})
    engine: Engine = field(default_factory=Engine, metadata={
        "doc": "Where evaluation cells and sweep jobs run: local processes or a Dask cluster "
               "(bench/pipeline/engine.py)."})
    sweep: SweepParams = field(default_factory=SweepParams, metadata={"doc": SweepParams.__doc__})
    testbed: TestbedParams = field(default_factory=TestbedParams, metadata={"doc": TestbedParams.__doc__})
    world: WorldParams = field(default_factory=WorldParams, metadata={"doc": WorldParams.__doc__})
    sensitivity: SensitivityParams = field(default_factory=SensitivityParams,
                                           metadata={"doc": SensitivityParams.__doc__})

    def __post_init__(self):
        # one objective everywhere: the learners' rewards derive from params.yaml's `objective` (docs/bound.md)
        for name in _LEARNER_CONFIGS:
            cfg = getattr(self.train, name, None)
            if cfg is not None and getattr(cfg, "violation_cost_mj", 0.0) is None:
                object.__setattr__(self.train, name,
                                   dataclasses.replace(cfg, violation_cost_mj=self.objective.violation_cost_mj))
        for name, grid in self.sweep.grids.items():
            base = getattr(self.train, grid.learner)
            for variant, over in grid.configs.items():
                # the variant is validated like train.<learner> itself: same types, ranges and names
                unknown = sorted((k for k in over if k not in {f.name for f in dataclasses.fields(base)}), key=str)
                if unknown:
                    raise ParamsError.at(f"params.yaml: sweep.grids.{name}.configs.{variant}",
                                         f"unknown {type(base).__name__} field(s) {short(unknown)}",
                                         allowed=allowed_list(sorted(f.name for f in dataclasses.fields(base)), 40))
                _build(type(base), {**as_dict(base), **dict(over)}, f"sweep.grids.{name}.configs.{variant}.")
        for name, suite in self.evaluate.suites.items():
            if suite.run not in self.train.runs:
                raise ParamsError.at(f"params.yaml: evaluate.suites.{name}.run", "not a training run", suite.run,
                                     allowed_list(sorted(self.train.runs)))
            # the suite's learner must not have trained on its held-out scenarios
            learner = self.train.runs[suite.run].learner
            trained = set(getattr(self.train.learner_config(learner), "scenarios", ()))
            leaked = sorted(set(suite.heldout_scenarios) & trained)
            if leaked:
                raise ParamsError(f"params.yaml: evaluate.suites.{name}.heldout_scenarios = {leaked} are training "
                                  f"scenarios of train.{learner}.scenarios; allowed: scenarios its learner does not "
                                  f"train on")
            # ... nor on their families (pre-registered in each scenario file: signal x co-runner x DNN mix)
            families = _scenario_families(sorted(trained | set(suite.heldout_scenarios)))
            seen = {families.get(s, s) for s in trained}
            shared = sorted((s, families.get(s, s)) for s in suite.heldout_scenarios if families.get(s, s) in seen)
            if shared:
                raise ParamsError(f"params.yaml: evaluate.suites.{name}.heldout_scenarios: {shared} (scenario, family) "
                                  f"share a family with train.{learner}.scenarios; allowed: held-out scenarios whose "
                                  f"family no training scenario has")


# --------------------------------------------------------------------------- validation

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of name -> {_type_name(typing.get_args(tp)[1])}"
    return getattr(tp, "__name__", str(tp))


def _err(key: str, problem: str, value: Any = ..., allowed: str | None = None) -> ParamsError:
    return ParamsError.at(f"params.yaml: {key}", problem, value, allowed)


def _coerce(key: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for inner in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, inner, value)
            except ParamsError:
                continue
        raise _err(key, f"must be of type {_type_name(tp)}", value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _err(key, "must be a mapping of names to entries", value)
        _, item_tp = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _err(key, "names must be strings", k)
            out[k] = _coerce(f"{key}.{k}", item_tp, v)
        return out
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _err(key, "must be a list", value, f"a list of {_type_name(typing.get_args(tp)[0])}")
        item_tp = typing.get_args(tp)[0]
        items = [_coerce(f"{key}[{i}]", item_tp, v) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:  # free-form (e.g. learner overrides); the owning section validates it
        return value
    if tp is type(None):
        ok = value is None
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:  # a YAML integer with hundreds of digits
                raise _err(key, "number too large", value) from None
    elif tp is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported params type {tp!r} for {key}")
    if not ok:
        raise _err(key, f"must be of type {_type_name(tp)}", value)
    return value


def _range_text(meta: Mapping[str, Any]) -> str:
    parts = [f"{op} {meta[k]:g}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
             if meta.get(k) is not None]
    return "a finite number" + (" " + " and ".join(parts) if parts else "")


def _check_limits(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    doc = meta.get("doc")
    hint = f" ({' '.join(str(doc).split())[:120]})" if doc else ""
    if isinstance(value, (tuple, list, dict)):
        n = len(value)
        if meta.get("min_len") is not None and n < meta["min_len"]:
            raise _err(key, f"needs at least {meta['min_len']} entr{'y' if meta['min_len'] == 1 else 'ies'}{hint}",
                       value)
        if meta.get("max_len") is not None and n > meta["max_len"]:
            raise _err(key, f"has {n} entries", allowed=f"at most {meta['max_len']}")
        if isinstance(value, dict):
            if meta.get("safe_keys"):
                for k in value:
                    safe_name(f"params.yaml: {key}.{k}", k, ParamsError)
            return
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    items = tuple(i for i in items if i is not None)
    choices = meta.get("choices")
    if choices is not None:
        allowed = list(choices() if callable(choices) else choices)
        for item in items:
            if item not in allowed:
                raise _err(key, "not allowed", item, allowed_list(allowed, 40))
    bounds = dict(meta)
    if isinstance(value, int) and not isinstance(value, bool) and "int_ge" in meta:
        bounds = {"ge": meta["int_ge"], "le": meta.get("int_le")}  # e.g. xi_levels: a count, or explicit shares
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if isinstance(item, float) and item != item or item in (float("inf"), float("-inf")):
            raise _err(key, "must be finite", item, _range_text(bounds))
        if ((bounds.get("ge") is not None and not item >= bounds["ge"])
                or (bounds.get("gt") is not None and not item > bounds["gt"])
                or (bounds.get("le") is not None and not item <= bounds["le"])
                or (bounds.get("lt") is not None and not item < bounds["lt"])):
            raise _err(key, f"out of range{hint}", item, _range_text(bounds))


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    where = prefix.rstrip(".") or "the top level"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ParamsError.at(f"params.yaml: {where}", "must be a mapping of keys to values", data)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    # plugin sections (e.g. a plugin learner's train.<name>): asked from the registries
    extra = cls._extra_sections() if hasattr(cls, "_extra_sections") and any(k not in fields for k in data) else {}
    for key in data:
        if key not in fields and key not in extra:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ParamsError(f"params.yaml: unknown key '{prefix}{short(key)[1:-1] if isinstance(key, str) else short(key)}'"
                              f"{hint}; allowed keys under {where}: {allowed_list(sorted(fields), 40)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name not in data:
            continue  # dataclass default
        key = f"{prefix}{name}"
        tp = f.metadata["type"]() if "type" in f.metadata else hints[name]
        value = _coerce(key, tp, data[name])
        _check_limits(key, value, f.metadata)
        values[name] = value
    try:
        obj = cls(**values)
    except BenchError:
        raise
    except (TypeError, ValueError) as exc:  # a section's own cross-field checks
        raise ParamsError(f"params.yaml: {where}: {' '.join(str(exc).split())[:300]}") from None
    if extra:
        object.__setattr__(obj, "plugin_sections", {str(k): _build_plugin_section(extra[k], v, f"{prefix}{k}.")
                                                    for k, v in data.items() if k in extra})
    return obj


def _build_plugin_section(cls: type, data: Any, prefix: str) -> Any:
    """A plugin's config section: its dataclass's own checks are plugin code, so whatever they raise
    (or a sys.exit in them) is one line naming the section, never a traceback or a silent exit."""
    try:
        return _build(cls, data, prefix)
    except BenchError:
        raise
    except (Exception, SystemExit) as exc:
        why = f"sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
        raise ParamsError(f"params.yaml: {prefix.rstrip('.')}: the plugin's config class "
                          f"{getattr(cls, '__name__', cls)!s} failed: {' '.join(why.split())[:200]}") from None


def _load_plugins(data: Any, base_dir: Path | None) -> None:
    plugins = data.get("plugins") if isinstance(data, Mapping) else None
    if not plugins:
        return
    if not isinstance(plugins, (list, tuple)) or not all(isinstance(p, str) for p in plugins):
        raise ParamsError.at("params.yaml: plugins", "must be a list of file paths or module names", plugins)
    from hw.registry import PluginError, load_plugin

    for i, plugin in enumerate(plugins):
        spec_ = plugin.strip()
        if spec_.endswith(".py") or "/" in spec_:
            path = Path(spec_).expanduser()
            path = path if path.is_absolute() or base_dir is None else base_dir / path
            warn_outside_repo(f"params.yaml: plugins[{i}]", path, "its code runs with your rights whenever "
                              "params.yaml is loaded")
        try:
            load_plugin(plugin, base_dir)
        except PluginError as exc:
            raise ParamsError(f"params.yaml: plugins[{i}]: {' '.join(str(exc).split())[:300]}") from None


#: set to 1 to accept plugin files and profile paths outside the repository without the warning
TRUST_EXTERNAL_ENV = "EDGEBENCH_TRUST_EXTERNAL"
_warned_outside: set[str] = set()


def warn_outside_repo(where: str, path: Path, risk: str) -> None:
    """One line on stderr (once per path) when a file params.yaml names lies outside the repository
    (docs/extending.md, "Trust model"); ``$EDGEBENCH_TRUST_EXTERNAL=1`` accepts such files silently."""
    import os
    import sys

    resolved = Path(os.path.abspath(path)).resolve()
    if resolved.is_relative_to(REPO_ROOT.resolve()) or os.environ.get(TRUST_EXTERNAL_ENV) == "1":
        return
    if str(resolved) in _warned_outside:
        return
    _warned_outside.add(str(resolved))
    print(f"warning: {where} = {short(str(resolved))} is outside the repository ({REPO_ROOT}): {risk}; "
          f"set {TRUST_EXTERNAL_ENV}=1 to accept it silently (docs/extending.md, Trust model)", file=sys.stderr)


def _resolve_replay_log(params: Params, base: Path) -> Params:
    """adapter 'replay' needs a log that exists; a relative path is taken from ``base`` (params.yaml's
    directory) and stored absolute, so the notebook (run from notebooks/) finds the same file."""
    prof = params.profile
    if prof.adapter != "replay":
        return params
    path = Path(prof.replay_log).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise _err("profile.replay_log", f"no such file (looked for {short(str(path))})", prof.replay_log,
                   "an existing tegrastats log or samples .jsonl (relative to params.yaml's directory)")
    return dataclasses.replace(params, profile=dataclasses.replace(prof, replay_log=str(path.resolve())))


def params_from_dict(data: Mapping[str, Any], base_dir: str | Path | None = None) -> Params:
    """Validate a parsed params mapping (see :func:`load_params`); ``plugins`` are imported first
    (relative to ``base_dir``), so the registries they fill are what validation checks against.
    A relative ``profile.replay_log`` resolves against ``base_dir`` (default: the repo root)."""
    _load_plugins(data, Path(base_dir) if base_dir is not None else None)
    params = _build(Params, data)
    return _resolve_replay_log(params, Path(base_dir) if base_dir is not None else REPO_ROOT)


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; raises :class:`ParamsError` on the first problem.

    The file is read with :func:`bench.validate.read_yaml` (UTF-8 only, size and nesting bounded,
    duplicate keys and alias bombs refused, a mapping at the top level).
    """
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such file (the pipeline reads its parameters from params.yaml at the repo root)")
    data = read_yaml(path, ParamsError, where=str(path.name) if path.name == "params.yaml" else str(path))
    try:
        return params_from_dict(data, base_dir=path.resolve().parent)
    except ParamsError as exc:
        msg = str(exc)
        if path.name != "params.yaml" and msg.startswith("params.yaml:"):  # name the file the user gave
            raise type(exc)(f"{path}{msg[len('params.yaml'):]}") from None
        raise


def apply_world(params: Params) -> None:
    """Make ``params.world`` the world of this process and the workers it starts (a stage calls this once).

    The radio profile travels as an environment variable (:data:`bench.world.network.RADIO_PROFILE_ENV`), so
    every simulator built in the stage — the notebook's kernel, evaluation processes, local Dask workers —
    loads the same link models without threading the choice through every constructor.
    """
    from bench.world.network import RADIO_PROFILE_ENV

    os.environ[RADIO_PROFILE_ENV] = params.world.radio_profile


def as_dict(obj: Any) -> Any:
    """A params dataclass as plain data (tuples -> lists), e.g. for papermill parameters."""
    if dataclasses.is_dataclass(obj):
        return {f.name: as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [as_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    return obj


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Docs of a dataclass's fields: ``spec(doc=...)`` metadata, else the attribute
    docstring written under the field (the CleanRL / Sphinx convention)."""
    docs: dict[str, str] = {}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    except (OSError, TypeError, SyntaxError, IndexError):
        pass
    for f in dataclasses.fields(cls):
        if f.metadata.get("doc"):
            docs[f.name] = f.metadata["doc"]
    return docs


def allowed_text(meta: Mapping[str, Any]) -> str:
    """A field's limits (its metadata) in words, e.g. ``>= 0 and < 1``; empty when it has none."""
    parts = [" and ".join(f"{op} {meta[k]:g}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                          if meta.get(k) is not None)]
    if meta.get("int_ge") is not None:
        upper = f" and <= {meta['int_le']:g}" if meta.get("int_le") is not None else ""
        parts.append(f"or a count >= {meta['int_ge']:g}{upper}")
    choices = meta.get("choices")
    if callable(choices):  # named, not called: the registries may need plugins or heavy imports
        parts.append(f"names from {getattr(choices, '__name__', 'choices').lstrip('_')}()")
    elif choices is not None:
        parts.append("one of " + allowed_list(list(choices), 20))
    for key, what in (("min_len", "at least"), ("max_len", "at most")):
        if meta.get(key) is not None:
            parts.append(f"{what} {meta[key]} entr{'y' if meta[key] == 1 else 'ies'}")
    return "; ".join(p for p in parts if p)


def describe(cls: type = Params, prefix: str = "") -> list[dict[str, Any]]:
    """Every key with its type, default, limits (``allowed``, from the field's metadata) and doc
    (for `python -m bench params --describe`)."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = f.metadata["type"]() if "type" in f.metadata else hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, f"{prefix}{f.name}.")
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING else f.default
        rows.append({"key": f"{prefix}{f.name}", "type": _type_name(tp), "default": as_dict(default),
                     "allowed": allowed_text(f.metadata), "doc": field_docs(cls).get(f.name, "")})
    return rows
