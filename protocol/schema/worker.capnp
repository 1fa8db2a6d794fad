# The worker protocol: one scheduler (master) and one evaluator process, over a pipe to a
# local worker or a TCP connection to `evix worker --listen`. Each message is one Cap'n
# Proto message in the standard (unpacked) stream framing.
#
# Master -> worker: setup, then work* (one at a time), then shutdown. A worker set up as a
# template answers ready, then forks workers on its control socket (protocol/template.py).
# Worker -> master: ready (or fatal) after setup; one result per work.
#
# Bulk data (work items, expansions, events) travels as JSON inside Data fields: building a
# Cap'n Proto struct per attribute from Python costs ~8 us, orjson ~1 us, and the events are
# JSON on the way out anyway, so the master can print them without decoding them.
@0xc2c4aa3402db40ea;

struct Request {
  union {
    setup @0 :Setup;
    work @1 :Work;
    shutdown @2 :Void;
  }
}

struct Setup {
  protocolVersion @0 :UInt32;
  config @1 :Data;            # protocol.config.EvalConfig as JSON (its maxMemoryMb: recycle past it)
  template @2 :Bool;          # load and warm the input, then only fork workers (protocol/template.py)
}

struct Work {
  batch @0 :UInt64;
  items @1 :Data;             # JSON [[parentAttrPath, [childName, ...] | null], ...]; null: the path itself
}

struct Response {
  union {
    ready @0 :Ready;
    result @1 :Result;
    fatal @2 :Text;           # the input itself cannot be loaded: the whole run fails
  }
}

struct Ready {
  protocolVersion @0 :UInt32;
  nixVersion @1 :Text;
  pid @2 :UInt32;
  storeDir @3 :Text;          # the worker's Nix store directory (a remote checks the master's against it)
}

struct Result {
  batch @0 :UInt64;
  events @1 :Data;            # NDJSON: one event per line, as printed by `evix eval`
  expansions @2 :Data;        # JSON [[attrPath, [childName, ...]], ...]: attrsets to traverse
  done @3 :UInt32;            # items of the batch evaluated; the rest were not started
  derivations @4 :UInt32;
  errors @5 :UInt32;
  recycle @6 :Bool;           # over its memory threshold: replace this worker once answered
  peakRssKib @7 :UInt64;
  outOfMemory @8 :Text;       # non-empty: the item at `done` passed the GC heap cap (Nix's message),
                              # not evaluated to an event; the master retries it alone
}

# ---- remote workers: a master and `evix worker --listen`, over TCP (optionally TLS) -----
# Master -> service: hello, then work* (pipelined), reset (a new evaluator on the same
# connection: after a death or a recycle), shutdown. Service -> master: ready or refused
# after hello; one result or died per work; alive every second (a silent service has stalled).

struct RemoteRequest {
  union {
    hello @0 :Hello;
    work @1 :Work;
    reset @2 :Bool;           # fresh: an evaluator that has evaluated nothing before
    shutdown @3 :Void;
    source @4 :SourceChunk;   # a shipped input tree, in chunks, after `needSource`
  }
}

struct Hello {
  protocolVersion @0 :UInt32;
  token @1 :Text;
  storeDir @2 :Text;          # the master's store dir: drvPaths mean the same only if equal
  config @3 :Data;            # protocol.config.EvalConfig as JSON, without what is the master's own
  sourceHash @4 :Text;        # non-empty: the config's input is a shipped tree of this hash
  sourceName @5 :Text;        # its directory name, kept on the remote (store paths keep it)
}

struct SourceChunk {
  data @0 :Data;              # a piece of an uncompressed tar of the tree
  last @1 :Bool;
}

struct RemoteResponse {
  union {
    ready @0 :Ready;
    refused @1 :Text;         # why the service will not serve this master (the connection then closes)
    result @2 :Result;
    died @3 :Died;
    alive @4 :Void;
    needSource @5 :Void;      # the service has no tree of hello.sourceHash: send it
    fatal @6 :Text;           # the input cannot be loaded there
  }
}

struct Died {
  batch @0 :UInt64;
  inFlight @1 :Int64;         # index of the item it was on; -1: unknown
  reason @2 :Text;
  memory @3 :Bool;
  innocent @4 :Bool;
}
