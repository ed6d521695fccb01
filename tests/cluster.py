"""Running a test module's Redis tests again on a real Redis Cluster.

A ``test_*_cluster.py`` module imports the tests of its neighbour under names containing
``cluster`` (``pytest -k cluster`` selects them) and these two fixtures, which override the
root ``redis_url`` and ``redis_client``: every key, script, transaction and pipeline of those
tests then runs on the private cluster (three masters, three replicas), where a script or a
MULTI whose keys are in different slots fails with CROSSSLOT.
"""

from __future__ import annotations

import inspect
import typing

import pytest

from shared import redis_client as redis_client_module
from shared import secret

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from tests import servers


@pytest.fixture
def redis_url(redis_cluster: servers.PrivateRedisCluster) -> str:
    return redis_cluster.url


@pytest.fixture
async def redis_client(redis_url: str) -> typing.AsyncIterator[aioredis.Redis]:
    # The cluster lives for the session and each test has its own namespace: nothing to clean.
    client = redis_client_module.connect(secret.Secret(redis_url))
    yield client
    await client.aclose()


def rename(module: object, *names: str) -> dict[str, object]:
    """``test_x`` of ``module`` as ``test_cluster_x``, for a module's globals."""
    return {f"test_cluster_{name.removeprefix('test_')}": getattr(module, name) for name in names}


def every_test(
    module: object, uses: typing.AbstractSet[str] = frozenset({"redis_client"})
) -> dict[str, object]:
    """The tests of ``module`` that take one of the fixtures ``uses`` (``redis_client``, or
    one made of it), renamed as
    :func:`rename` does, with the module's own fixtures. (Tests that make clients of their
    own from ``redis_url``, or break a private Redis on purpose, stay standalone.)"""
    found = vars(module)
    fixtures = {
        name: value
        for name, value in found.items()
        if type(value).__name__ == "FixtureFunctionDefinition" and name not in _OURS
    }
    tests = [
        name
        for name, value in found.items()
        if name.startswith("test_")
        and callable(value)
        and not uses.isdisjoint(inspect.signature(value).parameters)
        and "redis_url" not in inspect.signature(value).parameters
        and not any(standalone in inspect.getsource(value) for standalone in _STANDALONE)
    ]
    return {**fixtures, **rename(module, *tests)}


_OURS: typing.Final = frozenset({"redis_client", "redis_url"})
#: What a test that breaks the standalone Redis on purpose (a proxy, a private server) names.
_STANDALONE: typing.Final = ("REDIS_PORT", "PrivateRedis", "netproxy")
