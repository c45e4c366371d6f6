"""A report as a list of plain blocks (headings, text, tables, images, notes), made once and
written twice: as Markdown here and as HTML by report_html. Blocks hold raw strings from
the results; each writer escapes them for its own format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Text:
    text: str
    code: str = ""   # shown first, as code (a path)


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    title: str
    path: Path


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Headline:
    """The numbers a reader came for, in big type in HTML: (name, value, detail) each."""
    items: list[tuple[str, str, str]] = field(default_factory=list)


Block = Union[Heading, Text, Table, Image, Bullets, Headline]


def _md_cell(text: str) -> str:
    # A "|" in a label or path would split the cell; a newline would end the row.
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            lines += [(f"`{block.code}`" if block.code else "") + block.text, ""]
        elif isinstance(block, Table):
            lines += ["| " + " | ".join(map(_md_cell, block.header)) + " |",
                      "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in block.rows]
            lines.append("")
        elif isinstance(block, Image):
            lines += [f"![{block.title}]({block.path.name})", ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Headline):
            lines += [f"- **{name}**: {value}" + (f" ({detail})" if detail else "")
                      for name, value, detail in block.items] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"
