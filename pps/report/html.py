"""report.html: the report's blocks as one self-contained page. The plots are embedded as
base64 data URIs and the style is inline, so the file opens from disk, is mailed or archived
alone, and loads nothing from the network (no CDN, no web fonts, no scripts). Every string
from the results goes through html.escape: a run label or path is data, never markup."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from pps.report.doc import Block, Bullets, Heading, Headline, Image, Table, Text
from pps.results.safe_io import write_text_atomic

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1.5em; color: #1b1b1b; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f4f7; }
tr:nth-child(even) td { background: #fafbfc; }
.scroll { overflow-x: auto; }
code { font-family: ui-monospace, monospace; background: #f2f4f7; padding: 0 0.2em; }
figure { margin: 0.5em 0 1.5em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.headline { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 0.8em 0 1.2em; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.6em 1em; min-width: 9em; }
.card .name { font-size: 0.8em; color: #555; }
.card .value { font-size: 1.5em; font-weight: 600; }
.card .detail { font-size: 0.75em; color: #555; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _image(block: Image) -> str:
    data = base64.b64encode(Path(block.path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(block.title)}">'
            f"<figcaption>{_e(block.title)} ({_e(Path(block.path).name)})</figcaption></figure>")


def _table(block: Table) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in block.header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>"
                   for row in block.rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _headline(block: Headline) -> str:
    cards = "".join(f'<div class="card"><div class="name">{_e(name)}</div>'
                    f'<div class="value">{_e(value)}</div>'
                    f'<div class="detail">{_e(detail)}</div></div>'
                    for name, value, detail in block.items)
    return f'<div class="headline">{cards}</div>'


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        level = min(max(block.level, 1), 6)
        return f"<h{level}>{_e(block.text)}</h{level}>"
    if isinstance(block, Text):
        code = f"<code>{_e(block.code)}</code>" if block.code else ""
        return f"<p>{code}{_e(block.text)}</p>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Image):
        return _image(block)
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Headline):
        return _headline(block)
    raise TypeError(f"not a report block: {type(block).__name__}")


def to_html(blocks: list[Block], title: str = "pps report") -> str:
    body = "\n".join(_block(b) for b in blocks)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            # No network: a policy that forbids every fetch but the page's own inline parts.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_html(blocks: list[Block], out: Path, title: str = "pps report") -> Path:
    write_text_atomic(out, to_html(blocks, title))
    return out
