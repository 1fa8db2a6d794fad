"""Every wire format and schema of evix, each defined once; imports neither trio nor cffi.

- `events`: the NDJSON event format (`evix eval`'s output): its encoders, the one decoder
  that tells an event's kind, and attribute path quoting.
- `config`: EvalConfig, its canonical JSON and session key.
- `wire`: the Cap'n Proto worker protocol (schema/worker.capnp) and its one frame parser.
- `in_flight`: the 16-byte word where a worker marks the item it is on (its C marker in
  nixffi is built from this definition).
- `flakeref`: flake reference strings.
- `query`: filters over a warm derivation graph.
- `framing`, `rpc`, `rpc_results`, `endpoint`: the daemon's JSON-RPC 2.0 (one message per
  line), its methods' params, error codes and result shapes, and where its socket is.
- `argtypes`, `loglevel`: what `evix` and `evixd` share on their command lines.
- `environment`: the environment variables evix processes pass to each other.
"""
