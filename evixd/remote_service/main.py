"""`evix worker --listen HOST:PORT`: a remote evaluation worker service for masters on other
machines (`evix eval --remote HOST:PORT SYSTEMS N`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import trio

from protocol.argtypes import positive_count, positive_seconds
from protocol.helpformat import ManPageFormatter
from protocol.loglevel import add_logging_options, setup_logging
from protocol.remotes import TOKEN_ENV, EndpointError, split_endpoint

from .relay import ServiceSettings
from .server import WorkerService, server_tls
from .sources import SourceCache

DESCRIPTION = """\
Serve evaluation to evix masters over TCP. Each connection gets its own evaluation worker on
this machine (same memory limit, recycling and restarts as a local worker of `evix eval`).
"""

EPILOG = f"""\
security: a master must present the shared token (--token or ${TOKEN_ENV}); it then runs Nix
evaluation here with this user's rights, limited to the Nix options a master may set
(no plugin-files, allow-unsafe-native-code-during-evaluation, builders...). The token
travels in clear text unless TLS is on (--tls-cert/--tls-key; masters then give
--remote-tls-ca or --remote-tls-fingerprint). Without TLS, listen on loopback, a VPN or an
SSH tunnel only.

exit status: runs until stopped (130 on Ctrl-C, 143 on SIGTERM); 1 when it cannot listen on
the address or load the TLS certificate or key; 2 for a usage error (no token, --tls-cert
without --tls-key, a bad address).

examples:
  EVIX_REMOTE_TOKEN=s3cret evix worker --listen 0.0.0.0:7357
  evix worker --listen [::]:7357 --token-file /etc/evix/token --tls-cert cert.pem --tls-key key.pem
  # on the master:
  EVIX_REMOTE_TOKEN=s3cret evix eval --no-daemon --workers 0 --remote arm-box:7357 aarch64-linux 2 --flake .#hydraJobs
"""


def build_parser(prog: str = "evix worker") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=ManPageFormatter)
    p.add_argument("--listen", required=True, metavar="HOST:PORT",
                   help="address to listen on: 0.0.0.0:7357, [::]:7357 (IPv6), 127.0.0.1:0 (any free port)")
    auth = p.add_argument_group("authentication")
    auth.add_argument("--token", metavar="TOKEN", help=f"shared secret masters must present (default ${TOKEN_ENV})")
    auth.add_argument("--token-file", metavar="FILE", help="read the shared secret from FILE (its first line)")
    auth.add_argument("--insecure-no-token", action="store_true",
                      help="DANGEROUS: accept any master without a token (anyone who reaches the port can run "
                           "Nix evaluation as this user)")
    tls = p.add_argument_group("TLS")
    tls.add_argument("--tls-cert", metavar="PEM", help="certificate (chain) to serve TLS with")
    tls.add_argument("--tls-key", metavar="PEM", help="its private key")
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-connections", type=positive_count, default=64, metavar="N",
                     help="connections served at once; more are refused (default 64)")
    lim.add_argument("--handshake-timeout", type=positive_seconds, default=10.0, metavar="SECONDS",
                     help="time a new connection has to say hello (default 10)")
    lim.add_argument("--max-memory", type=positive_count, default=4096, metavar="MB",
                     help="memory limit per evaluator in MiB; a master may ask for less, not more (default 4096)")
    p.add_argument("--source-cache", metavar="DIR",
                   help="where input trees shipped by masters are kept (default $XDG_CACHE_HOME/evix/remote-sources)")
    add_logging_options(p)
    return p


def _token(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    token = ns.token
    if ns.token_file:
        try:
            token = next(iter(Path(ns.token_file).read_text().splitlines()), "").strip()
        except OSError as e:
            parser.error(f"--token-file {ns.token_file}: {e.strerror or e}")
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is None and not ns.insecure_no_token:
        parser.error(f"a token is required: --token, --token-file or ${TOKEN_ENV} "
                     "(or --insecure-no-token to accept any master)")
    if token is not None and ns.insecure_no_token:
        parser.error("--insecure-no-token with a token: choose one")
    return token


def _source_cache(ns: argparse.Namespace) -> SourceCache:
    if ns.source_cache:
        return SourceCache(Path(ns.source_cache).absolute())
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return SourceCache(Path(cache) / "evix" / "remote-sources")


def main(argv: list[str] | None = None, prog: str = "evix worker") -> int:
    parser = build_parser(prog)
    ns = parser.parse_args(argv)
    setup_logging(ns.verbose, ns.quiet, default=logging.WARNING, name="evix worker")
    try:
        host, port = split_endpoint(ns.listen, listen=True)
    except EndpointError as e:
        parser.error(str(e))
    if bool(ns.tls_cert) != bool(ns.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    token = _token(ns, parser)
    try:
        tls = server_tls(ns.tls_cert, ns.tls_key) if ns.tls_cert else None
    except (OSError, ValueError) as e:
        print(f"evix worker: error: cannot load the TLS certificate or key: {e}", file=sys.stderr)
        return 1
    settings = ServiceSettings(token, ns.max_memory, ns.handshake_timeout, _source_cache(ns))
    service = WorkerService(settings, tls=tls, max_connections=ns.max_connections)
    try:
        trio.run(service.serve, host, port)
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        print(f"evix worker: error: cannot listen on {ns.listen}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0
