"""The template: a worker that has loaded (and warmed) the input once and forks evaluation
workers on request, so replacing a worker costs a fork, not a start.

Safe to fork because the template is single-threaded when it forks (checked: Boehm's GC
markers and anything else would not survive into the child) and evaluates nothing after
warming, so its heap stays small and every child starts from the same state. A child is
an ordinary worker from then on: it reads Setup (which must carry the template's config),
answers Ready, and evaluates batches on the pipes the master gave it. The template reaps
its children and reports how each ended, since the master is not their parent.

Warming (on by default; `--no-warm-template` turns it off; warming.py): before answering
Ready the template evaluates the first derivation, and later, on the master's request, the
root's next derivations (when a worker is first replaced) and items that made a worker pass
the memory limit, so that its forks share what they forced. No
event changes: the children evaluate every attribute themselves. --max-memory counts a
fork's own pages only (protocol/own_memory.py), so that memory is the template's, counted
once; the master holds the template to the limit and --timeout while it warms, as it would
a fresh fork evaluating that item, so an item too big for a worker is never evaluated here
instead. Past the limit the template is killed: before Ready, the run then forks from one
that does not warm; later, its forks end with it (their items are requeued), a new template
starts and the item is left to the workers.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
from collections.abc import Callable

import nixffi
from protocol import template, wire
from protocol.config import EvalConfig
from protocol.environment import CONTROL_FD_ENV, EVALUATOR_NAME, TEMPLATE_NAME
from protocol.lifetime import die_with_parent, set_process_name

from .evaluator import Evaluator
from .serve import FrameReader, in_flight_marker, ready, serve_batches, write_all
from .warming import Warmer


def fork_refusal(root: nixffi.Value, writes_store: bool) -> str | None:
    """Why this process must not fork workers (None: it may), checked once.

    Only a local store can be shared by forks: a daemon store's connection would be one
    socket for every child, interleaving their requests. And the local store's temp-roots
    file is named after the pid that opened it and held under an exclusive lock; opened
    lazily in each child it would be the same name, and every child but one would wait on
    the lock forever. So the template opens it now (by adding a tiny file to the store,
    which adds a temp root), and its children share the one open file and its lock. In
    Nix's read-only mode (`writes_store` False: --no-instantiate) nothing is added to the
    store, so there is no temp root to share, and adding that file there made later
    evaluations copy sources after all: it is skipped."""
    uri = root.state.store.uri
    if uri != "local" and not uri.startswith(("local?", "/")):
        return f"the store is '{uri}', not a local store: forked workers would share its connection"
    if not writes_store:
        return "Nix's read-only mode (--no-instantiate) is not used with forked workers"
    try:
        root.state.eval_string('builtins.toFile "evix-template" ""', "/").force()
    except nixffi.NixError as e:
        return f"cannot open the store's temp roots before forking: {e.message}"
    return None


def serve_template(frames: FrameReader, out_fd: int, setup_config: bytes, root: nixffi.Value,
                   evaluator: Callable[[], Evaluator], config: EvalConfig, writes_store: bool) -> int:
    """Warms, answers Ready, then forks a worker per request until the master goes away."""
    control = socket.socket(fileno=int(os.environ[CONTROL_FD_ENV]))
    set_process_name(TEMPLATE_NAME)
    refusal = fork_refusal(root, writes_store)
    warmer = Warmer(root, config)
    if config.warm_template and refusal is None:
        warmer.first()
    write_all(out_fd, ready(root.state.store.store_dir))
    reaped_r, reaped_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(reaped_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears it
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, "control")
    in_fd = frames.fd
    selector.register(in_fd, selectors.EVENT_READ, "stdin")
    selector.register(reaped_r, selectors.EVENT_READ, "child")
    while True:
        for key, _ in selector.select():
            if key.data == "child":
                os.read(reaped_r, 4096)
                _report_exits(control)
            elif key.data == "stdin":
                if _master_gone(frames):
                    return 0
            else:
                packet, fds, _, _ = socket.recv_fds(control, template.MAX_PACKET, template.FORK_FDS)
                if not packet:
                    return 0
                if packet.startswith(template.WARM):
                    reply: template.TemplateEvent = template.Warmed(warmer.request(template.decode_warm(packet)))
                else:
                    reply = template.ForkFailed(refusal) if refusal is not None else _fork(
                        fds, setup_config, evaluator, (control, selector, reaped_r, reaped_w, in_fd, out_fd),
                        root.state.store.store_dir)
                for fd in fds:
                    os.close(fd)
                control.send(template.encode_event(reply))


def _master_gone(frames: FrameReader) -> bool:
    """The master writes nothing on the template's stdin after setup but Shutdown; EOF or
    Shutdown both end the template (its children die with it: die_with_parent)."""
    try:
        msg = wire.decode_request(frames.read())
    except (EOFError, wire.ProtocolError):
        return True
    return isinstance(msg, wire.Shutdown)


def _report_exits(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        control.send(template.encode_event(template.Exited(pid, status)))


def _fork(fds: list[int], setup_config: bytes, evaluator: Callable[[], Evaluator],
          template_fds: tuple, store_dir: str) -> template.TemplateEvent:
    if len(fds) != template.FORK_FDS:
        return template.ForkFailed(f"fork request with {len(fds)} fds, expected {template.FORK_FDS}")
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:  # never fork a multi-threaded Nix: the GC's other threads would be gone
        return template.ForkFailed(f"template has {threads} threads; refusing to fork")
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError as e:
        return template.ForkFailed(f"fork failed: {e.strerror or e}")
    if pid:
        return template.Forked(pid)
    code = 70
    try:
        code = _child(fds, setup_config, evaluator, template_fds, parent, store_dir)
    except BaseException as e:  # never return into the template's loop
        print(f"evix worker: forked worker failed: {e!r}", file=sys.stderr)
    finally:
        os._exit(code)


def _child(fds: list[int], setup_config: bytes, evaluator: Callable[[], Evaluator],
           template_fds: tuple, parent: int, store_dir: str) -> int:
    """The forked worker: its own pipes, its own in-flight word, then the usual conversation."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    control, selector, reaped_r, reaped_w, template_in, template_out = template_fds
    selector.close()
    control.close()
    for fd in (reaped_r, reaped_w, template_out):
        os.close(fd)
    stdin, stdout, stderr, word = fds
    os.dup2(stdin, template_in)  # the template's stdin is fd 0: now the master's pipe to us
    os.dup2(stderr, 2)
    os.dup2(stderr, 1)  # stray output from Nix must not corrupt frames
    for fd in (stdin, stderr):
        os.close(fd)
    die_with_parent(parent)
    set_process_name(EVALUATOR_NAME)
    frames = FrameReader(template_in)
    try:
        setup = wire.decode_request(frames.read())
    except EOFError:
        return 0
    if not isinstance(setup, wire.Setup) or setup.config != setup_config:
        write_all(stdout, wire.encode_response(wire.Fatal("a forked worker must be set up with its template's config")))
        return 2
    write_all(stdout, ready(store_dir))
    return serve_batches(frames, stdout, evaluator(), in_flight_marker(word))

