"""What a restart costs in evaluation, apart from any engine: the CPU time a fresh fork of a
warm template spends on a batch, less what a worker that evaluated every batch before it
spends on the same batch. The difference is what the replaced worker had evaluated and its
successor must evaluate again (a scope's base packages, shared dependencies), so no
scheduler can make a restart cheaper than this on the input.

    python bench/restart_rebuild.py [FILE] [--batch N] [--warm K] [--sample J J ...]

FILE defaults to bench/out/realistic-nofn.nix. The template here is this process: it loads
FILE and forces the drvPaths of the root's first K derivations (K=1: what evix's warming
template does before its first fork). One child walks the whole input in batches of N items
(as the scheduler cuts them), timing each; then, for each batch J sampled (default: all), a
fresh child evaluates batch J alone. Run it in `scripts/dev shell` (the venv and Nix).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evix_worker.main import ensure_stack  # noqa: E402

Batch = list[list[Any]]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def in_child(work: Callable[[], Any]) -> Any:
    """`work()` run in a fork of this process; its JSON result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.write(w, orjson.dumps(work()))
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 20):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return orjson.loads(b"".join(chunks))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default=str(ROOT / "bench/out/realistic-nofn.nix"))
    ap.add_argument("--batch", type=int, default=64, help="items per batch (default 64)")
    ap.add_argument("--warm", type=int, default=1, help="derivations the template warms (default 1)")
    ap.add_argument("--sample", type=int, nargs="*", help="batch numbers to restart at (default: all)")
    args = ap.parse_args()
    ensure_stack()

    import nixffi
    from nixffi.traverse import Kind, classify_child
    from evix_worker.evaluator import Evaluator
    from evix_worker.loader import load
    from protocol.config import EvalConfig

    nixffi.init()
    path = os.path.abspath(args.file)
    config = EvalConfig(file=path, base_dir=os.path.dirname(path))
    root = load(config)
    warmed, began = 0, cpu_seconds()
    for name in root.names():
        if warmed >= args.warm:
            break
        try:
            kind, value = classify_child(root, name.encode(), False)
            if kind == Kind.DERIVATION and value is not None:
                value.get("drvPath").force()
                warmed += 1
        except nixffi.NixError:
            pass
    print(f"template: {warmed} derivation(s) warmed, up to {name!r}, in {cpu_seconds() - began:.2f} s CPU", file=sys.stderr)

    def walk() -> dict[str, Any]:
        evaluator = Evaluator(root, config)
        queue: list[Batch] = [[[[], None]]]
        done: list[Batch] = []
        costs: list[float] = []
        while queue:
            batch = queue.pop(0)
            began = cpu_seconds()
            outcome = evaluator.run(batch, lambda _: None)
            costs.append(cpu_seconds() - began)
            done.append(batch)
            for expansion in outcome.expansions:
                parent, names = orjson.loads(expansion)
                queue += [[[parent, names[i:i + args.batch]]] for i in range(0, len(names), args.batch)]
        return {"batches": done, "costs": costs}

    walked = in_child(walk)
    batches, costs = walked["batches"], walked["costs"]
    print(f"{len(batches)} batches, {sum(costs):.2f} s CPU in one worker", file=sys.stderr)

    def alone(j: int) -> Callable[[], float]:
        def work() -> float:
            began = cpu_seconds()
            Evaluator(root, config).run(batches[j], lambda _: None)
            return cpu_seconds() - began
        return work

    extras = []
    for j in args.sample if args.sample else range(1, len(batches)):
        fresh = in_child(alone(j))
        extras.append(fresh - costs[j])
        where = ".".join(batches[j][0][0]) or "<root>"
        print(f"batch {j:3d} {where:28s} after the others {costs[j]:.3f} s, in a fresh fork {fresh:.3f} s, "
              f"extra {extras[-1]:+.3f} s")
    q = statistics.quantiles(extras, n=4) if len(extras) > 1 else extras * 3
    print(f"extra CPU per restart: median {statistics.median(extras):.3f} s (quartiles {q[0]:.3f} / {q[2]:.3f}), "
          f"mean {statistics.fmean(extras):.3f} s, max {max(extras):.3f} s over {len(extras)} restart points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
