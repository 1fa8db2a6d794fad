"""The contract between a master and the worker processes it starts: environment variables
and the stack size (only the standard library: the CLI reads them before anything else loads)."""

import resource

WORKER_ENV = "EVIX_WORKER"
"""Set in a worker's environment. An embedder whose binary re-executes itself to host
workers checks it at start-up and calls `run_worker()` when it is set."""

IN_FLIGHT_FD_ENV = "EVIX_IN_FLIGHT_FD"
"""The fd of the worker's in-flight word (protocol.in_flight), where it marks each item it starts."""


STACK_BYTES = 64 << 20
"""Nix uses ~2 KiB of C stack per call level: on the default 8 MiB a deep recursion segfaults
before Nix's own max-call-depth (10,000) can report it as an error."""


def raise_stack_limit() -> bool:
    """Raises this process's RLIMIT_STACK soft limit to STACK_BYTES (as the hard limit allows).

    Takes effect for programs exec'd afterwards. Returns True when it changed the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft == resource.RLIM_INFINITY or soft >= STACK_BYTES:
        return False
    want = STACK_BYTES if hard == resource.RLIM_INFINITY else min(STACK_BYTES, hard)
    if want <= soft:
        return False
    resource.setrlimit(resource.RLIMIT_STACK, (want, hard))
    return True


CONTROL_FD_ENV = "EVIX_CONTROL_FD"
"""The fd of a worker's end of a SOCK_SEQPACKET socket pair: a worker set up as a template
(Setup.template) takes fork requests on it and reports its children's exits
(protocol.template)."""

TEMPLATE_NAME = "evix-template"
EVALUATOR_NAME = "evix-eval"
"""Process names (as `ps -o comm` and psutil's name() show them) of a template and of a
worker that evaluates, so that people and tests can tell them apart."""
