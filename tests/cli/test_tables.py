"""Plain text tables for a terminal (``cli.tables``)."""

from __future__ import annotations

import pytest

from cli import tables


def test_columns_are_as_wide_as_their_widest_cell_and_lines_end_without_spaces() -> None:
    text = tables.render(["id", "name"], [[1, "a-long-name"], [22, "b"]])
    assert text.splitlines() == [
        "id  name",
        "--  -----------",
        "1   a-long-name",
        "22  b",
    ]


def test_missing_values_show_as_a_dash_and_floats_with_three_decimals() -> None:
    text = tables.render(["shard", "latency", "ok"], [[0, None, True], [1, 0.04251, False]])
    assert text.splitlines()[2:] == ["0      -        True", "1      0.043    False"]


def test_a_header_wider_than_its_cells_sets_the_width() -> None:
    assert tables.render(["connected"], [[1]]).splitlines() == ["connected", "---------", "1"]


def test_no_rows_is_a_header_and_its_rule() -> None:
    assert tables.render(["a", "bb"], []) == "a  bb\n-  --"


def test_a_row_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="zip"):
        tables.render(["a", "b"], [[1, 2, 3]])
