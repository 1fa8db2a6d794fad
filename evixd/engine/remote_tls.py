"""TLS on the master's side of a remote worker connection: the service's certificate checked
against a CA (`--remote-tls-ca`, host name included), or pinned by its SHA-256 fingerprint
(`--remote-tls-fingerprint`, for a self-signed certificate without a CA)."""

from __future__ import annotations

import hashlib
import hmac
import ssl

import trio

from protocol.config import EvalConfig


class PinMismatch(OSError):
    """The service's certificate is not the pinned one."""


def client_tls(config: EvalConfig) -> ssl.SSLContext | None:
    """The TLS context remote connections use; None: plain TCP."""
    if config.remote_tls_ca:
        context = ssl.create_default_context(cafile=config.remote_tls_ca)
    elif config.remote_tls_fingerprint:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the pin below is the check
    else:
        return None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def normal_fingerprint(text: str) -> str:
    """`AB:CD:...` or `abcd...` (as `openssl x509 -fingerprint -sha256` prints it) -> lowercase hex."""
    return text.replace(":", "").strip().lower()


def verify_pin(stream: trio.SSLStream, config: EvalConfig) -> None:
    """Raises PinMismatch unless the peer's certificate has the pinned fingerprint."""
    if not config.remote_tls_fingerprint:
        return
    der = stream.getpeercert(binary_form=True) or b""
    seen = hashlib.sha256(der).hexdigest()
    if not hmac.compare_digest(seen, normal_fingerprint(config.remote_tls_fingerprint)):
        raise PinMismatch(f"the service's TLS certificate (SHA-256 {seen}) is not the pinned one")
