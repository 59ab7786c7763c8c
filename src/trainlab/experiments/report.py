"""Self-contained HTML reports: figures embedded as base64 PNG, tables, the resolved config.

A report is a list of sections; each section has a heading and any of: paragraphs of text, a
table (header + rows), figures (PNG files, embedded), and preformatted text. No external assets,
so the file can be mailed or archived alone.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from trainlab.train.checkpoint import atomic_write_bytes


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    table: tuple[Sequence[str], Sequence[Sequence]] | None = None
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, png path)
    pre: str | None = None
    css_class: str = ""


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}"
    return html.escape(str(v))


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="">'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2rem auto;
padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f5f5f7} td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top} figure img{max-width:100%}
figcaption{color:#555;font-size:.9rem} pre{background:#f5f5f7;padding:.8rem;overflow:auto;font-size:.85rem}
.verdicts p{padding:.4rem .7rem;border-left:4px solid #d70;background:#fff7ee;margin:.3rem 0}
.ok p{border-left-color:#2a2;background:#f2fbf2} .pass{color:#2a2;font-weight:600} .fail{color:#c22;font-weight:600}
"""


def render_report(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The whole HTML document as a string."""
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        out.append(f"<p class='sub'>{html.escape(subtitle)}</p>")
    for s in sections:
        out.append(f"<section class='{html.escape(s.css_class)}'><h2>{html.escape(s.title)}</h2>")
        out.extend(f"<p>{t}</p>" if t.startswith("<") else f"<p>{html.escape(t)}</p>" for t in s.text)
        if s.table is not None:
            header, rows = s.table
            out.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
            out.append("</table>")
        for caption, path in s.figures:
            out.append(f"<figure>{_img(path)}<figcaption>{html.escape(caption)}</figcaption></figure>")
        if s.pre is not None:
            out.append(f"<pre>{html.escape(s.pre)}</pre>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(path: str | Path, title: str, sections: Sequence[Section], subtitle: str = "") -> Path:
    path = Path(path)
    atomic_write_bytes(path, render_report(title, sections, subtitle).encode())
    return path
