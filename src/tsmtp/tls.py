"""TLS contexts for STARTTLS and implicit TLS, checked when the server starts."""

from __future__ import annotations

import ssl
from pathlib import Path

from .config import ConfigError, TLSCertificate, TLSSettings


def _load(context: ssl.SSLContext, cert: TLSCertificate, config_dir: Path, where: str) -> None:
    paths = {"cert": cert.cert, "key": cert.key}
    for key, value in paths.items():
        if not (config_dir / value).is_file():
            raise ConfigError(f"{where}.{key}: no such file: {config_dir / value}")
    try:
        context.load_cert_chain(config_dir / cert.cert, config_dir / cert.key)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{where}: cannot use certificate {cert.cert} with key {cert.key}: {exc.reason or exc}"
        ) from None


def _context(settings: TLSSettings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if settings.min_version == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
    )
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if settings.ciphers:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError:
            raise ConfigError(f"tls.ciphers: no usable cipher in {settings.ciphers!r}") from None
    return context


def _matches(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def server_context(settings: TLSSettings, config_dir: Path) -> ssl.SSLContext | None:
    """The context for this server's TLS, or None when no certificate is configured.

    Each ``[[tls.sni]]`` entry gets its own context, chosen by the name the client asks for;
    other names get the default certificate.
    """
    if settings.cert is None:
        return None
    if settings.key is None:
        raise ConfigError("tls: cert and key must be given together")
    default = _context(settings)
    _load(default, TLSCertificate(cert=settings.cert, key=settings.key), config_dir, "tls")
    by_name: list[tuple[str, ssl.SSLContext]] = []
    for i, entry in enumerate(settings.sni):
        context = _context(settings)
        _load(context, entry, config_dir, f"tls.sni[{i}]")
        by_name += [(name, context) for name in entry.names]

    if by_name:

        def choose(
            sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext
        ) -> None:
            if name:
                for pattern, context in by_name:
                    if _matches(pattern, name):
                        sock.context = context
                        return

        default.sni_callback = choose
    return default
