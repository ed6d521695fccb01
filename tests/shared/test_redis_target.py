"""REDIS_URL names one server, Sentinel or a Cluster; a bad one stops the process at start."""

from __future__ import annotations

import pytest

from shared import config, redis_target


def test_a_standalone_url_is_redis_pys_own() -> None:
    target = redis_target.parse("redis://:pw@127.0.0.1:6379/2")
    assert target.mode == redis_target.STANDALONE
    assert target.url == "redis://:pw@127.0.0.1:6379/2"
    assert redis_target.parse("rediss://h:1/0").tls


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    target = redis_target.parse(
        "redis+sentinel://user:p%40ss@s1:26379,s2:26380/mymaster/3?sentinel_password=sp"
    )
    assert target.mode == redis_target.SENTINEL
    assert target.hosts == (("s1", 26379), ("s2", 26380))
    assert (target.master, target.db) == ("mymaster", 3)
    assert (target.username, target.password, target.sentinel_password) == ("user", "p@ss", "sp")


def test_a_cluster_url_names_startup_nodes() -> None:
    target = redis_target.parse("rediss+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001")
    assert target.mode == redis_target.CLUSTER
    assert target.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert target.password == "pw"
    assert target.tls


def test_the_password_never_shows_in_the_repr() -> None:
    assert "secret" not in repr(redis_target.parse("redis+cluster://:secret@h:1"))


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://h:1", "expected a redis://"),
        ("redis+sentinel://h:26379", "master's name"),
        ("redis+sentinel://h:26379/m/x", "not a number"),
        ("redis+cluster://h:7000/0", "no database number"),
        ("redis+cluster://h", "host:port"),
        ("redis+cluster://h:7000,h2:port", "host:port"),
    ],
)
def test_a_bad_url_stops_the_process_with_one_line_naming_redis_url(url: str, said: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.OperatorSettings.from_env({"REDIS_URL": url})
    assert caught.value.variable == "REDIS_URL"
    assert said in caught.value.reason
    assert ":7000" not in str(caught.value)  # the URL may carry credentials: never echoed
