"""Command arguments, fuzzed: any words give typed values or a helpful error, never a crash."""

from __future__ import annotations

import math
import typing

import hikari
import hypothesis
import pytest
from hypothesis import strategies as st

from worker.commands import option, options


async def sample(
    ctx: object,
    count: int = option("how many", 1, min=1, max=10),
    ratio: float = option("how much", 0.5, min=0, max=1),
    loud: bool = option("shout?", False),
    mode: str = option("which", "off", choices=["off", "track", "queue"]),
    name: str = option("a name", "x", min=2, max=20),
    who: hikari.User | None = option("someone", None),  # noqa: B008
    where: hikari.GuildChannel | None = option("somewhere", None),  # noqa: B008
    role: hikari.Role | None = option("a role", None),  # noqa: B008
    anyone: hikari.User | hikari.Role | None = option("a user or role", None),  # noqa: B008
) -> None:
    del ctx, count, ratio, loud, mode, name, who, where, role, anyone


SPECS = options.options_of(sample)
_WORDS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "1e309", "0x10", "<@123>", "<#1>", "<@&9>"]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"<(@!?|@&|#)[0-9]{1,25}>", fullmatch=True),
)


@hypothesis.given(st.sampled_from(SPECS), _WORDS)
@hypothesis.settings(max_examples=500)
def test_fuzz_any_word_is_a_value_or_a_helpful_error(spec: options.OptionSpec, word: str) -> None:
    try:
        value = options.convert_word(spec, word)
    except options.ArgumentError as exc:
        message = str(exc)
        assert f"`{spec.name}`" in message
        assert "\n" not in message
        return
    if spec.kind is options.Kind.INTEGER:
        assert isinstance(value, int)
        assert spec.min is not None
        assert spec.max is not None
        assert spec.min <= value <= spec.max
    elif spec.kind is options.Kind.NUMBER:
        assert math.isfinite(value)
        assert 0 <= value <= 1
    elif spec.kind is options.Kind.BOOLEAN:
        assert isinstance(value, bool)
    elif spec.kind is options.Kind.STRING:
        assert value in spec.choices if spec.choices else 2 <= len(value) <= 20
    elif spec.kind is options.Kind.MENTIONABLE:
        assert isinstance(value, options.MentionId)
        assert value.kind in (None, options.Kind.USER, options.Kind.ROLE)
        assert 0 <= int(value.id) < 2**64
    else:
        assert isinstance(value, hikari.Snowflake)
        assert 0 <= int(value) < 2**64


@hypothesis.given(st.text(max_size=200))
def test_fuzz_splitting_words_never_fails(text: str) -> None:
    words = options.split_words(text)
    assert all(isinstance(w, str) for w in words)


@pytest.mark.parametrize("word", ["nan", "inf", "-inf", "1e309"])
def test_numbers_that_are_not_numbers_are_refused(word: str) -> None:
    ratio = next(s for s in SPECS if s.name == "ratio")
    with pytest.raises(options.ArgumentError, match="must be a number"):
        options.convert_word(ratio, word)


def test_an_id_too_large_for_discord_is_refused() -> None:
    who = next(s for s in SPECS if s.name == "who")
    with pytest.raises(options.ArgumentError, match="no such user"):
        options.convert_word(who, str(2**64))
    assert typing.cast("int", options.convert_word(who, "<@!175928847299117063>")) == (
        175928847299117063
    )


def test_a_bad_word_is_quoted_back_inert_and_short() -> None:
    count = next(s for s in SPECS if s.name == "count")
    with pytest.raises(options.ArgumentError) as raised:
        options.convert_word(count, "@everyone `x`\nand " + "y" * 100)
    message = str(raised.value)
    assert "@everyone" not in message  # a zero-width space keeps it from pinging
    assert "\n" not in message
    assert message.count("`") == 4  # the option's name and the word, nothing breaks out
    assert len(message) < 120


async def typed(
    ctx: object,
    file: hikari.Attachment,
    text: hikari.GuildTextChannel | hikari.GuildNewsChannel,
    voice: hikari.GuildVoiceChannel,
    thread: hikari.GuildThreadChannel,
    anywhere: hikari.PartialChannel,
    someone: hikari.Member | hikari.Role,
    role: hikari.Role,
) -> None:
    del ctx, file, text, voice, thread, anywhere, someone, role


def test_option_types_come_from_annotations_with_channel_types() -> None:
    specs = {s.name: s for s in options.options_of(typed)}
    kinds = {name: spec.kind for name, spec in specs.items()}
    assert kinds == {
        "file": options.Kind.ATTACHMENT, "text": options.Kind.CHANNEL,
        "voice": options.Kind.CHANNEL, "thread": options.Kind.CHANNEL,
        "anywhere": options.Kind.CHANNEL, "someone": options.Kind.MENTIONABLE,
        "role": options.Kind.ROLE,
    }  # fmt: skip
    assert specs["text"].channel_types == (0, 5)  # GUILD_TEXT, GUILD_ANNOUNCEMENT
    assert specs["voice"].channel_types == (2,)
    assert specs["thread"].channel_types == (10, 11, 12)
    assert specs["anywhere"].channel_types == ()
    assert specs["someone"].wants_member


def test_a_mention_of_the_wrong_kind_is_refused_and_mentionables_keep_the_sigil() -> None:
    specs = {s.name: s for s in options.options_of(typed)}
    with pytest.raises(options.ArgumentError, match="role mention"):
        options.convert_word(specs["role"], "<@175928847299117063>")
    with pytest.raises(options.ArgumentError, match="user or role"):
        options.convert_word(specs["someone"], "<#175928847299117063>")
    role = options.convert_word(specs["someone"], "<@&175928847299117063>")
    assert role == options.MentionId(hikari.Snowflake(175928847299117063), options.Kind.ROLE)
    bare = options.convert_word(specs["someone"], "175928847299117063")
    assert bare.kind is None
    with pytest.raises(options.ArgumentError, match="attach a file"):
        options.convert_word(specs["file"], "cat.png")


def test_a_channel_of_a_type_the_annotation_excludes_is_refused() -> None:
    voice = next(s for s in options.options_of(typed) if s.name == "voice")

    def channel(kind: hikari.ChannelType) -> hikari.PartialChannel:
        return hikari.PartialChannel(
            app=typing.cast("hikari.RESTAware", None), id=hikari.Snowflake(1), name="c", type=kind
        )

    with pytest.raises(options.ArgumentError, match="kind of channel"):
        voice.check_channel(channel(hikari.ChannelType.GUILD_TEXT))
    assert voice.check_channel(channel(hikari.ChannelType.GUILD_VOICE)).name == "c"


async def localised(
    ctx: object,
    days: int = option(
        "days",
        1,
        name_localizations={"fr": "jours", "de": "days"},
        description_localizations={"fr": "jours de messages"},
    ),
) -> None:
    del ctx, days


def test_localisations_identical_to_the_default_are_left_out() -> None:
    (spec,) = options.options_of(localised)
    assert spec.name_localizations == {"fr": "jours"}  # Discord ignores "de": "days"
    assert spec.description_localizations == {"fr": "jours de messages"}


@pytest.mark.parametrize(
    ("names", "descriptions", "problem"),
    [
        ({"xx": "nom"}, {}, "not a Discord locale"),
        ({"fr": "Jours"}, {}, "lowercase"),
        ({"fr": "deux mots"}, {}, "lowercase"),
        ({}, {"fr": ""}, "1-100"),
        ({}, {"pt-BR": "x" * 101}, "1-100"),
    ],
)
def test_bad_localisations_fail_at_declaration(
    names: dict[str, str], descriptions: dict[str, str], problem: str
) -> None:
    async def command(
        ctx: object,
        days: int = option(
            "days", 1, name_localizations=names, description_localizations=descriptions
        ),
    ) -> None:
        del ctx, days

    with pytest.raises(ValueError, match=problem):
        options.options_of(command)
