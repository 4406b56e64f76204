"""The credentials directory a deployment's broker and services read: the CA, the servers' certificates,
the Mosquitto password file and ACL, the services' identity, and each thing's certificate.

    <dir>/ca.crt, ca.key             the certificate authority (keep ca.key offline in production)
    <dir>/server.crt, server.key     both HTTP planes (HTTPS)
    <dir>/broker.crt, broker.key     the broker's TLS listener (the same names; the key the broker's user's)
    <dir>/passwd                     Mosquitto password file: things with passwords, and the services
    <dir>/acl                        Mosquitto ACL: a device reaches only its own jobs topics
    <dir>/service.crt, service.key   the services' client certificate (common name SERVICE_USER)
    <dir>/service.password           the services' password (dataplane, projector, the loopback bridge)
    <dir>/things/<thing>.crt, .key   a device's client certificate (common name: the thing name)
    <dir>/crl.pem                    the certificates revoked (replaced or of revoked things)
    <dir>/access-keys                SigV4 keys the HTTP planes accept (IOTJOBS_SIGV4_CREDENTIALS_FILE)

Secrets are written owner-only. What the broker reads (`passwd`, `acl`, `broker.key`) is given to its user
when written by root: the local "mosquitto" user, or the eclipse-mosquitto image's (uid 1883); the rest to
`owner` when one is given (the services' user, e.g. the iotjobs image's 10001), else to whoever writes it.

The broker reads `passwd` and `acl` again on SIGHUP (`scripts/mosquitto.sh reload`,
`docker compose kill -s HUP mosquitto`); a new certificate needs nothing, the broker trusts the CA, but
`crl.pem` is read only when the broker starts: restart it after revoking a certificate.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import re
import secrets
from pathlib import Path

from iotjobs.domain.errors import DomainError
from iotjobs.domain.validation import check_thing_name
from iotjobs.runtime import pki

SERVICE_USER = "iotjobs-service"
ACCESS_KEY_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
KEY_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
BROKER_IMAGE_UID = 1883
PBKDF2_ITERATIONS = 101
"""What `mosquitto_passwd` writes for `$7$` (PBKDF2-HMAC-SHA512) entries; the broker reads the count."""

# A device may publish only its own request topics and read only its own jobs topics; the services may do
# anything on jobs topics, the loopback bridge's re-published requests, and the Jobs events, and read the
# broker's count of connected clients (a metric).
ACL = f"""\
# Written by `iotjobs-admin credentials init`. %u is the MQTT username: the thing name (a password device's
# username, or the common name of its client certificate).
user {SERVICE_USER}
topic readwrite $aws/things/+/jobs/#
topic readwrite iotjobs/things/#
topic readwrite $aws/events/#
topic read $SYS/broker/clients/connected

pattern write $aws/things/%u/jobs/get
pattern write $aws/things/%u/jobs/start-next
pattern write $aws/things/%u/jobs/+/get
pattern write $aws/things/%u/jobs/+/update
pattern write $aws/things/%u/jobs/+/+/get
pattern write $aws/things/%u/jobs/+/+/update
pattern read $aws/things/%u/jobs/#
"""


def password_entry(username: str, password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2.0 password file line (`$7$`: PBKDF2-HMAC-SHA512 over a 12-byte salt)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"{username}:$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class CredentialsError(Exception):
    pass


class CredentialsDir:
    def __init__(self, path: Path, owner: int | None = None) -> None:
        self.path = path
        self.owner = owner

    @property
    def ca(self) -> Path:
        return self.path / "ca.crt"

    @property
    def passwd(self) -> Path:
        return self.path / "passwd"

    @property
    def acl(self) -> Path:
        return self.path / "acl"

    @property
    def crl(self) -> Path:
        return self.path / "crl.pem"

    @property
    def service_password_file(self) -> Path:
        return self.path / "service.password"

    def thing_files(self, thing: str) -> tuple[Path, Path]:
        return self.path / "things" / f"{thing}.crt", self.path / "things" / f"{thing}.key"

    @property
    def initialised(self) -> bool:
        return self.ca.exists() and (self.path / "ca.key").exists()

    def init(self, hosts: list[str]) -> list[str]:
        """Create what is missing (an existing CA is kept, so issued certificates stay valid); the servers'
        certificates are made again for `hosts`, and for localhost and 127.0.0.1, where health checks and
        the services on the broker's own machine reach them. Returns what was written."""
        hosts = list(dict.fromkeys([*hosts, "localhost", "127.0.0.1"]))
        for directory in (self.path, self.path / "things"):
            directory.mkdir(parents=True, exist_ok=True)
            self._give(directory)
        written = []
        if not self.initialised:
            self._write_pair("ca", pki.new_authority())
            written.append("ca.crt")
        for stem in ("server", "broker"):
            self._write_pair(stem, pki.issue(self._authority(), hosts[0], server_hosts=hosts))
            written.append(f"{stem}.crt")
        self._write_pair("service", pki.issue(self._authority(), SERVICE_USER))
        written.append("service.crt")
        self.acl.write_text(ACL)
        self._give(self.acl, broker=True)
        written.append("acl")
        self._revoke(set())  # signed again, with what it revoked before
        written.append("crl.pem")
        if not self.service_password_file.exists():
            self._write_secret(self.service_password_file, secrets.token_urlsafe(24))
            written.append("service.password")
        self.set_password(SERVICE_USER, self.service_password())
        written.append("passwd")
        return written

    def service_password(self) -> str:
        return self.service_password_file.read_text().strip()

    def issue_certificate(self, thing: str) -> tuple[Path, Path]:
        """A client certificate whose common name is `thing`; it replaces, and revokes, the one before."""
        self._check_thing(thing)
        issued = pki.issue(self._authority(), thing)
        cert, key = self.thing_files(thing)
        if cert.exists():
            self._revoke({pki.serial_number(cert.read_bytes())})
        cert.write_bytes(issued.certificate)
        self._give(cert)
        self._write_secret(key, issued.key.decode())
        return cert, key

    def set_password(self, username: str, password: str) -> None:
        """Add or replace `username`'s entry in the password file."""
        if username != SERVICE_USER:
            self._check_thing(username)
        if not password:
            raise CredentialsError("the password must not be empty")
        entries = self._entries()
        entries[username] = password_entry(username, password)
        self._write_entries(entries)

    def remove(self, thing: str) -> bool:
        """Drop a thing's password, and revoke its certificate; False if it had neither."""
        self._check_thing(thing)
        entries = self._entries()
        had = entries.pop(thing, None) is not None
        self._write_entries(entries)
        cert, _key = self.thing_files(thing)
        if cert.exists():
            self._revoke({pki.serial_number(cert.read_bytes())})
        for path in self.thing_files(thing):
            if path.exists():
                path.unlink()
                had = True
        return had

    @property
    def access_keys(self) -> Path:
        return self.path / "access-keys"

    def new_access_key(self, name: str) -> tuple[str, str]:
        """A SigV4 key pair added to `access-keys`, with `name` as a comment saying whose it is."""
        if not ACCESS_KEY_NAME.fullmatch(name):
            raise CredentialsError(f"'{name}' is not a key name: letters, digits, '-' and '_' only")
        key_id = "AKIA" + "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(16))
        secret = secrets.token_urlsafe(30)
        existing = self.access_keys.read_text() if self.access_keys.exists() else ""
        self._write_secret(self.access_keys, f"{existing}# {name}\n{key_id}:{secret}\n")
        return key_id, secret

    def usernames(self) -> list[str]:
        return sorted(self._entries())

    # --- files -------------------------------------------------------------------------------------

    def _check_thing(self, thing: str) -> None:
        if thing == SERVICE_USER:
            raise CredentialsError(f"'{SERVICE_USER}' is the services' identity, not a thing name")
        try:
            check_thing_name(thing)
        except DomainError as err:
            raise CredentialsError(err.message) from None
        if not self.initialised:
            raise CredentialsError(f"{self.path} holds no certificate authority: run `iotjobs-admin credentials init`")

    def _authority(self) -> pki.Issued:
        return pki.Issued((self.path / "ca.crt").read_bytes(), (self.path / "ca.key").read_bytes())

    def _write_pair(self, stem: str, issued: pki.Issued) -> None:
        cert = self.path / f"{stem}.crt"
        cert.write_bytes(issued.certificate)
        self._give(cert, broker=stem == "broker")
        self._write_secret(self.path / f"{stem}.key", issued.key.decode(), broker=stem == "broker")

    def _revoke(self, serials: set[int]) -> None:
        revoked = pki.revoked_serials(self.crl.read_bytes()) if self.crl.exists() else set()
        self.crl.write_bytes(pki.revocation_list(self._authority(), revoked | serials))
        self._give(self.crl, broker=True)

    def _entries(self) -> dict[str, str]:
        if not self.passwd.exists():
            return {}
        lines = [line for line in self.passwd.read_text().splitlines() if ":" in line]
        return {line.split(":", 1)[0]: line for line in lines}

    def _write_entries(self, entries: dict[str, str]) -> None:
        text = "".join(f"{entries[name]}\n" for name in sorted(entries))
        self._write_secret(self.passwd, text, broker=True)

    def _write_secret(self, path: Path, text: str, broker: bool = False) -> None:
        """Written owner-only, atomically, and given to whoever reads it (`broker`: the broker's user)."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self._give(tmp, broker)
        os.replace(tmp, path)

    def _give(self, path: Path, broker: bool = False) -> None:
        if os.geteuid() != 0:
            return  # whoever writes it owns it; nothing else is possible
        if broker:
            os.chown(path, _broker_uid(), -1)
        elif self.owner is not None:
            os.chown(path, self.owner, -1)


def _broker_uid() -> int:
    # Mosquitto started as root drops to its own user, which reads the password file, the ACL and its key.
    try:
        return pwd.getpwnam("mosquitto").pw_uid
    except KeyError:
        return BROKER_IMAGE_UID
