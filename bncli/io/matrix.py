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
    # --index-column drop: pandas' index column is left out of this matrix and of those read beside it (--dy …)
    drop_index: bool = False
    first_line: int | None = None  # the line of text the first row (header or data) was read from

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    @property
    def has_pandas_index(self) -> bool:
        """The first column looks like the index pandas' to_csv() writes: no name, and 0 … k−1 in order."""
        return (
            self.has_header
            and self.shape[1] > 1
            and self.columns[0] == ""
            and np.array_equal(self.values[:, 0], np.arange(self.shape[0]))
        )
