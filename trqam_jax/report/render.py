"""The report as data (sections of blocks) and its one rendering, markdown.

report.md is `render_document` of every section, table.md is `render_blocks` of the table
section, and the terminal shows `render_terminal`: the same markdown of the sections marked
`terminal`. Nothing is ever parsed back out of rendered text.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Table:
    lines: Sequence[Sequence[str]]  # rows of cells, header first


@dataclasses.dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclasses.dataclass(frozen=True)
class Images:
    paths: Sequence[str]  # relative to the markdown file


Block = str | Table | Bullets | Images  # a str is a paragraph


@dataclasses.dataclass(frozen=True)
class Section:
    title: str | None  # None: no heading
    blocks: Sequence[Block]
    terminal: bool = False  # also printed at the terminal


def markdown_table(lines: Sequence[Sequence[str]]) -> str:
    head, *body = lines
    md = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(md)


def render_block(block: Block) -> str:
    if isinstance(block, Table):
        return markdown_table(block.lines)
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Images):
        return "\n".join(f"![{os.path.basename(p)}]({p})" for p in block.paths)
    return block


def render_blocks(blocks: Sequence[Block]) -> str:
    """Blocks separated by blank lines; empty ones (no bullets, no images) leave no gap."""
    return "\n\n".join(text for text in map(render_block, blocks) if text)


def render_section(section: Section) -> str:
    body = render_blocks(section.blocks)
    return body if section.title is None else f"## {section.title}\n\n{body}"


def render_document(title: str, sections: Sequence[Section]) -> str:
    return "\n\n".join([f"# {title}"] + [render_section(s) for s in sections]) + "\n"


def render_terminal(title: str, sections: Sequence[Section]) -> str:
    return render_document(title, [s for s in sections if s.terminal])
