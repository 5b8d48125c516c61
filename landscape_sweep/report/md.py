"""Markdown building blocks shared by report.md (`markdown.py`) and the sections it gathers from other modules
(`instability.stable_section`): kept apart so that a section's module never imports the page that includes it."""

from __future__ import annotations

from typing import Any


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table; `|` and newlines inside a cell are escaped."""
    esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc])
