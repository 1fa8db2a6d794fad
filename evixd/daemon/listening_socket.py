"""The daemon's listening socket: socket activation, safe binding, peer credentials.

Binding never destroys what it does not understand: a path that is not a socket is an
error, a socket that answers is another daemon ("already running"), and only a socket
that refuses connections is stale and replaced. The socket is created under umask 077
and set to 0600, so other users cannot even connect; SO_PEERCRED then checks each peer
anyway (the file mode is easy to widen by mistake, and systemd creates its own socket).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from dataclasses import dataclass

from evixd.engine.errors import EvixError

log = logging.getLogger("evix.daemon")

SD_LISTEN_FDS_START = 3
PROBE_TIMEOUT = 1.0


class SocketSetupError(EvixError):
    """The daemon cannot listen where it was asked to (the message says why and what to do)."""


class AlreadyRunningError(SocketSetupError):
    """Another daemon answers on the socket path."""


@dataclass
class ListeningSocket:
    """A bound, listening Unix stream socket and whether we own (and so remove) its file."""

    sock: socket.socket
    path: str
    owned: bool
    inode: tuple[int, int] | None = None

    def remove(self) -> None:
        """Unlinks the socket file if it is still the one we bound (never someone else's)."""
        if not self.owned or self.inode is None:
            return
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == self.inode:
            os.unlink(self.path)


def from_systemd(environ: dict[str, str] | None = None) -> ListeningSocket | None:
    """The socket systemd passed us (LISTEN_FDS/LISTEN_PID), or None when there is none.

    The variables are removed from the environment so worker processes don't see them."""
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    if not pid or not count:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    if pid != str(os.getpid()):
        log.debug("LISTEN_PID=%s is not us (%d): ignoring LISTEN_FDS", pid, os.getpid())
        return None
    try:
        n = int(count)
    except ValueError:
        raise SocketSetupError(f"LISTEN_FDS is not a number: {count!r}") from None
    if n < 1:
        return None
    if n > 1:
        log.warning("systemd passed %d sockets; using the first (fd %d)", n, SD_LISTEN_FDS_START)
    try:
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    except OSError as e:
        raise SocketSetupError(f"the socket systemd passed (fd {SD_LISTEN_FDS_START}) is unusable: {e}") from None
    if sock.family != socket.AF_UNIX or sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != socket.SOCK_STREAM:
        sock.detach()
        raise SocketSetupError(
            f"fd {SD_LISTEN_FDS_START} from systemd is not a Unix stream socket: use ListenStream= with a path"
        )
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise SocketSetupError(f"fd {SD_LISTEN_FDS_START} from systemd is not listening (Accept=no is required)")
    sock.set_inheritable(False)
    path = sock.getsockname()
    return ListeningSocket(sock, path if isinstance(path, str) else repr(path), owned=False)


def bind_unix(path: str, backlog: int = 128) -> ListeningSocket:
    """Listens on `path` (mode 0600), replacing a stale socket; see the module docstring."""
    _clear_path(path)
    parent = os.path.dirname(path) or "."
    try:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    except OSError as e:
        raise SocketSetupError(f"cannot create the socket's directory {parent}: {e.strerror or e}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o077)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(backlog)
        st = os.lstat(path)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise AlreadyRunningError(f"another evixd is already running on {path}") from None
        raise SocketSetupError(f"cannot listen on {path}: {e.strerror or e}") from None
    return ListeningSocket(sock, path, owned=True, inode=(st.st_dev, st.st_ino))


def _clear_path(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketSetupError(f"{path} exists and is not a socket: not touching it (move it away or use --socket)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        log.info("removing stale socket %s", path)
        os.unlink(path)
        return
    except FileNotFoundError:
        return
    except TimeoutError:
        raise AlreadyRunningError(f"a daemon on {path} accepts no connections but holds the socket") from None
    except OSError as e:
        raise SocketSetupError(f"cannot check the existing socket {path}: {e.strerror or e}") from None
    finally:
        probe.close()
    raise AlreadyRunningError(f"evixd is already running on {path}")
