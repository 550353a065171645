"""Performance benchmarks (``python -m bench perf``): simulator throughput, decision
latency, sample efficiency beside Stable-Baselines3, sampler overhead. Speed goals live
here, never in timed tests."""
