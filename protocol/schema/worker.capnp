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
