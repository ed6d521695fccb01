"""deploy/lavalink: Lavalink 4's application.yml, with the maintained YouTube source.

No Lavalink runs here (SERVICES.md), so this checks the file against Lavalink's and the
youtube-source plugin's documented keys, and that compose and the stack hand it over with
the password.
"""

from __future__ import annotations

import re
import typing

import yaml

from tests.deploy import exported

APPLICATION: typing.Final = exported.DEPLOY / "lavalink" / "application.yml"
TARGET: typing.Final = "/opt/Lavalink/application.yml"
PLACEHOLDER: typing.Final = "${LAVALINK_SERVER_PASSWORD}"


def application() -> dict[str, typing.Any]:
    return typing.cast("dict[str, typing.Any]", yaml.safe_load(APPLICATION.read_text()))


def test_youtube_comes_from_the_pinned_plugin_and_the_builtin_source_is_off() -> None:
    config = application()
    (plugin,) = config["lavalink"]["plugins"]
    group, artifact, version = plugin["dependency"].split(":")
    assert (group, artifact) == ("dev.lavalink.youtube", "youtube-plugin")
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "pin a released version"
    assert plugin["snapshot"] is False
    sources = config["lavalink"]["server"]["sources"]
    assert sources["youtube"] is False
    assert all(sources[name] for name in ("bandcamp", "soundcloud", "twitch", "vimeo", "http"))
    youtube = config["plugins"]["youtube"]
    assert youtube["enabled"] is True
    assert youtube["clients"]
    # The music plugin searches with ytsearch:, which the plugin serves only with allowSearch.
    assert "ytsearch:" in (exported.ROOT / "worker" / "plugins" / "music.py").read_text()
    assert youtube["allowSearch"] is True


def test_the_password_is_a_placeholder_filled_from_the_environment() -> None:
    config = application()
    assert config["lavalink"]["server"]["password"] == PLACEHOLDER
    assert config["server"]["port"] == 2333
    compose = yaml.safe_load((exported.ROOT / "docker-compose.yml").read_text())
    lavalink = compose["services"]["lavalink"]
    assert f"./deploy/lavalink/application.yml:{TARGET}:ro" in lavalink["volumes"]
    assert (
        lavalink["environment"]["LAVALINK_SERVER_PASSWORD"]
        == (compose["services"]["gateway"]["environment"]["LAVALINK_PASSWORD"])
    )
    assert compose["services"]["gateway"]["environment"]["LAVALINK_URL"].endswith(":2333}")


def test_the_stack_mounts_it_as_a_config_and_the_password_as_a_config_tree() -> None:
    stack = yaml.safe_load((exported.ROOT / "stack.yml").read_text())
    lavalink = stack["services"]["lavalink"]
    configs = {c["target"]: stack["configs"][c["source"]]["file"] for c in lavalink["configs"]}
    assert configs[TARGET] == "./deploy/lavalink/application.yml"
    (secret,) = lavalink["secrets"]
    # Spring's config tree: the file's name is the property the placeholder names, and the
    # same secret the gateways and workers read as LAVALINK_PASSWORD_FILE.
    assert secret["source"] == "lavalink_password"
    directory, _, name = secret["target"].rpartition("/")
    assert name == PLACEHOLDER.strip("${}")
    assert lavalink["environment"]["SPRING_CONFIG_IMPORT"] == f"configtree:{directory}/"
    assert stack["services"]["gateway-main"]["environment"]["LAVALINK_PASSWORD_FILE"] == (
        "/run/secrets/lavalink_password"
    )
    assert "lavalink_application" not in stack["secrets"]
