"""Kafka security settings: env -> validated settings -> each client library's keyword arguments.

The TLS mapping is proven with a real handshake (mutual TLS against a server on 127.0.0.1 with
certificates made by openssl), the kwargs by handing them to the real client constructors, which
reject options they do not know.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from kafka import KafkaConsumer

from ratiowatch.errors import ConfigError
from ratiowatch.streams.kafka_settings import (
    KafkaSecurity,
    aiokafka_kwargs,
    faust_app_kwargs,
    kafka_python_kwargs,
    load_kafka_security,
    ssl_context,
)

PASSWORD = "s3cr3t-Pa55word-that-must-never-print"


def _cert(folder, name: str, cn: str) -> tuple[str, str]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    server = _cert(d, "server", "localhost")
    client = _cert(d, "client", "ratiowatch-client")
    pw = d / "password"
    pw.write_text(PASSWORD + "\n")
    return {"server": server, "client": client, "password_file": str(pw)}


def test_default_is_plaintext_and_maps_to_nothing_extra():
    sec = load_kafka_security({})
    assert sec == KafkaSecurity()
    assert faust_app_kwargs(sec) == {}
    assert kafka_python_kwargs(sec) == {"security_protocol": "PLAINTEXT"}
    assert aiokafka_kwargs(sec) == {"security_protocol": "PLAINTEXT"}


def test_empty_values_mean_unset():
    # docker compose passes `${VAR:-}` as an empty string
    env = {"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "", "RATIOWATCH_KAFKA_SASL_USERNAME": "",
           "RATIOWATCH_KAFKA_SSL_CAFILE": ""}
    assert load_kafka_security(env) == KafkaSecurity()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512"])
def test_sasl_plaintext(mechanism):
    env = {"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RATIOWATCH_KAFKA_SASL_MECHANISM": mechanism,
           "RATIOWATCH_KAFKA_SASL_USERNAME": "desk", "RATIOWATCH_KAFKA_SASL_PASSWORD": PASSWORD}
    sec = load_kafka_security(env)
    assert (sec.protocol, sec.mechanism, sec.username, sec.password) == \
        ("SASL_PLAINTEXT", mechanism.upper(), "desk", PASSWORD)
    assert kafka_python_kwargs(sec) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism.upper(),
                                        "sasl_plain_username": "desk", "sasl_plain_password": PASSWORD}
    assert aiokafka_kwargs(sec) == kafka_python_kwargs(sec)
    cred = faust_app_kwargs(sec)["broker_credentials"]
    assert isinstance(cred, faust.SASLCredentials)
    assert (cred.protocol.value, cred.mechanism.value, cred.username, cred.password, cred.ssl_context) == \
        ("SASL_PLAINTEXT", mechanism.upper(), "desk", PASSWORD, None)


def test_sasl_ssl_with_password_file(certs):
    env = {"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RATIOWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "RATIOWATCH_KAFKA_SASL_USERNAME": "desk", "RATIOWATCH_KAFKA_SASL_PASSWORD_FILE": certs["password_file"],
           "RATIOWATCH_KAFKA_SSL_CAFILE": certs["server"][0]}
    sec = load_kafka_security(env)
    assert sec.password == PASSWORD  # the file's trailing newline is not part of it
    kp = kafka_python_kwargs(sec)
    assert kp == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "desk",
                  "sasl_plain_password": PASSWORD, "ssl_check_hostname": True, "ssl_cafile": certs["server"][0]}
    ak = aiokafka_kwargs(sec)
    assert isinstance(ak.pop("ssl_context"), ssl.SSLContext)
    assert ak == {k: v for k, v in kp.items() if not k.startswith("ssl_")}
    cred = faust_app_kwargs(sec)["broker_credentials"]
    assert isinstance(cred, faust.SASLCredentials)
    assert cred.protocol.value == "SASL_SSL" and cred.mechanism.value == "SCRAM-SHA-512"
    assert cred.ssl_context.verify_mode == ssl.CERT_REQUIRED and cred.ssl_context.check_hostname


def test_ssl_maps_files_and_context(certs):
    env = {"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SSL", "RATIOWATCH_KAFKA_SSL_CAFILE": certs["server"][0],
           "RATIOWATCH_KAFKA_SSL_CERTFILE": certs["client"][0], "RATIOWATCH_KAFKA_SSL_KEYFILE": certs["client"][1],
           "RATIOWATCH_KAFKA_SSL_CHECK_HOSTNAME": "false"}
    sec = load_kafka_security(env)
    assert kafka_python_kwargs(sec) == {"security_protocol": "SSL", "ssl_check_hostname": False,
                                        "ssl_cafile": certs["server"][0], "ssl_certfile": certs["client"][0],
                                        "ssl_keyfile": certs["client"][1]}
    cred = faust_app_kwargs(sec)["broker_credentials"]
    assert isinstance(cred, faust.SSLCredentials) and cred.protocol.value == "SSL"
    assert cred.context.check_hostname is False and cred.context.verify_mode == ssl.CERT_REQUIRED
    assert aiokafka_kwargs(sec)["security_protocol"] == "SSL"


def _tls_server(server_cert, server_key, client_ca):
    """A one-connection TLS server on 127.0.0.1 that requires a client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert, server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(client_ca)
    lsock = socket.create_server(("127.0.0.1", 0))
    result: dict[str, object] = {}

    def serve():
        conn, _ = lsock.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                result["peer"] = tls.getpeercert()["subject"]
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as e:
            result["error"] = e
        finally:
            lsock.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return lsock.getsockname()[1], t, result


def test_tls_context_completes_a_mutual_tls_handshake(certs):
    """The context built from the variables verifies the server against the CA file and presents
    the client certificate: a real handshake with a server that requires one."""
    sec = load_kafka_security({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SSL",
                               "RATIOWATCH_KAFKA_SSL_CAFILE": certs["server"][0],
                               "RATIOWATCH_KAFKA_SSL_CERTFILE": certs["client"][0],
                               "RATIOWATCH_KAFKA_SSL_KEYFILE": certs["client"][1]})
    port, thread, result = _tls_server(*certs["server"], certs["client"][0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ssl_context(sec).wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(2) == b"ok"
    thread.join(10)
    assert result.get("peer") == ((("commonName", "ratiowatch-client"),),)


def test_tls_context_rejects_a_server_signed_by_another_ca(certs):
    sec = load_kafka_security({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SSL",
                               "RATIOWATCH_KAFKA_SSL_CAFILE": certs["client"][0],  # not the server's CA
                               "RATIOWATCH_KAFKA_SSL_CERTFILE": certs["client"][0],
                               "RATIOWATCH_KAFKA_SSL_KEYFILE": certs["client"][1]})
    port, thread, _ = _tls_server(*certs["server"], certs["client"][0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl_context(sec).wrap_socket(raw, server_hostname="localhost")
    thread.join(10)


def _sasl_ssl_env(certs):
    return {"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RATIOWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "RATIOWATCH_KAFKA_SASL_USERNAME": "desk", "RATIOWATCH_KAFKA_SASL_PASSWORD": PASSWORD,
            "RATIOWATCH_KAFKA_SSL_CAFILE": certs["server"][0]}


def test_kwargs_are_accepted_by_kafka_python(certs):
    """kafka-python refuses unknown options at construction."""
    sec = load_kafka_security(_sasl_ssl_env(certs))
    # api_version given: the constructor does not probe a broker (there is none on port 9).
    c = KafkaConsumer(bootstrap_servers="127.0.0.1:9", api_version=(3, 9), **kafka_python_kwargs(sec))
    assert c.config["security_protocol"] == "SASL_SSL" and c.config["sasl_mechanism"] == "SCRAM-SHA-256"
    c.close()


async def test_kwargs_are_accepted_by_aiokafka(certs):
    """aiokafka checks the protocol, mechanism and ssl_context together at construction."""
    sec = load_kafka_security(_sasl_ssl_env(certs))
    a = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", **aiokafka_kwargs(sec))
    assert a._client._security_protocol == "SASL_SSL"
    assert a._client._sasl_mechanism == "SCRAM-SHA-256"
    await a.stop()


@pytest.mark.parametrize("env, var, words", [
    ({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "TLS"}, "RATIOWATCH_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT, SSL"),
    ({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RATIOWATCH_KAFKA_SASL_USERNAME": "u",
      "RATIOWATCH_KAFKA_SASL_PASSWORD": PASSWORD}, "RATIOWATCH_KAFKA_SASL_MECHANISM", "is required"),
    ({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RATIOWATCH_KAFKA_SASL_MECHANISM": "GSSAPI",
      "RATIOWATCH_KAFKA_SASL_USERNAME": "u", "RATIOWATCH_KAFKA_SASL_PASSWORD": PASSWORD},
     "RATIOWATCH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
    ({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RATIOWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
      "RATIOWATCH_KAFKA_SASL_PASSWORD": PASSWORD}, "RATIOWATCH_KAFKA_SASL_USERNAME", "is required"),
    ({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RATIOWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
      "RATIOWATCH_KAFKA_SASL_USERNAME": "u"}, "RATIOWATCH_KAFKA_SASL_PASSWORD", "is required"),
    ({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RATIOWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
      "RATIOWATCH_KAFKA_SASL_USERNAME": "u", "RATIOWATCH_KAFKA_SASL_PASSWORD": PASSWORD,
      "RATIOWATCH_KAFKA_SASL_PASSWORD_FILE": "/etc/hostname"}, "RATIOWATCH_KAFKA_SASL_PASSWORD", "both set"),
    ({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RATIOWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
      "RATIOWATCH_KAFKA_SASL_USERNAME": "u", "RATIOWATCH_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"},
     "RATIOWATCH_KAFKA_SASL_PASSWORD_FILE", "not found"),
    ({"RATIOWATCH_KAFKA_SASL_PASSWORD": PASSWORD}, "RATIOWATCH_KAFKA_SASL_PASSWORD", "is PLAINTEXT"),
    ({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RATIOWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
      "RATIOWATCH_KAFKA_SASL_USERNAME": "u", "RATIOWATCH_KAFKA_SASL_PASSWORD": PASSWORD,
      "RATIOWATCH_KAFKA_SSL_CAFILE": "/etc/hostname"}, "RATIOWATCH_KAFKA_SSL_CAFILE", "TLS settings apply"),
    ({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SSL", "RATIOWATCH_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
     "RATIOWATCH_KAFKA_SSL_CAFILE", "not found"),
    ({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SSL", "RATIOWATCH_KAFKA_SSL_CAFILE": "/etc/hostname"},
     "RATIOWATCH_KAFKA_SSL_CAFILE", "cannot load CA"),
    ({"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SSL", "RATIOWATCH_KAFKA_SSL_CHECK_HOSTNAME": "no"},
     "RATIOWATCH_KAFKA_SSL_CHECK_HOSTNAME", "true or false"),
    ({"RATIOWATCH_KAFKA_SASL_PASWORD": PASSWORD}, "RATIOWATCH_KAFKA_SASL_PASWORD", "unknown variable"),
])
def test_bad_settings_name_the_variable_and_never_the_password(env, var, words):
    with pytest.raises(ConfigError) as exc:
        load_kafka_security(env)
    msg = str(exc.value)
    assert exc.value.where == var and var in msg and words in msg, msg
    assert PASSWORD not in msg and PASSWORD not in repr(exc.value)


def test_key_without_certificate_and_a_bad_certificate(certs):
    base = {"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SSL"}
    with pytest.raises(ConfigError, match="RATIOWATCH_KAFKA_SSL_KEYFILE: is set without"):
        load_kafka_security({**base, "RATIOWATCH_KAFKA_SSL_KEYFILE": certs["client"][1]})
    # a certificate with the wrong key fails at start, not at the first connection
    with pytest.raises(ConfigError, match="RATIOWATCH_KAFKA_SSL_CERTFILE: cannot load the client certificate"):
        load_kafka_security({**base, "RATIOWATCH_KAFKA_SSL_CERTFILE": certs["client"][0],
                             "RATIOWATCH_KAFKA_SSL_KEYFILE": certs["server"][1]})


def test_password_never_appears_in_repr_or_str(certs):
    env = {"RATIOWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RATIOWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
           "RATIOWATCH_KAFKA_SASL_USERNAME": "desk", "RATIOWATCH_KAFKA_SASL_PASSWORD_FILE": certs["password_file"],
           "RATIOWATCH_KAFKA_SSL_CAFILE": certs["server"][0]}
    sec = load_kafka_security(env)
    for text in (repr(sec), str(sec), f"{sec}", repr([sec]), repr(faust_app_kwargs(sec)["broker_credentials"])):
        assert PASSWORD not in text, text
    assert "password=<secret>" in repr(sec) and "desk" in repr(sec)
    assert "password=None" in repr(load_kafka_security({}))
