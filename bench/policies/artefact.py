"""What a saved learner *acts on*, as a digest: the pieces each learner's ``policy_digest`` is made of.

A committed result that replayed a trained learner (the sensitivity stage's run) records a digest of it, so the
report can say when the learner changed since. A digest of the artefact's file bytes said so far too often: a
training-only key added to the saved config with its default value (``learning_rate_end: null``) or a reordered
safetensors metadata header changed the bytes while every decision stayed the same. The digests here cover what a
loaded learner's decisions depend on and nothing else:

* **tensors / arrays** by name, dtype, shape and raw bytes (:func:`safetensors_tensors`, :func:`npz_arrays`): not
  the file's header layout, its free-form metadata or its compression;
* **the acting configuration** (:func:`acting_config`): the saved config without the keys only training reads
  (each learner lists them next to its loader) and without keys at their default value, so a key added to the
  config class later, saved with its default, changes nothing (that default reproduces the earlier behaviour).

``bench.policies.dvfo.policy_digest`` and ``bench.policies.autoscale.policy_digest`` combine them per learner.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=list)


def acting_config(config: Mapping[str, Any], config_class: type, training_only: Iterable[str]) -> dict[str, Any]:
    """``config`` (a saved learner's config mapping) without the ``training_only`` keys and without every key whose
    value equals ``config_class``'s default (tuples and lists compare equal, as JSON writes both as lists)."""
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(config_class):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            defaults[f.name] = f.default_factory()  # type: ignore[misc]
    skip = set(training_only)
    return {k: v for k, v in config.items()
            if k not in skip and not (k in defaults and _canonical(v) == _canonical(defaults[k]))}


def safetensors_tensors(path: str | Path) -> dict[str, tuple[str, tuple, bytes]]:
    """Name -> (dtype, shape, raw bytes) of every tensor of a safetensors file, read from its documented layout
    (8-byte little-endian header length, a JSON header, the data); the header's ``__metadata__`` is left out."""
    blob = Path(path).read_bytes()
    if len(blob) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", blob[:8])
    try:
        header = json.loads(blob[8:8 + n])
    except ValueError as exc:
        raise ValueError(f"{path}: not a safetensors file (its header is not JSON: {exc})") from None
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = (str(info["dtype"]), tuple(int(d) for d in info["shape"]), data[int(start):int(end)])
    return out


def npz_arrays(path: str | Path) -> dict[str, tuple[str, tuple, bytes]]:
    """Name -> (dtype, shape, C-order bytes) of every array of an ``.npz`` file (no pickle): not its zip layout or
    compression."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {name: (data[name].dtype.str, tuple(data[name].shape), np.ascontiguousarray(data[name]).tobytes())
                for name in data.files}


def digest(arrays: Mapping[str, tuple[str, tuple, bytes]], meta: Mapping[str, Any]) -> str:
    """A short hash of named arrays (any order) and a JSON-able mapping (any key order)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        dtype, shape, raw = arrays[name]
        h.update(_canonical([name, dtype, list(shape)]).encode() + b"\0")
        h.update(hashlib.sha256(raw).digest())
    h.update(_canonical(dict(meta)).encode())
    return h.hexdigest()[:16]
