"""Kafka security for real clusters: TLS and SASL from the environment, or from files it names.

Never from the scenario file: that file is shared, reviewed and committed, and credentials do not
belong in it. The variables (unset and empty mean the same: not set):

    RATIOWATCH_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default) | SSL | SASL_PLAINTEXT | SASL_SSL
    RATIOWATCH_KAFKA_SASL_MECHANISM      PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (required with SASL_*)
    RATIOWATCH_KAFKA_SASL_USERNAME       required with SASL_*
    RATIOWATCH_KAFKA_SASL_PASSWORD       or RATIOWATCH_KAFKA_SASL_PASSWORD_FILE (a file holding it,
                                         e.g. a Docker or Kubernetes secret); exactly one of the two
    RATIOWATCH_KAFKA_SSL_CAFILE          CA bundle that signed the brokers' certificates
                                         (default: the system's CAs)
    RATIOWATCH_KAFKA_SSL_CERTFILE        client certificate (PEM), for mutual TLS
    RATIOWATCH_KAFKA_SSL_KEYFILE         its private key (PEM, unencrypted); needs the certificate
    RATIOWATCH_KAFKA_SSL_CHECK_HOSTNAME  true (default) | false

:func:`load_kafka_security` validates them at start (a bad value raises ConfigError naming the
variable; files are opened and the TLS context is built once, so a wrong path fails now, not at
the first connection). The ``*_kwargs`` functions map the result onto each client library we use.
The password is never printed: ``repr``/``str`` show ``<secret>`` and no error message quotes it.
The dicts those functions return do carry it, because the libraries need it: never log them.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Any, Mapping

from ratiowatch.errors import ConfigError

__all__ = ["KafkaSecurity", "PROTOCOLS", "MECHANISMS", "ENV_VARS", "load_kafka_security", "ssl_context",
           "faust_app_kwargs", "kafka_python_kwargs", "aiokafka_kwargs"]

PREFIX = "RATIOWATCH_KAFKA_"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

_PROTOCOL = PREFIX + "SECURITY_PROTOCOL"
_MECHANISM = PREFIX + "SASL_MECHANISM"
_USERNAME = PREFIX + "SASL_USERNAME"
_PASSWORD = PREFIX + "SASL_PASSWORD"
_PASSWORD_FILE = PREFIX + "SASL_PASSWORD_FILE"
_CAFILE = PREFIX + "SSL_CAFILE"
_CERTFILE = PREFIX + "SSL_CERTFILE"
_KEYFILE = PREFIX + "SSL_KEYFILE"
_CHECK_HOSTNAME = PREFIX + "SSL_CHECK_HOSTNAME"

ENV_VARS = (_PROTOCOL, _MECHANISM, _USERNAME, _PASSWORD, _PASSWORD_FILE, _CAFILE, _CERTFILE, _KEYFILE,
            _CHECK_HOSTNAME)
_SASL_VARS = (_MECHANISM, _USERNAME, _PASSWORD, _PASSWORD_FILE)
_SSL_VARS = (_CAFILE, _CERTFILE, _KEYFILE, _CHECK_HOSTNAME)

_ENV = "environment"  # the "file" part of a ConfigError raised for a variable


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """Validated security settings; build it with :func:`load_kafka_security`."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def __repr__(self) -> str:
        secret = "<secret>" if self.password is not None else None
        return (f"KafkaSecurity(protocol={self.protocol!r}, mechanism={self.mechanism!r}, "
                f"username={self.username!r}, password={secret}, cafile={self.cafile!r}, "
                f"certfile={self.certfile!r}, keyfile={self.keyfile!r}, check_hostname={self.check_hostname})")

    __str__ = __repr__


def _get(env: Mapping[str, str], name: str) -> str | None:
    # Compose passes `${VAR:-}` through as an empty string: empty means not set.
    v = env.get(name)
    return v if v not in (None, "") else None


def _err(var: str, problem: str) -> ConfigError:
    return ConfigError(_ENV, var, problem)


def _readable_file(env: Mapping[str, str], var: str) -> str | None:
    path = _get(env, var)
    if path is None:
        return None
    if not os.path.isfile(path):
        raise _err(var, f"file {path!r} not found")
    if not os.access(path, os.R_OK):
        raise _err(var, f"file {path!r} is not readable by this process")
    return path


def _read_password_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise _err(_PASSWORD_FILE, f"cannot read {path!r}: {type(e).__name__}") from None
    # Secret files usually end with a newline that is not part of the password.
    text = text.rstrip("\r\n")
    if not text:
        raise _err(_PASSWORD_FILE, f"file {path!r} is empty")
    return text


def load_kafka_security(env: Mapping[str, str] = os.environ) -> KafkaSecurity:
    """Read and validate the ``RATIOWATCH_KAFKA_*`` variables. Raises ConfigError naming the
    variable and the problem (the CLI turns it into exit code 2)."""
    unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in ENV_VARS)
    if unknown:
        # A misspelt variable would otherwise be ignored and the client would silently connect
        # without the intended security.
        raise _err(unknown[0], f"unknown variable (known: {', '.join(ENV_VARS)})")

    raw_protocol = _get(env, _PROTOCOL) or "PLAINTEXT"
    protocol = raw_protocol.upper()
    if protocol not in PROTOCOLS:
        raise _err(_PROTOCOL, f"must be one of {', '.join(PROTOCOLS)}, got {raw_protocol!r}")
    sec_kw: dict[str, Any] = {"protocol": protocol}

    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        raw_mech = _get(env, _MECHANISM)
        if raw_mech is None:
            raise _err(_MECHANISM, f"is required with {protocol}: one of {', '.join(MECHANISMS)}")
        mechanism = raw_mech.upper()
        if mechanism not in MECHANISMS:
            raise _err(_MECHANISM, f"must be one of {', '.join(MECHANISMS)}, got {raw_mech!r}")
        username = _get(env, _USERNAME)
        if username is None:
            raise _err(_USERNAME, f"is required with {protocol}")
        has_pw, has_file = _get(env, _PASSWORD) is not None, _get(env, _PASSWORD_FILE) is not None
        if has_pw and has_file:
            raise _err(_PASSWORD, f"and {_PASSWORD_FILE} are both set: set exactly one")
        if not (has_pw or has_file):
            raise _err(_PASSWORD, f"is required with {protocol} (or {_PASSWORD_FILE}, a file holding it)")
        password = env[_PASSWORD] if has_pw else _read_password_file(_readable_file(env, _PASSWORD_FILE))
        sec_kw.update(mechanism=mechanism, username=username, password=password)
    else:
        for var in _SASL_VARS:
            if _get(env, var) is not None:
                raise _err(var, f"is set but {_PROTOCOL} is {protocol}: SASL settings apply to SASL_PLAINTEXT "
                                f"and SASL_SSL only (unset it, or choose the SASL protocol you meant)")

    if protocol in ("SSL", "SASL_SSL"):
        raw_check = _get(env, _CHECK_HOSTNAME)
        if raw_check is not None and raw_check.lower() not in ("true", "false"):
            raise _err(_CHECK_HOSTNAME, f"must be true or false, got {raw_check!r}")
        keyfile = _readable_file(env, _KEYFILE)
        certfile = _readable_file(env, _CERTFILE)
        if keyfile is not None and certfile is None:
            raise _err(_KEYFILE, f"is set without {_CERTFILE}: a key needs its certificate")
        sec_kw.update(cafile=_readable_file(env, _CAFILE), certfile=certfile, keyfile=keyfile,
                      check_hostname=raw_check is None or raw_check.lower() == "true")
    else:
        for var in _SSL_VARS:
            if _get(env, var) is not None:
                raise _err(var, f"is set but {_PROTOCOL} is {protocol}: TLS settings apply to SSL and "
                                f"SASL_SSL only (unset it, or choose the TLS protocol you meant)")

    sec = KafkaSecurity(**sec_kw)
    if sec.uses_tls:
        ssl_context(sec)  # build it once now: a bad certificate or key fails at start
    return sec


def ssl_context(sec: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context for ``sec`` (None without TLS). Certificates are always verified; only the
    host-name check can be turned off (brokers addressed by IP with name-only certificates)."""
    if not sec.uses_tls:
        return None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=sec.cafile)
    except (ssl.SSLError, OSError) as e:
        raise _err(_CAFILE, f"cannot load CA certificates from {sec.cafile!r}: {e.__class__.__name__}") from None
    if sec.certfile is not None:
        try:
            ctx.load_cert_chain(sec.certfile, sec.keyfile)
        except (ssl.SSLError, OSError) as e:
            raise _err(_CERTFILE, f"cannot load the client certificate {sec.certfile!r}"
                                  f"{f' with key {sec.keyfile!r}' if sec.keyfile else ''}: "
                                  f"{e.__class__.__name__}") from None
    ctx.check_hostname = sec.check_hostname
    return ctx


def faust_app_kwargs(sec: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` (``broker_credentials``); empty for PLAINTEXT."""
    import faust

    if sec.protocol == "PLAINTEXT":
        return {}
    if sec.protocol == "SSL":
        return {"broker_credentials": faust.SSLCredentials(ssl_context(sec))}
    # faust.SASLCredentials switches to SASL_SSL exactly when it is given an ssl_context.
    return {"broker_credentials": faust.SASLCredentials(username=sec.username, password=sec.password,
                                                        mechanism=sec.mechanism, ssl_context=ssl_context(sec))}


def kafka_python_kwargs(sec: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaConsumer, KafkaProducer and KafkaAdminClient."""
    kw: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.uses_sasl:
        # kafka-python takes the SCRAM credentials through the sasl_plain_* options as well.
        kw.update(sasl_mechanism=sec.mechanism, sasl_plain_username=sec.username, sasl_plain_password=sec.password)
    if sec.uses_tls:
        kw["ssl_check_hostname"] = sec.check_hostname
        for key, value in (("ssl_cafile", sec.cafile), ("ssl_certfile", sec.certfile), ("ssl_keyfile", sec.keyfile)):
            if value is not None:
                kw[key] = value
    return kw


def aiokafka_kwargs(sec: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for aiokafka's AIOKafkaConsumer and AIOKafkaProducer."""
    kw: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.uses_sasl:
        kw.update(sasl_mechanism=sec.mechanism, sasl_plain_username=sec.username, sasl_plain_password=sec.password)
    if sec.uses_tls:
        kw["ssl_context"] = ssl_context(sec)  # aiokafka needs a context, not file names
    return kw
