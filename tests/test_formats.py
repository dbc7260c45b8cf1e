"""Output format names: one registry (options.FORMATS), every other list chosen from it."""

from __future__ import annotations

import pytest

from bncli import formats as output_formats
from bncli import options


def test_every_list_of_formats_is_chosen_from_the_registry():
    chosen = {
        "ONE_MATRIX_FORMATS": options.ONE_MATRIX_FORMATS,
        "PICTURE_FILE_FORMATS": options.PICTURE_FILE_FORMATS,
        "FORWARD_FORMATS": options.FORWARD_FORMATS,
        "GRAD_FORMATS": options.GRAD_FORMATS,
        "EXPLAIN_FORMATS": options.EXPLAIN_FORMATS,
        "AUDIT_FORMATS": options.AUDIT_FORMATS,
        "file suffixes": tuple(output_formats._FORMAT_BY_SUFFIX.values()),
    }
    for name, formats in chosen.items():
        assert set(formats) <= set(options.FORMATS), name
    assert len(set(options.FORMATS)) == len(options.FORMATS)


@pytest.mark.parametrize("formats", [options.FORWARD_FORMATS, options.EXPLAIN_FORMATS, options.AUDIT_FORMATS])
def test_a_command_offers_the_table_on_a_terminal_and_no_picture_file_by_name(formats):
    """The first format is a terminal's, the second a pipe's; picture files come by --output's name."""
    assert formats[0] == "table" and formats[1] != "table"
    assert not set(formats) & set(options.PICTURE_FILE_FORMATS)


@pytest.mark.parametrize(
    "path, fmt",
    [("a.CSV", "csv"), ("r.json", "json"), ("t.tsv", "tsv"), ("x.npy", "npy"), ("e.md", "markdown"),
     ("p.svg", "svg"), ("p.htm", "html"), ("p.html", "html"), ("p.png", "png"), ("p.pdf", "pdf"), ("notes.txt", None)],
)  # fmt: skip
def test_a_file_name_implies_its_format(path, fmt):
    assert output_formats.format_for_path(path) == fmt
