"""Component and modal routes: which handler a ``custom_id`` reaches, and what it captured."""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import strategies as st

from worker.commands import components


async def handler(ctx: object) -> None:
    del ctx


def routes(*patterns: str) -> components.ComponentRoutes:
    table = components.ComponentRoutes("component")
    for pattern in patterns:
        table.add(components.Route(pattern, handler))
    return table


def test_the_most_specific_route_wins_then_the_first_registered() -> None:
    table = routes("*", "vote:*", "vote:close:*", "vote:*:yes", "exact")
    assert [r.pattern for r in table] == ["exact", "vote:close:*", "vote:*", "vote:*:yes", "*"]
    found = table.find("vote:close:42")
    assert found is not None
    assert (found[0].pattern, found[1]) == ("vote:close:*", ("42",))
    found = table.find("vote:42:yes")
    assert found is not None
    assert (found[0].pattern, found[1]) == ("vote:*", ("42:yes",))
    found = table.find("exact")
    assert found is not None
    assert (found[0].pattern, found[1]) == ("exact", ())
    found = table.find("something else")
    assert found is not None
    assert found[0].pattern == "*"


def test_captures_split_on_each_star_and_text_is_literal() -> None:
    route = components.Route("poll.*[x]:*", handler)
    assert route.match("poll.7[x]:a:b") == ("7", "a:b")
    assert route.match("pollX7[x]:a") is None  # "." and "[" are not regex here
    assert components.Route("ticket", handler).match("ticket:1") is None


def test_bad_or_duplicate_patterns_are_refused() -> None:
    table = routes("vote:*")
    with pytest.raises(ValueError, match="already routed"):
        table.add(components.Route("vote:*", handler))
    with pytest.raises(ValueError, match="1-100"):
        table.add(components.Route("x" * 101, handler))
    with pytest.raises(ValueError, match="1-100"):
        table.add(components.Route("", handler))


@hypothesis.given(st.text(max_size=40), st.text(max_size=40))
def test_fuzz_a_prefix_route_captures_exactly_the_rest(prefix: str, rest: str) -> None:
    hypothesis.assume("*" not in prefix)
    route = components.Route(prefix + "*", handler)
    assert route.match(prefix + rest) == (rest,)
