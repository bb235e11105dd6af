"""The one-line `DataError` for a list of offending files: the first few named, the rest counted."""

from __future__ import annotations

from grdnet.errors import DataError

MAX_LISTED = 10
"""Items a message names before it says "and N more"."""


def listing(items: list) -> str:
    shown = ", ".join(str(item) for item in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def problem(items: list[str], one: str, many: str, fix: str) -> DataError:
    """`<item>: <one>; <fix>` for one item, `<n> <many>: <items>; <fix>` for several.

    `fix` may use `{it}`, which becomes "it" or "them".
    """
    if len(items) == 1:
        return DataError(f"{items[0]}: {one}; {fix.format(it='it')}")
    return DataError(f"{len(items)} {many}: {listing(items)}; {fix.format(it='them')}")
