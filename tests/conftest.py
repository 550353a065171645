"""Session-wide test settings: Hypothesis profiles, one Dask cluster, clean repository copies, markers.

* Hypothesis: the ``ci`` profile (selected by ``CI=true``, as CI services set it, or by
  ``HYPOTHESIS_PROFILE=ci``, as ``make test`` sets it) runs fewer examples per property with no example database, so a clean CI
  machine spends its time proportionately; ``dev`` is what a developer gets. A property that pins its
  own ``max_examples`` above the profile's runs the profile's share of it in CI (:func:`ci_examples`);
  the fuzz suites scale with ``BENCH_FUZZ_EXAMPLES`` / ``HW_FUZZ_SCALE``.
* ``dask_engine``: one 2-worker local Dask cluster per test module that uses it, stopped when the module ends
  (an idle cluster costs CPU), as an :class:`~bench.pipeline.engine.Engine` pointing at it.
* ``clean_repo``: a copy of this checkout that holds nothing a previous ``make repro``, ``make lab`` or
  test run left behind (:mod:`repo_state`).
* marker ``live``: tests that drive real processes, network namespaces or a whole pipeline (minutes
  each). They run in ``make test``; ``-m "not live"`` leaves them out for a quick loop.
"""

from __future__ import annotations

import logging
import os
import signal

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=30, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI", "").lower() in ("true", "1") else "dev")
settings.load_profile(PROFILE)
#: the ci profile's share of a property's examples (30 of the developer's 100)
CI_SHARE = 0.3
#: a property that pins a small count (an expensive one: the bound's DP, a learner) keeps up to this many in CI
CI_FLOOR = 10
#: test modules that scale their own pinned counts from the environment (below)
SELF_SCALED = ("test_fuzz_", "test_hw_fuzz")
if PROFILE == "ci":
    # the fuzz suites pin their own counts (300 inputs per loader and kind; hw parsers 60-600): a third in CI,
    # the same proportion as the profile's 30 of 100, unless the run sets them (the counts are printed)
    os.environ.setdefault("BENCH_FUZZ_EXAMPLES", "100")
    os.environ.setdefault("HW_FUZZ_SCALE", "0.34")


def ci_examples(pinned: int) -> int:
    """A property's pinned ``max_examples`` under the ci profile: the profile's share of it, never below
    ``min(pinned, CI_FLOOR)`` (a property pinned at 60 runs 18; one pinned at 4 keeps its 4)."""
    return max(min(pinned, CI_FLOOR), round(pinned * CI_SHARE))


#: test files (and notebooks, nbval) that take the longest, longest first (CPU seconds of `make test`'s parallel pass,
#: issue 25: per-file process + reaped-children CPU under xdist, one thread per worker, measured on the shared 2-core
#: host at load ~22, 2026-12-07). Under `make test` (pytest-xdist, --dist loadfile, --no-loadscope-reorder) files are
#: handed out in collection order, one file per free worker: starting the long ones first (longest-processing-time
#: first) keeps one of them from starting last while the other worker idles (xdist's own order, most tests first,
#: started these last). A name missing here only costs time: such files run after these, in their usual order.
LONG_FIRST = ("tests/test_pipeline.py",  # 123: a CI-sized `dvc repro` (115 of it), a no-op one, `dvc status`
              "tests/test_attention.py",  # 54: the shipped accuracy-vs-xi curve recomputed (48)
              "tests/policies/test_dvfo.py",  # 41: the 24,000-step learning fixture (27)
              "tests/test_perf.py",  # 34 (58 before `perf --quick` timed the vector envs over 2,000 steps, not 40,000)
              "tests/test_sweep.py",  # 32 with the dask cluster
              "notebooks/04_report.ipynb",  # 28 (nbval, --nbval-lax; the kernel's CPU)
              "tests/test_docs.py",  # 28: README's and docs/extending.md's examples, each in a fresh interpreter
              "tests/test_pipeline_units.py",  # 24
              "tests/test_sweep_store.py",  # 21
              "notebooks/03_evaluate.ipynb",  # 13
              "notebooks/01_profile.ipynb",  # 13
              "notebooks/02_train.ipynb")  # 7


def _long_first(items) -> None:
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    # a stable sort: the tests of one file (a notebook's cells) keep their order
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


#: where the `serial` tests live: `make test`'s second pass collects only these (collecting every test module again,
#: importing bench, torch and pandas with them, cost ~10 s of a 1.5-minute pass); a `serial` test elsewhere stops
#: the session (below) instead of silently never running in `make test`
SERIAL_DIR = "tests/testbed/"


def pytest_collection_modifyitems(config, items):
    _serial_where_make_test_looks(items)
    _long_first(items)
    _ci_examples(items)


def _serial_where_make_test_looks(items) -> None:
    stray = [item.nodeid for item in items
             if item.get_closest_marker("serial") and not item.nodeid.startswith(SERIAL_DIR)]
    if stray:
        raise pytest.UsageError(f"`serial` tests outside {SERIAL_DIR} (the only place `make test`'s serial pass "
                                f"collects; move them or widen SERIAL_DIR and the Makefile's test target): {stray}")


def _ci_examples(items) -> None:
    """Under the ci profile, a property that pins its own ``@settings(max_examples=N)`` (which overrides the
    profile) runs :func:`ci_examples` (N) instead, so CI spends the same share on every property (issue 25);
    the developer's profile runs N. The fuzz suites scale themselves (BENCH_FUZZ_EXAMPLES, HW_FUZZ_SCALE)."""
    if PROFILE != "ci":
        return
    done = set()
    for item in items:
        test = getattr(item, "obj", None)
        pinned = getattr(test, "_hypothesis_internal_use_settings", None)
        if pinned is None or id(test) in done or item.path.name.startswith(SELF_SCALED):
            continue
        done.add(id(test))
        if pinned.max_examples > settings.default.max_examples:
            test._hypothesis_internal_use_settings = settings(pinned, max_examples=ci_examples(pinned.max_examples))


# Under pytest-xdist (`make test`: -n 2) each worker gets its share of the cores for torch's and BLAS's thread
# pools, read from the environment when they start (here: before any test imports them), and inherited by the
# notebook kernels and pipeline subprocesses a test starts. Two workers on two cores with torch's default pool
# (one thread per core) oversubscribe: a learner's one-request forward pass then spends ~50x longer waking
# and joining threads than computing (profiled on this 2-core machine: 2.4 ms vs 45 us). A value the run sets wins.
# The same share bounds a training run's side-work pool (BENCH_TRAIN_WORKERS, bench/pipeline/training.py: else one
# process per core, i.e. 4 busy processes on 2 cores); test_pipeline_units sets it itself where the pool is tested.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _share = max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BENCH_TRAIN_WORKERS"):
        os.environ.setdefault(_var, str(_share))


def pytest_configure(config):
    config.addinivalue_line("markers", "live: drives real processes, namespaces or a whole pipeline (minutes); "
                                       "runs in `make test`, `-m 'not live'` skips it")
    config.addinivalue_line("markers", "pipeline: a live test that runs a whole (CI-sized) DVC pipeline: long, but "
                                       "not timing-sensitive")
    config.addinivalue_line("markers", "serial: timing-sensitive (the live testbed's latencies and timeouts): "
                                       "`make test` runs these alone after the parallel pass of everything else")


@pytest.fixture(scope="module")
def dask_engine():
    """An Engine on one 2-worker local Dask cluster shared by every test of a module (today one module uses it:
    tests/test_sweep.py). Module, not session, scope: a session's cluster lived on after its last user until the
    worker's session ended, and an idle cluster is not free (its scheduler here and its 2 nannies and 2 workers
    tick, heartbeat and monitor themselves: 6.9 CPU-s per idle minute, measured on the 2-core host; at the end of a
    50-minute `make test` under load its workers' 95 CPU-s, their work included, were reaped, issue 25). Starting
    one costs ~2 s."""
    distributed = pytest.importorskip("distributed")
    from bench.pipeline.engine import Engine

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster:
        yield Engine("dask", address=cluster.scheduler_address)


@pytest.fixture(scope="module")
def clean_repo(tmp_path_factory):
    """A git-initialised copy of this checkout without any state a previous run left (one per test module)."""
    import subprocess

    from bench.paths import REPO_ROOT
    from repo_state import clean_copy, leftover_state

    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: a clean copy is built from `git ls-files`")
    dst = clean_copy(REPO_ROOT, tmp_path_factory.mktemp("repo") / "repo")
    assert leftover_state(dst) == [], leftover_state(dst)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    return dst


@pytest.fixture(autouse=True)
def _world_env_restored():
    """A stage's `apply_world` sets BENCH_RADIO_PROFILE for the process (bench/config.py): a test that calls it
    (a notebook run in-process, a stage test) must not hand its radio profile to the next test of the same worker,
    whose subprocesses would then load another profile (seen in CI: a perturbed era2018 constant had no effect)."""
    name = "BENCH_RADIO_PROFILE"
    before = os.environ.get(name)
    yield
    if before is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = before


@pytest.fixture
def sigint_not_ignored():
    """SIGINT as an interactive shell leaves it, whatever launched the tests.

    A command started in the background by a non-interactive shell (`make test &` in a script, a CI runner
    without job control) inherits SIGINT ignored, and POSIX keeps it ignored through exec: a `sh -c 'kill -INT $$'`
    would then live on and exit 0, and a forwarded SIGINT would not end a command, exactly as in a shell started
    that way. The tests that send SIGINT check what happens to a process that does not ignore it, so
    they give the processes they spawn SIGINT's default disposition (a Python handler here becomes SIG_DFL in the
    child). Found by a fresh-clone `.ci/run` started in the background of a non-interactive shell (issue 25).
    """
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)
