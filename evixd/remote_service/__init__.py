"""`evix worker --listen`: the remote worker service. Each master connection is relayed to an
evaluation worker of this machine, started by the engine as for a local run."""
