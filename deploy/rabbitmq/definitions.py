"""Write RabbitMQ's definitions file: the virtual host, the admin user and the app's user.

RabbitMQ imports the file at boot (``load_definitions`` in rabbitmq.conf, beside this
script). With definitions configured the broker creates no default user, so these two are
the only accounts:

- the admin user (tag ``administrator``, every permission): the management UI and
  ``rabbitmqctl``-style work, never the app;
- the app user (no tag: it cannot log in to the management UI or its HTTP API), with
  permissions on the app's virtual host only, and there only on the names the app declares:
  everything under ``NAMESPACE.`` (shared/topology.py), plus writing to the default exchange
  (``amq.default``), through which gateways and workers answer a command's ``reply_to``.
  The app declares no server-named (``amq.gen-*``) queue, so it gets none.

Passwords are stored as salted SHA-256 hashes (RabbitMQ's default hashing), never in clear::

    RABBITMQ_ADMIN_PASSWORD=... RABBITMQ_APP_PASSWORD=... \\
        python3 deploy/rabbitmq/definitions.py | docker secret create rabbitmq_definitions -

Every variable also accepts ``NAME_FILE``. docker-compose.yml runs this script once per
``up`` in a python container and hands the file to the broker through a volume.
"""

# ruff: noqa: INP001 - a script run by path (and by a container), not a package

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import pathlib
import re
import secrets
import sys
import typing

if typing.TYPE_CHECKING:
    import collections.abc

__all__: typing.Sequence[str] = ("app_permissions", "definitions", "password_hash")

#: RabbitMQ's default password hashing (rabbit_password_hashing_sha256).
HASHING_ALGORITHM: typing.Final = "rabbit_password_hashing_sha256"


class ConfigurationError(Exception):
    """A variable is missing or invalid; the message names it."""


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's SHA-256 password hash: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def app_permissions(namespace: str) -> dict[str, str]:
    """Configure, write and read patterns for exactly the names shared/topology.py uses."""
    own = f"^{re.escape(namespace)}\\."
    return {
        "configure": own,
        "write": f"^({re.escape(namespace)}\\..*|amq\\.default)$",
        "read": own,
    }


def definitions(
    *,
    admin_user: str,
    admin_password: str,
    app_user: str,
    app_password: str,
    vhost: str = "/",
    namespace: str = "shardline",
) -> dict[str, typing.Any]:
    if admin_user == app_user:
        msg = "RABBITMQ_ADMIN_USER and RABBITMQ_APP_USER must differ"
        raise ConfigurationError(msg)
    users = [
        (admin_user, admin_password, ["administrator"]),
        (app_user, app_password, []),
    ]
    return {
        "vhosts": [{"name": vhost}],
        "users": [
            {
                "name": name,
                "password_hash": password_hash(password),
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": tags,
            }
            for name, password, tags in users
        ],
        "permissions": [
            {"user": admin_user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"},
            {"user": app_user, "vhost": vhost, **app_permissions(namespace)},
        ],
    }


def _read(env: collections.abc.Mapping[str, str], name: str, default: str | None = None) -> str:
    path = env.get(f"{name}_FILE")
    value = pathlib.Path(path).read_text().strip() if path else env.get(name) or default
    if not value:
        msg = f"{name} (or {name}_FILE) is required"
        raise ConfigurationError(msg)
    return value


def from_env(env: collections.abc.Mapping[str, str]) -> dict[str, typing.Any]:
    return definitions(
        admin_user=_read(env, "RABBITMQ_ADMIN_USER", "admin"),
        admin_password=_read(env, "RABBITMQ_ADMIN_PASSWORD"),
        app_user=_read(env, "RABBITMQ_APP_USER", "shardline"),
        app_password=_read(env, "RABBITMQ_APP_PASSWORD"),
        vhost=_read(env, "RABBITMQ_VHOST", "/"),
        namespace=_read(env, "NAMESPACE", "shardline"),
    )


def main(argv: collections.abc.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=pathlib.Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        text = json.dumps(from_env(os.environ), indent=2) + "\n"
    except (ConfigurationError, OSError) as exc:
        sys.stderr.write(f"definitions: {exc}\n")
        return 2
    if args.output is None:
        sys.stdout.write(text)
        return 0
    # The broker runs as another user: readable by all (it holds hashes, not passwords),
    # replaced atomically so a broker starting meanwhile never reads half a file.
    partial = args.output.with_name(f".{args.output.name}.partial")
    partial.write_text(text)
    partial.chmod(0o644)
    partial.replace(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
