"""TLS keys shared by the sinks, and the SSL context they describe (verification on unless told otherwise)."""

from __future__ import annotations

import logging
import ssl
from urllib.parse import urlsplit

from pydantic import BaseModel, model_validator

log = logging.getLogger("edge.sync")


class TlsKeys(BaseModel):
    """`ca_file`, `cert_file`/`key_file` (client certificate, mTLS) and `insecure_skip_verify`."""

    ca_file: str | None = None  # PEM bundle of CAs to trust instead of the system's
    cert_file: str | None = None  # PEM client certificate (chain) for mutual TLS
    key_file: str | None = None  # its PEM private key (may be inside cert_file)
    insecure_skip_verify: bool = False  # accept any server certificate: for lab use only, logged loudly

    def check_secure_url(self, url: str, secure_scheme: str) -> None:
        """TLS keys only make sense on a TLS url (`secure_scheme://`): refuse them on a plain one."""
        if urlsplit(url).scheme != secure_scheme and (self.ca_file or self.cert_file or self.insecure_skip_verify):
            raise ValueError(f"url: TLS keys (ca_file, cert_file, insecure_skip_verify) need an {secure_scheme}:// url")

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsKeys:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file: expected together with cert_file, found key_file alone")
        return self


def ssl_context(keys: TlsKeys, sink: str) -> ssl.SSLContext:
    """A client SSL context per the keys; raises OSError/ssl.SSLError naming the file that failed."""
    try:  # given a cafile, create_default_context() trusts it alone, not the system's CAs as well
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=keys.ca_file)
    except (OSError, ssl.SSLError) as e:
        raise OSError(f"sink {sink}: cannot load ca_file {keys.ca_file}: {e}") from e
    if keys.cert_file:
        try:
            ctx.load_cert_chain(keys.cert_file, keys.key_file)
        except (OSError, ssl.SSLError) as e:
            raise OSError(f"sink {sink}: cannot load cert_file/key_file {keys.cert_file}: {e}") from e
    if keys.insecure_skip_verify:
        log.warning("sink %s: TLS VERIFICATION IS OFF (insecure_skip_verify = true): any server certificate is "
                    "accepted and the connection can be intercepted", sink)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
