"""A result as every format shows it: a :class:`Document` of named :class:`Part` objects.

Each kind of result makes its Document in :mod:`bncli.present`; :mod:`bncli.output` writes it in
the format asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Part:
    """One selectable piece of a result, as each format shows it.

    ``matrix`` gives (values, header, row labels) for csv/tsv/npy; ``json`` the keys
    it adds; ``tables`` its Rich renderables (functions of a Renderer) in the full
    view and ``alone`` those shown when --only picks it (default: the same).
    ``in_json``/``in_table``: part of the full json/table view. ``markdown``: its
    Markdown text, where it has one. ``pictures``: what --plot draws of it.
    """

    name: str
    json: Callable[[], dict]
    tables: list[Callable]
    matrix: Callable[[], tuple[np.ndarray, list[str], list[str] | None]] | None = None
    in_json: bool = True
    in_table: bool = True
    alone: list[Callable] | None = None
    markdown: Callable[[int, bool], str] | None = None  # (precision, full) → text
    pictures: list[Callable] = field(default_factory=list)  # each → a bncli.pictures.Picture
    drawn_instead: bool = False  # with --plot its pictures replace its tables (e.g. a Jacobian's numbers)


@dataclass
class Document:
    """What a result shows: its parts, and around them what every format needs."""

    parts: list[Part]
    columns: list[str]  # names for ``columns`` in json and for naming non-finite values
    context: str | None = None  # the first line of the table view
    meta: dict = field(default_factory=dict)  # keys of the full json besides the parts'
    has_header: bool = True
    exit_code: int = 0
    verdict: str | None = None  # on stderr unless a table on stdout shows the part ``verdict_part``
    verdict_part: str = "check"
    files: list[tuple[str, str, str]] = field(default_factory=list)  # (option, path, text) written besides -o
    # (name, values, columns) → an input error for a non-finite array, worded for this result;
    # None: the one for any non-finite number
    require_finite: Callable[[str, np.ndarray, list[str]], None] | None = None
