"""The hikari adaptation fails loudly when an upgrade moves what it relies on."""

from __future__ import annotations

import hikari
import pytest
from hikari.impl import shard as shard_impl

from gateway import hikari_adapter


def test_installed_hikari_is_compatible() -> None:
    hikari_adapter.check_compatibility()


def test_another_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hikari, "__version__", "2.8.0")
    with pytest.raises(hikari_adapter.HikariIncompatibleError, match=r"2\.8\.0"):
        hikari_adapter.check_compatibility()


def test_a_moved_private_attribute_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    slots = tuple(s for s in shard_impl.GatewayShardImpl.__slots__ if s != "_resume_gateway_url")
    monkeypatch.setattr(shard_impl.GatewayShardImpl, "__slots__", slots)
    with pytest.raises(hikari_adapter.HikariIncompatibleError, match="_resume_gateway_url"):
        hikari_adapter.check_compatibility()


def test_connect_must_still_be_the_identify_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(shard_impl.GatewayShardImpl, "_connect")
    with pytest.raises(hikari_adapter.HikariIncompatibleError, match="_connect"):
        hikari_adapter.check_compatibility()


def test_pinned_exactly_in_pyproject() -> None:
    import pathlib  # noqa: PLC0415

    pyproject = pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml"
    assert f'"hikari[speedups]=={hikari_adapter.HIKARI_VERSION}"' in pyproject.read_text()
