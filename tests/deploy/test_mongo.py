"""deploy/mongo: the first-start script gives the app a user with readWrite on its database only.

mongosh is not available here, so the script runs under Node (mongosh is Node: the same
`require`, `process.env` and JavaScript) with `db` and `print` standing in for mongosh's; what
it asks of `db` is recorded and then executed as the same createUser command, by a root user,
on a real mongod started with --auth. The app's own settings store then runs as that user.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import typing
import urllib.parse

import pymongo
import pytest
from pymongo import errors

from shared import keys
from shared.settings import store
from tests import servers
from tests.deploy import exported

if typing.TYPE_CHECKING:
    import collections.abc
    import pathlib

INIT_SCRIPT: typing.Final = exported.DEPLOY / "mongo" / "initdb.d" / "10-app-user.js"
#: Runs a script as the official image's entrypoint does (`mongosh DB script.js`): `db`,
#: `print` and Node's `require` are globals; prints what the script asked `db` to do.
MONGOSH_STAND_IN: typing.Final = """
{
  // A block: the script's own top-level names must not collide with these.
  const fs = require("fs");
  const vm = require("vm");
  const script = process.argv[1];
  const calls = [];
  globalThis.require = require;
  globalThis.print = (...args) => console.error(...args);
  globalThis.db = {
    getSiblingDB: (name) => ({
      createUser: (user) => calls.push({ database: name, createUser: user }),
    }),
  };
  vm.runInThisContext(fs.readFileSync(script, "utf8"), { filename: script });
  console.log(JSON.stringify(calls));
}
"""
UNAUTHORIZED: typing.Final = 13


def run_init_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: apt-get install -y nodejs", pytrace=False)
    return subprocess.run(
        [node, "-e", MONGOSH_STAND_IN, str(INIT_SCRIPT)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def created_users(env: dict[str, str]) -> list[dict[str, typing.Any]]:
    result = run_init_script(env)
    assert result.returncode == 0, result.stderr
    return typing.cast("list[dict[str, typing.Any]]", json.loads(result.stdout))


class AuthMongo(servers.MongoServer):
    """A private mongod that checks users and roles (--auth), as the image runs it."""

    def __init__(self, directory: pathlib.Path) -> None:
        super().__init__(directory, "--auth")

    def kill(self) -> None:
        os.kill(int(self.pidfile.read_text().strip()), signal.SIGKILL)

    def login_url(self, user: str, password: str, database: str) -> str:
        quoted = urllib.parse.quote(password, safe="")
        return f"mongodb://{user}:{quoted}@127.0.0.1:{self.port}/{database}?directConnection=true"


@pytest.fixture(scope="module")
def mongod(tmp_path_factory: pytest.TempPathFactory) -> collections.abc.Iterator[AuthMongo]:
    server = AuthMongo(tmp_path_factory.mktemp("mongod-auth"))
    server.start()
    try:
        # The localhost exception: the first user may be made without logging in, as the
        # image does with MONGO_INITDB_ROOT_*.
        with pymongo.MongoClient(
            f"mongodb://127.0.0.1:{server.port}/?directConnection=true"
        ) as first:
            first.admin.command("createUser", "admin", pwd="root-pw", roles=["root"])
        yield server
    finally:
        server.kill()


def test_the_script_creates_one_user_with_read_write_on_the_app_database_only() -> None:
    (call,) = created_users({"MONGO_APP_PASSWORD": "app-pw"})
    assert call == {
        "database": "shardline",
        "createUser": {
            "user": "shardline",
            "pwd": "app-pw",
            "roles": [{"role": "readWrite", "db": "shardline"}],
        },
    }


def test_the_password_comes_from_a_secret_file_and_names_are_settable(
    tmp_path: pathlib.Path,
) -> None:
    secret = tmp_path / "mongo_app_password"
    secret.write_text("from-the-file\n")
    (call,) = created_users(
        {
            "MONGO_APP_PASSWORD_FILE": str(secret),
            "MONGO_APP_PASSWORD": "ignored",
            "MONGO_APP_USERNAME": "bot",
            "MONGO_APP_DATABASE": "botdb",
        }
    )
    assert call["database"] == "botdb"
    assert call["createUser"]["user"] == "bot"
    assert call["createUser"]["pwd"] == "from-the-file"
    assert call["createUser"]["roles"] == [{"role": "readWrite", "db": "botdb"}]


def test_without_a_password_the_script_fails_and_creates_nothing() -> None:
    result = run_init_script({})
    assert result.returncode != 0
    assert "MONGO_APP_PASSWORD (or MONGO_APP_PASSWORD_FILE) is required" in result.stderr
    assert not result.stdout.strip()


async def test_the_app_user_runs_the_settings_store_and_nothing_else(mongod: AuthMongo) -> None:
    (call,) = created_users({"MONGO_APP_PASSWORD": "app pw/with:odd@chars"})
    user = call["createUser"]
    with pymongo.MongoClient(mongod.login_url("admin", "root-pw", "admin")) as root:
        root[call["database"]].command(
            "createUser", user["user"], pwd=user["pwd"], roles=user["roles"]
        )

    # MONGO_URL as docs/operations.md and docker-compose.yml write it: the app's database,
    # where its user lives, so no authSource.
    app_url = mongod.login_url(user["user"], user["pwd"], "shardline")
    client = store.connect(app_url)
    try:
        settings = store.SettingsStore(
            client.get_default_database(), None, keys.RedisKeys("shardline", "main")
        )
        await settings.start()
        assert settings.indexes_ready
        await settings.set_prefix(1234, "?")
        assert (await settings.guild(1234)).prefix == "?"
        case = await settings.add_infraction(1234, 5, moderator_id=6, kind="warn", reason="x")
        assert case.case == 1
        await settings.close()

        other = client.get_database("other")
        with pytest.raises(errors.OperationFailure) as refused:
            await other["things"].insert_one({"x": 1})
        assert refused.value.code == UNAUTHORIZED
        with pytest.raises(errors.OperationFailure) as refused:
            await client.admin["system.users"].find_one({})
        assert refused.value.code == UNAUTHORIZED
        with pytest.raises(errors.OperationFailure) as refused:
            await client.get_default_database().command("createUser", "x", pwd="y", roles=[])
        assert refused.value.code == UNAUTHORIZED
        with pytest.raises(errors.OperationFailure) as refused:
            await client.admin.command("shutdown")
        assert refused.value.code == UNAUTHORIZED
    finally:
        await client.close()
