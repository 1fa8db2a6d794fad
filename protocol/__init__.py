"""Every wire format and schema of evix; imports neither trio nor cffi.

- `events`: the NDJSON event format (`evix eval`'s output) and attribute path quoting.
- `config`: EvalConfig, its canonical JSON and session key.
- `wire`: the Cap'n Proto worker protocol (schema/worker.capnp) and its framing.
- `flakeref`: flake reference strings.
- `query`: filters over a warm derivation graph.
- `framing`, `rpc`, `endpoint`: the daemon's JSON-RPC 2.0 (one message per line), its
  methods' params and error codes, and where its socket is.
- `argtypes`, `loglevel`: what `evix` and `evixd` share on their command lines.
- `environment`: the environment variables evix processes pass to each other.
"""
