"""Where independent cells run: local processes on this machine, or a Dask cluster.

Evaluation cells and sweep jobs are pure functions of plain data, so running them
anywhere is a ``map``. This module is that map, behind one call::

    results = map_ordered(run_cell, cells, Engine(backend="dask"), keys=[...])

Backends (``engine.backend`` in params.yaml):

* ``local-processes`` — a ``concurrent.futures.ProcessPoolExecutor`` on this
  machine (the default; nothing to install or start).
* ``dask`` — Dask's distributed scheduler. With ``engine.address`` empty, a
  ``LocalCluster`` of ``workers`` single-threaded worker processes is started and
  stopped around the map (embedded: ``dvc repro`` needs nothing extra); with an
  address (``tcp://host:8786``) the map runs on that running cluster.
* ``dask-slurm`` — a ``dask_jobqueue.SLURMCluster`` started by the stage: it
  submits ``workers`` single-core Slurm jobs (``engine.slurm`` gives queue, memory
  and wall time) and tears them down at the end.

Why Dask rather than Ray (docs/distributed.md): the cells are plain Python
functions over small inputs, which is exactly ``client.map``; Dask is pure Python
(pip-installable everywhere this suite runs, no separate object-store daemon),
reschedules the tasks of a lost worker by itself, and ``dask-jobqueue`` reaches
Slurm/PBS/SGE clusters, where most academic sweeps run.

Results come back in *item order* whatever finished first, so the bytes of every
table built from them do not depend on the backend or on the number of workers.
``on_result(i, value)`` is called in the driver as each item completes (in
completion order): the sweep stage uses it to store each cell as soon as it
exists, which is what makes a sweep resumable.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterator, Sequence

# the schema of params.yaml's ``engine`` lives with the other sections (bench.config); re-exported here
from bench.config import (ADDRESS_SCHEMES, BACKENDS, Engine, EngineAddressError, SlurmSettings,  # noqa: F401
                          local_cores, split_address)

#: how long the probe waits for a connection and for the scheduler's handshake (a live scheduler answers at once)
PROBE_TIMEOUT_S = 3.0
#: a Dask handshake is a few hundred bytes; a length prefix beyond this is not a Dask scheduler speaking
MAX_HANDSHAKE_BYTES = 1 << 20


def probe_scheduler(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Check within ``timeout_s`` that a Dask scheduler answers at ``address``; raise
    :class:`EngineAddressError` (one line) if nothing listens there or something else does.

    A Dask comm starts with the scheduler sending its handshake: 8 bytes of message length,
    then the message. Without this check a non-Dask service's first bytes are read as that
    length and ``distributed`` tries to allocate it (3 EiB for an SSH banner), and an
    unreachable address waits 30 s and ends in an ``OSError`` traceback.
    """
    import socket
    import struct

    scheme, host, port = split_address(address)
    if scheme not in ("tcp", "tls"):
        return
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        raise EngineAddressError(f"engine.address = {address!r:.80}: no Dask scheduler reachable within "
                                 f"{timeout_s:g} s ({exc.strerror or type(exc).__name__}); allowed: the address of a "
                                 f"running scheduler (`dask scheduler` prints it), or '' for a local cluster") from None
    with sock:
        if scheme == "tls":  # encrypted: the handshake is not readable here; reachability is what we can check
            return
        sock.settimeout(timeout_s)
        head = b""
        try:
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    break
                head += chunk
        except OSError:
            pass
    if len(head) < 8:
        raise EngineAddressError(f"engine.address = {address!r:.80}: a service there sent no Dask handshake within "
                                 f"{timeout_s:g} s (got {head!r}); allowed: the address of a running Dask scheduler")
    (length,) = struct.unpack("<Q", head)
    if not 0 < length <= MAX_HANDSHAKE_BYTES:
        raise EngineAddressError(f"engine.address = {address!r:.80}: the service there is not a Dask scheduler (it "
                                 f"sent {head!r}); allowed: the address of a running Dask scheduler")


@contextlib.contextmanager
def dask_client(engine: Engine) -> Iterator[Any]:
    """A ``distributed.Client`` for ``engine``: attached to a running cluster or to one started here."""
    from distributed import Client, LocalCluster

    if engine.backend == "dask" and engine.address:
        probe_scheduler(engine.address)  # seconds and one line, not 30 s and a traceback (or a 3 EiB read)
        with Client(engine.address, timeout=f"{10 * PROBE_TIMEOUT_S:g}s") as client:
            yield client
        return
    if engine.backend == "dask-slurm":
        from dask_jobqueue import SLURMCluster

        s = engine.slurm
        cluster = SLURMCluster(cores=1, processes=1, memory=s.memory, walltime=s.walltime,
                               queue=s.queue or None, account=s.account or None)
        cluster.scale(jobs=engine.n_workers)
    else:
        # one single-threaded process per worker: cells are CPU-bound Python + numpy,
        # and torch inside a cell is pinned to one thread (no oversubscription)
        cluster = LocalCluster(n_workers=engine.n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


@contextlib.contextmanager
def session(engine: Engine) -> Iterator[Any]:
    """Hold the engine's resources across several maps (one Dask cluster, not one per map).

    Local processes: one pool of ``workers`` processes for every map of the session, so a later map's tasks run in
    processes that have already imported the suite (torch included) and built what their caches keep (the
    evaluation's envs, its loaded learners) instead of paying that again in a fresh pool."""
    if engine.backend == "local-processes":
        if engine.n_workers <= 1:
            yield None
            return
        with ProcessPoolExecutor(max_workers=engine.n_workers) as pool:
            yield pool
    else:
        with dask_client(engine) as client:
            yield client


def map_ordered(fn: Callable[[Any], Any], items: Sequence[Any], engine: Engine = Engine(), *,
                keys: Sequence[str] | None = None, on_result: Callable[[int, Any], None] | None = None,
                progress: bool = False, desc: str = "cells", client: Any = None) -> list[Any]:
    """``[fn(x) for x in items]`` on ``engine``, returned in item order.

    ``keys`` name the items (unique; e.g. a hash of the cell's definition): Dask uses
    them as task keys, so a resubmitted item is recognised, and a task lost with its
    worker is re-run on another one (Dask's own fault tolerance). ``client`` is the
    value of an open :func:`session` (else a Dask backend starts its own for this map).
    """
    from tqdm.auto import tqdm

    items = list(items)
    if keys is not None and len(set(keys)) != len(items):
        raise ValueError("map_ordered: keys must be unique, one per item")
    out: list[Any] = [None] * len(items)
    if not items:
        return out
    bar = tqdm(total=len(items), desc=desc, disable=not progress)

    def done(i: int, value: Any) -> None:
        out[i] = value
        if on_result is not None:
            on_result(i, value)
        bar.update(1)

    try:
        if engine.backend == "local-processes" and engine.n_workers <= 1:
            for i, item in enumerate(items):
                done(i, fn(item))
        elif engine.backend == "local-processes" and isinstance(client, ProcessPoolExecutor):
            _pool_map(client, fn, items, done)  # the session's pool (:func:`session`)
        elif engine.backend == "local-processes":
            with ProcessPoolExecutor(max_workers=min(engine.n_workers, len(items))) as pool:
                _pool_map(pool, fn, items, done)
        elif client is None:
            with dask_client(engine) as own:
                _dask_map(own, fn, items, keys, done)
        else:
            _dask_map(client, fn, items, keys, done)
    finally:
        bar.close()
    return out


def _pool_map(pool: ProcessPoolExecutor, fn: Callable, items: list, done: Callable) -> None:
    futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
    for fut in as_completed(futures):
        done(futures[fut], fut.result())


def _dask_map(client: Any, fn: Callable, items: list, keys: Sequence[str] | None, done: Callable) -> None:
    from distributed import as_completed as dask_completed

    # retries: a task that *raises* is retried once; a task whose worker *dies* is
    # rescheduled by the scheduler itself (distributed's allowed-failures)
    futures = client.map(fn, items, key=list(keys) if keys is not None else None, pure=False, retries=1)
    index = {f.key: i for i, f in enumerate(futures)}
    for fut in dask_completed(futures):
        done(index[fut.key], fut.result())
        fut.release()
