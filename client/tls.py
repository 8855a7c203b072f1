"""TLS for the client's connections: gRPC channel credentials and the HTTPS context of REST,
from PEM material given as bytes or file paths."""

from __future__ import annotations

import os
import ssl

from dfdetect.client.errors import ClientError


def read_pem(source: bytes | str | os.PathLike | None, what: str) -> bytes | None:
    """PEM material given as bytes or as a file path."""
    if source is None or isinstance(source, bytes):
        return source
    try:
        with open(source, "rb") as f:
            return f.read()
    except OSError as e:
        raise ClientError("INVALID_ARGUMENT", f"cannot read the {what} file {source}: {e.strerror or e}") from None


def tls_credentials(root_certificates: bytes | str | os.PathLike | None = None,
                    private_key: bytes | str | os.PathLike | None = None,
                    certificate_chain: bytes | str | os.PathLike | None = None):
    """gRPC channel credentials for TLS.

    ``root_certificates``: PEM of the CAs to trust (bytes or a file path; None: the system's).
    ``private_key`` and ``certificate_chain``: the client's own key and certificate, for servers
    that require mutual TLS (both or neither).
    """
    import grpc

    if (private_key is None) != (certificate_chain is None):
        raise ClientError("INVALID_ARGUMENT", "mutual TLS needs both private_key and certificate_chain, or neither")
    return grpc.ssl_channel_credentials(root_certificates=read_pem(root_certificates, "root certificates"),
                                        private_key=read_pem(private_key, "private key"),
                                        certificate_chain=read_pem(certificate_chain, "certificate chain"))


def rest_ssl_context(root_certificates: str | os.PathLike | bytes | None = None,
                     private_key: str | os.PathLike | None = None,
                     certificate_chain: str | os.PathLike | None = None) -> ssl.SSLContext:
    """An HTTPS context trusting ``root_certificates`` (PEM bytes or a file; None: the system's),
    with the client's key and certificate files for mutual TLS."""
    if (private_key is None) != (certificate_chain is None):
        raise ClientError("INVALID_ARGUMENT", "mutual TLS needs both private_key and certificate_chain, or neither")
    try:
        if isinstance(root_certificates, bytes):
            context = ssl.create_default_context(cadata=root_certificates.decode("ascii"))
        else:
            context = ssl.create_default_context(cafile=None if root_certificates is None else str(root_certificates))
        if certificate_chain is not None:
            if isinstance(private_key, bytes) or isinstance(certificate_chain, bytes):
                raise ClientError("INVALID_ARGUMENT", "over REST, the client key and certificate must be file paths")
            context.load_cert_chain(str(certificate_chain), str(private_key))
    except (OSError, ssl.SSLError, UnicodeDecodeError) as e:
        raise ClientError("INVALID_ARGUMENT", f"cannot load TLS certificates: {e}") from None
    return context
