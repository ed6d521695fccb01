from __future__ import annotations

import inspect

import redis.crc

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
        schema.dedupe_stream("x0"),
        schema.dedupe_holder("x0"),
        schema.settings("x0", 7),
        schema.settings_channel(),
    }


def test_session_and_lease_keys_belong_to_a_shard_layout() -> None:
    redis_keys = keys.RedisKeys("shardline", "main")
    assert redis_keys.session(3, 16) == "shardline:main:session:{16:3}"
    assert redis_keys.lease(3, 16) == "shardline:{main}:lease:16:3"
    assert redis_keys.session(3, 16) != redis_keys.session(3, 32)  # a re-shard's two layouts


def test_ttls_are_sane() -> None:
    assert keys.LEASE_TTL < keys.SESSION_TTL
    assert keys.IDENTIFY_WINDOW == 5.0
    assert keys.DEDUPE_TTL >= 5 * 60


def slots(*names: str) -> set[int]:
    return {redis.crc.key_slot(name.encode()) for name in names}


def test_keys_used_together_share_a_cluster_slot() -> None:
    k = keys.RedisKeys("shardline", "main")
    # the pool's coordination: one MULTI (heartbeat, leave), one MGET (leases, statuses)
    assert len(slots(
        k.gateways(), k.layout_gateways(16), k.draining(), k.drain_requests(),
        *(k.lease(s, 16) for s in range(16)), k.identify_bucket(0), k.session_start_ledger(),
        k.reshard(), k.interests("g"), k.interest_groups(), k.gateway_status("a"),
        k.gateway_index(), k.workers(), k.worker_status("w"), k.restart_requests(),
    )) == 1  # fmt: skip
    # a guild's cache keys (and music), a shard's session and guilds
    assert len(slots(
        k.guild(5), k.guild_channels(5), k.guild_roles(5), k.guild_permissions(5),
        k.guild_emojis(5), k.guild_member_ids(5), k.guild_voice_states(5),
        k.guild_presences(5), k.music_queue(5), k.music_state(5),
    )) == 1  # fmt: skip
    assert len(slots(k.session(3, 16), k.shard_guilds(3, 16))) == 1
    # the REST limiter, voice, component waits, one event stream's dedupe marks
    assert len(slots(
        k.rest_routes(), k.rest_global(), k.rest_global_pause(), k.rest_bucket("b", "1"),
        k.rest_discovery("x"), k.rest_invalid(1), k.rest_invalid(2),
    )) == 1  # fmt: skip
    assert len(slots(k.lavalink_sessions(), k.lavalink_orphans(), k.voice_player(5),
                     k.voice_players_of("s"))) == 1  # fmt: skip
    assert len(slots(k.component_wait("a"), k.component_wait("b"))) == 1
    assert len(slots(k.dedupe("main:3:abc:1"), k.dedupe("main:3:abc:2"),
                     k.dedupe_stream("main:3:abc"))) == 1  # fmt: skip


def test_what_scales_spreads_over_the_cluster() -> None:
    k = keys.RedisKeys("shardline", "main")
    assert len(slots(*(k.guild(g) for g in range(100)))) > 90
    assert len(slots(*(k.session(s, 64) for s in range(64)))) > 55
    assert len(slots(*(k.dedupe(f"main:{s}:abc:1") for s in range(64)))) > 55
