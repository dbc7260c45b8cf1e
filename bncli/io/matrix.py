"""What every reader makes: a table of numbers, its column names and where it came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Matrix:
    """A table of numbers as read: values (k, n), column names, and whether a header was read."""

    values: np.ndarray
    columns: list[str]
    has_header: bool
    source: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape
