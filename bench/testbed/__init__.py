"""A live testbed on one machine: policies acting on real inference over a real, shaped link.

One module per job:

* :mod:`~bench.testbed.link` - network namespace, veth pair, ``htb`` shaping per emulated radio,
  cleanup (context manager, SIGTERM/Ctrl-C, ``python -m bench testbed-cleanup``);
* :mod:`~bench.testbed.proxy` - the user-space delaying TCP proxy (RTT; the kernel has no netem);
* :mod:`~bench.testbed.server` - the cloud: warm full models and split tails behind Starlette/uvicorn;
* :mod:`~bench.testbed.models` - workloads, split heads/tails (``torch.fx``), wire formats;
* :mod:`~bench.testbed.edge` - local/offloaded/split inference with threads + affinity; stress-ng co-runners;
* :mod:`~bench.testbed.loop` - the closed loop and the simulator twin (``python -m bench testbed``);
* :mod:`~bench.testbed.compare` - the ``testbed`` DVC stage: simulator vs testbed table and figure.

Nothing here is imported by the rest of the suite; it imports the world, the simulator and the policies.
"""
