"""Link models: signal strength (dBm) -> throughput, RTT, loss, radio power and tail.

One YAML file per radio and *radio profile* (``data/network/<profile>/<name>.yaml``:
``wifi``, ``lte``); every number is ``{value, source}`` with a literature source or
``assumed: why``. Profiles: ``era2018`` (the default: measurements on phones of the
reference profile's generation where found, else the older value marked ``assumed``)
and ``huang2012`` (Huang et al., MobiSys 2012, HTC ThunderBolt), so the effect of the
choice is one comparison away (``params.yaml`` ``world.radio_profile``).
All functions are vectorised over numpy arrays of signal strengths.

Model (suite choice, documented here and in the data files):

* goodput is a piecewise-linear table signal_dbm -> Mbit/s (``np.interp``);
* packet loss after link-layer retries is logistic in the signal:
  ``p = 1 / (1 + exp((s - loss_midpoint_dbm) / loss_slope_db))``; retransmissions
  cut the goodput to ``(1 - p)`` of the table value and, with probability ``p``,
  one TCP retransmission timeout (``rto_ms``) is added to the round trip;
* radio power while transferring has the form of Huang et al. (MobiSys 2012):
  ``P = base + alpha_u * up_mbps`` (uplink) or ``base + alpha_d * down_mbps``,
  plus ``weak_extra_mw_per_db`` per dB below ``weak_ref_dbm`` on the uplink
  (transmit-power control raises power at weak signal). The linear model is used
  only inside the throughput range its source measured (``power_max_mbps``); above
  it the power is held at the range's edge (a saturating model: Sun et al.,
  ICDCS 2014, find Wi-Fi power grows sub-linearly at high throughput, so
  extrapolating the line overstates it);
* radio state machine (Huang et al. Table 3): from idle (LTE RRC_IDLE, Wi-Fi PSM)
  a transfer first pays a promotion (``promotion_ms`` at ``promotion_mw``); after the
  last packet the radio stays in a high-power tail (``tail_mw`` for ``tail_ms``: LTE
  RRC_CONNECTED with its DRX cycles, whose average power the measured tail power
  is; about 1.06 W for 11.6 s) before it demotes; a transfer that starts inside the
  tail needs no promotion. The simulator (:mod:`bench.sim.core`) keeps this state
  across requests.

A dead link has zero goodput (no floor): the simulator's offload timeout bounds
the time and energy spent on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

import bench.validate as V
from bench.errors import DataFileError
from bench.paths import DATA_DIR

NETWORK_DIR = DATA_DIR / "network"
#: the radio profile used where none is named (params.yaml ``world.radio_profile``)
DEFAULT_RADIO_PROFILE = "era2018"

_LIST_KEYS = ("signal_dbm", "downlink_mbps", "uplink_mbps")
_SCALAR_KEYS = (
    "rtt_ms", "lan_rtt_ms", "rtt_sigma", "throughput_sigma", "loss_midpoint_dbm", "loss_slope_db", "rto_ms",
    "uplink_mw_per_mbps", "downlink_mw_per_mbps", "base_mw", "tail_mw", "tail_ms",
    "weak_extra_mw_per_db", "weak_ref_dbm", "promotion_ms", "promotion_mw", "power_max_mbps",
)
#: optional: the weakest signal at which the radio is considered usable (a phone hands over below it)
_OPTIONAL_SCALARS = ("min_usable_dbm",)
_ALLOWED = {"name", "description", "levels_dbm", *_LIST_KEYS, *_SCALAR_KEYS, *_OPTIONAL_SCALARS}


class NetworkError(DataFileError):
    """A link-model file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class LinkModel:
    """One radio's link and power model (see the module docstring)."""

    name: str
    signal_dbm: np.ndarray
    downlink_mbps: np.ndarray
    uplink_mbps: np.ndarray
    levels_dbm: Mapping[str, float]
    rtt_ms: float
    lan_rtt_ms: float
    rtt_sigma: float
    throughput_sigma: float
    loss_midpoint_dbm: float
    loss_slope_db: float
    rto_ms: float
    uplink_mw_per_mbps: float
    downlink_mw_per_mbps: float
    base_mw: float
    tail_mw: float
    tail_ms: float
    weak_extra_mw_per_db: float
    weak_ref_dbm: float
    promotion_ms: float
    promotion_mw: float
    #: highest throughput (Mbit/s) the power model's source measured; power is held there above it
    power_max_mbps: float
    #: weakest usable signal (dBm); default: the weakest table point with non-zero uplink goodput
    min_usable_dbm: float = float("nan")
    description: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)

    # -- throughput and loss ------------------------------------------------
    def loss_prob(self, signal_dbm) -> np.ndarray:
        """Packet-loss probability after link-layer retries (logistic in dBm)."""
        s = np.asarray(signal_dbm, dtype=float)
        return 1.0 / (1.0 + np.exp((s - self.loss_midpoint_dbm) / self.loss_slope_db))

    def uplink_goodput_mbps(self, signal_dbm) -> np.ndarray:
        """Expected uplink goodput after retransmissions (Mbit/s; 0 where the link is dead)."""
        s = np.asarray(signal_dbm, dtype=float)
        raw = np.interp(s, self.signal_dbm, self.uplink_mbps)
        return raw * (1.0 - self.loss_prob(s))

    def downlink_goodput_mbps(self, signal_dbm) -> np.ndarray:
        """Expected downlink goodput after retransmissions (Mbit/s; 0 where the link is dead)."""
        s = np.asarray(signal_dbm, dtype=float)
        raw = np.interp(s, self.signal_dbm, self.downlink_mbps)
        return raw * (1.0 - self.loss_prob(s))

    # -- power ----------------------------------------------------------------
    def weak_extra_w(self, signal_dbm) -> np.ndarray:
        """Extra uplink transmit power (W) at weak signal."""
        s = np.asarray(signal_dbm, dtype=float)
        return self.weak_extra_mw_per_db * np.maximum(self.weak_ref_dbm - s, 0.0) / 1e3

    def power_mbps(self, mbps) -> np.ndarray:
        """Throughput fed to the power model: clipped to the source's measured range [0, power_max_mbps]."""
        return np.clip(np.asarray(mbps, dtype=float), 0.0, self.power_max_mbps)

    def uplink_power_w(self, mbps, signal_dbm) -> np.ndarray:
        """Radio power (W) while sending at ``mbps`` with signal ``signal_dbm`` (saturating above the measured range)."""
        return (self.base_mw + self.uplink_mw_per_mbps * self.power_mbps(mbps)) / 1e3 + self.weak_extra_w(signal_dbm)

    def downlink_power_w(self, mbps) -> np.ndarray:
        """Radio power (W) while receiving at ``mbps`` (saturating above the measured range)."""
        return (self.base_mw + self.downlink_mw_per_mbps * self.power_mbps(mbps)) / 1e3

    @property
    def tail_w(self) -> float:
        return self.tail_mw / 1e3

    @property
    def promotion_w(self) -> float:
        return self.promotion_mw / 1e3

    @property
    def max_power_w(self) -> float:
        """Upper bound of the transfer power model (W): the edge of the measured range at the weakest signal."""
        top = max(self.uplink_mw_per_mbps, self.downlink_mw_per_mbps) * self.power_max_mbps
        weakest = self.weak_extra_mw_per_db * max(self.weak_ref_dbm - float(self.signal_dbm[0]), 0.0)
        return (self.base_mw + top + weakest) / 1e3

    def level_dbm(self, level: str) -> float:
        """The dBm of a named level (``strong``, ``medium``, ``weak``)."""
        if level not in self.levels_dbm:
            raise NetworkError(f"{self.name}: unknown signal level {level!r}; allowed: {sorted(self.levels_dbm)}")
        return float(self.levels_dbm[level])

    def transfer(self, n_bits, signal_dbm, throughput_factor=1.0) -> dict[str, np.ndarray]:
        """Time (ms) and radio energy (mJ) to send ``n_bits`` uplink from a connected radio, tail excluded.

        A dead link (zero goodput) gives an infinite time and energy: the caller bounds them with a timeout.
        """
        mbps = self.uplink_goodput_mbps(signal_dbm) * throughput_factor
        with np.errstate(divide="ignore"):
            time_ms = np.asarray(n_bits, dtype=float) / (mbps * 1e3)
        return {"time_ms": time_ms, "energy_mj": self.uplink_power_w(mbps, signal_dbm) * time_ms, "mbps": mbps}


def list_radio_profiles(directory: Path = NETWORK_DIR) -> list[str]:
    """Names of the shipped radio profiles (sub-directories of ``data/network`` holding link models)."""
    return sorted(p.name for p in Path(directory).iterdir() if p.is_dir() and any(p.glob("*.yaml")))


#: environment variable naming the radio profile of this process and its workers; the pipeline's stages
#: set it from params.yaml's ``world.radio_profile`` (:func:`bench.config.apply_world`), so every simulator
#: built in the stage (notebook kernel, evaluation workers, Dask workers on this machine) uses the same one
RADIO_PROFILE_ENV = "BENCH_RADIO_PROFILE"


def active_radio_profile() -> str:
    """The radio profile used where none is named: ``$BENCH_RADIO_PROFILE``, else :data:`DEFAULT_RADIO_PROFILE`."""
    return os.environ.get(RADIO_PROFILE_ENV) or DEFAULT_RADIO_PROFILE


def profile_dir(profile: str | None = None, directory: Path = NETWORK_DIR) -> Path:
    """The directory of a radio profile (``None``: :func:`active_radio_profile`)."""
    profile = active_radio_profile() if profile is None else profile
    allowed = list_radio_profiles(directory)
    if not isinstance(profile, str) or profile not in allowed:
        raise NetworkError.at("radio profile", "unknown radio profile", profile, ", ".join(allowed))
    return Path(directory) / profile


def list_links(directory: Path | None = None, profile: str | None = None) -> list[str]:
    """Names of the shipped link models (of ``profile``; every profile ships the same radios)."""
    where = Path(directory) if directory is not None else profile_dir(profile)
    return sorted(p.stem for p in where.glob("*.yaml"))


def _sourced(where: str, raw: Any) -> tuple[Any, str]:
    if not isinstance(raw, Mapping) or set(raw) != {"value", "source"}:
        raise NetworkError.at(where, "expected {value: ..., source: ...} (a literature source or 'assumed: why')", raw)
    if not isinstance(raw["source"], str) or not raw["source"].strip():
        raise NetworkError.at(f"{where}.source", "must be a non-empty string", raw["source"])
    return raw["value"], raw["source"].strip()


_DBM = dict(ge=-200.0, le=50.0)
#: Limits of every number of a link model (dBm in [-200, 50]; rates, powers and times >= 0;
#: loss_slope_db > 0 because the loss model divides by it).
_LIMITS: dict[str, dict[str, float]] = {
    "signal_dbm": _DBM, "downlink_mbps": dict(ge=0, le=1e6), "uplink_mbps": dict(ge=0, le=1e6),
    "rtt_ms": dict(ge=0, le=1e6), "lan_rtt_ms": dict(ge=0, le=1e6), "rtt_sigma": dict(ge=0, le=10),
    "throughput_sigma": dict(ge=0, le=10), "loss_midpoint_dbm": _DBM, "loss_slope_db": dict(gt=0, le=100),
    "rto_ms": dict(ge=0, le=1e6), "uplink_mw_per_mbps": dict(ge=0, le=1e6), "downlink_mw_per_mbps": dict(ge=0, le=1e6),
    "base_mw": dict(ge=0, le=1e6), "tail_mw": dict(ge=0, le=1e6), "tail_ms": dict(ge=0, le=1e7),
    "weak_extra_mw_per_db": dict(ge=0, le=1e6), "weak_ref_dbm": _DBM, "min_usable_dbm": _DBM,
    "promotion_ms": dict(ge=0, le=1e6), "promotion_mw": dict(ge=0, le=1e6), "power_max_mbps": dict(gt=0, le=1e6),
}


def link_from_dict(data: Mapping, where: str = "link") -> LinkModel:
    """Validate parsed YAML and build a :class:`LinkModel`."""
    if not isinstance(data, Mapping):
        raise NetworkError.at(where, "expected a mapping at the top level", data)
    unknown = sorted((k for k in data if k not in _ALLOWED), key=str)
    if unknown:
        raise NetworkError(f"{where}: unknown field(s) {V.short(unknown)}; allowed: {sorted(_ALLOWED)}")
    missing = sorted(_ALLOWED - {"description", *_OPTIONAL_SCALARS} - set(data))
    if missing:
        raise NetworkError(f"{where}: missing field(s) {missing}")
    V.text(f"{where}.name", data["name"], NetworkError, empty=False, max_len=200)
    if "description" in data:
        V.text(f"{where}.description", data["description"], NetworkError)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in _LIST_KEYS:
        val, sources[key] = _sourced(f"{where}.{key}", data[key])
        values[key] = V.numbers(f"{where}.{key}.value", val, NetworkError, min_len=2, max_len=10_000, **_LIMITS[key])
    if np.any(np.diff(values["signal_dbm"]) <= 0):
        raise NetworkError(f"{where}.signal_dbm: must be strictly ascending")
    for key in ("downlink_mbps", "uplink_mbps"):
        if len(values[key]) != len(values["signal_dbm"]):
            raise NetworkError(f"{where}.{key}: needs one value per signal_dbm entry")
        if np.any(np.diff(values[key]) < 0):
            raise NetworkError(f"{where}.{key}: goodput must not fall as the signal gets stronger")
    for key in _SCALAR_KEYS + tuple(k for k in _OPTIONAL_SCALARS if k in data):
        val, sources[key] = _sourced(f"{where}.{key}", data[key])
        values[key] = V.number(f"{where}.{key}.value", val, NetworkError, **_LIMITS.get(key, dict(ge=-1e9, le=1e9)))
    if "min_usable_dbm" not in values:
        alive = np.flatnonzero(values["uplink_mbps"] > 0)
        values["min_usable_dbm"] = float(values["signal_dbm"][alive[0]]) if len(alive) else float(values["signal_dbm"][-1])
        sources["min_usable_dbm"] = "derived: the weakest signal_dbm point with non-zero uplink goodput"
    levels, sources["levels_dbm"] = _sourced(f"{where}.levels_dbm", data["levels_dbm"])
    if not isinstance(levels, Mapping) or not levels:
        raise NetworkError.at(f"{where}.levels_dbm", "expected a mapping level name -> dBm", levels)
    for k in levels:
        V.text(f"{where}.levels_dbm", k, NetworkError, empty=False, max_len=100)
    levels_dbm = {k: V.number(f"{where}.levels_dbm.{k}", v, NetworkError, **_DBM) for k, v in levels.items()}
    return LinkModel(name=str(data["name"]), description=str(data.get("description", "")),
                     levels_dbm=levels_dbm, sources=sources, **values)


def load_link(name_or_path: str | Path, profile: str | None = None) -> LinkModel:
    """Load a shipped link model by name (``wifi``, ``lte``) of a radio ``profile`` (default
    :data:`DEFAULT_RADIO_PROFILE`), or a YAML file by path (``profile`` is then ignored)."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        base = profile_dir(profile)
        path = base / f"{name_or_path}.yaml"
        if not path.is_file():
            raise NetworkError.at("link model", "unknown link model", str(name_or_path),
                                  ", ".join(list_links(base)))
        return link_from_dict(V.read_yaml(path, NetworkError, path.name), where=f"{base.name}/{path.name}")
    return link_from_dict(V.read_yaml(path, NetworkError, path.name), where=path.name)


def energy_per_mb_j(link: LinkModel, mbps: float, signal_dbm: float | None = None) -> float:
    """Radio energy (J) to send one megabyte (8e6 bits) uplink at a steady ``mbps`` from a connected radio,
    promotion and tail excluded (signal: the link's ``strong`` level unless given)."""
    s = link.level_dbm("strong") if signal_dbm is None else signal_dbm
    return float(link.uplink_power_w(mbps, s)) * 8.0 / float(mbps)
