"""Test certificates and SuperNode keys for a Flower deployment (`lada deploy certs DIR`).

Writes a self-signed CA, a SuperLink server certificate signed by it (for the host names and IP
addresses given), and one EC P-384 key pair per SuperNode in OpenSSH format for SuperNode
authentication. For tests and trials: production deployments use certificates from the
organisation's own CA. Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 30


@dataclass(frozen=True)
class DeploymentKeys:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    #: SuperNode i -> (private key, public key), OpenSSH format.
    supernodes: list[tuple[Path, Path]]


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def generate(out: Path, *, hosts: list[str] | None = None, n_supernodes: int = 2) -> DeploymentKeys:
    """Write the CA, the SuperLink certificate and SuperNode key pairs into `out`."""
    hosts = hosts or ["127.0.0.1", "localhost"]
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    until = now + dt.timedelta(days=VALID_DAYS)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("lada test CA"))
        .issuer_name(_name("lada test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    pem = serialization.Encoding.PEM
    keys = DeploymentKeys(
        ca_cert=out / "ca.crt",
        server_cert=out / "server.pem",
        server_key=out / "server.key",
        supernodes=[],
    )
    _write(keys.ca_cert, ca_cert.public_bytes(pem))
    _write(keys.server_cert, server_cert.public_bytes(pem))
    _write(
        keys.server_key,
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        private=True,
    )
    for i in range(n_supernodes):
        node_key = ec.generate_private_key(ec.SECP384R1())
        private, public = out / f"supernode-{i}", out / f"supernode-{i}.pub"
        _write(
            private,
            node_key.private_bytes(
                pem, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            ),
            private=True,
        )
        _write(
            public,
            node_key.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            ),
        )
        keys.supernodes.append((private, public))
    return keys
