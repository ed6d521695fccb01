from __future__ import annotations

import inspect

from shared import keys


def every_key(schema: keys.RedisKeys) -> list[str]:
    produced = []
    for name, member in inspect.getmembers(schema, callable):
        if name.startswith("_"):
            continue
        params = list(inspect.signature(member).parameters.values())
        args = [7 if p.annotation in ("int", int) else f"x{i}" for i, p in enumerate(params)]
        produced.append(member(*args))
    return produced


def test_every_key_is_namespaced_and_distinct() -> None:
    schema = keys.RedisKeys("shardline", "main")
    produced = every_key(schema)
    assert len(produced) == len(set(produced))
    assert all(key.startswith("shardline:") for key in produced)


def test_pools_never_collide() -> None:
    main = set(every_key(keys.RedisKeys("shardline", "main")))
    premium = set(every_key(keys.RedisKeys("shardline", "premium")))
    # Global on purpose: an envelope key already carries its pool (and a worker id its pool),
    # and a guild's or a user's settings are the same whichever pool (application) serves them.
    schema = keys.RedisKeys("shardline", "main")
    assert main & premium == {
        schema.dedupe("x0"),
        schema.dedupe_holder("x0"),
        schema.settings("x0", 7),
        schema.settings_channel(),
    }


def test_session_and_lease_keys_belong_to_a_shard_layout() -> None:
    redis_keys = keys.RedisKeys("shardline", "main")
    assert redis_keys.session(3, 16) == "shardline:main:session:16:3"
    assert redis_keys.lease(3, 16) == "shardline:main:lease:16:3"
    assert redis_keys.session(3, 16) != redis_keys.session(3, 32)  # a re-shard's two layouts


def test_ttls_are_sane() -> None:
    assert keys.LEASE_TTL < keys.SESSION_TTL
    assert keys.IDENTIFY_WINDOW == 5.0
    assert keys.DEDUPE_TTL >= 5 * 60
