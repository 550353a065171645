"""Models of the world the simulator is built from: DNN workloads, device profiles and
their fit, network links, scenarios, and the DVFO attention curve. Imports only ``hw``
(for the trace schema) and third-party libraries."""
