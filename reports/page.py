"""The HTML shell shared by the report and the index: escaping, assets, verdict badges."""

from __future__ import annotations

import html
from importlib import resources


def asset(name: str) -> str:
    """A file of reports/assets (CSS or JS), inlined so every page is a single file."""
    return resources.files("reports").joinpath("assets", name).read_text(encoding="utf-8")


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def inline_script(code: str) -> str:
    """A <script> element; a literal ``</script`` inside the code would end it early."""
    return "<script>" + code.replace("</script", "<\\/script") + "</script>"


def json_script(payload: str, **attributes: str) -> str:
    """JSON data in a non-executed script element (``</`` escaped so it cannot close the tag)."""
    attrs = "".join(
        f' {name.replace("_", "-")}="{esc(value)}"' for name, value in attributes.items()
    )
    return f'<script type="application/json"{attrs}>' + payload.replace("</", "<\\/") + "</script>"


def verdict_badge(verdict: str) -> str:
    return f'<span class="verdict-{esc(verdict)}">{esc(verdict)}</span>'


def document(title: str, head_extra: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{asset('report.css')}</style>{head_extra}</head>"
        f"<body>{body}</body></html>\n"
    )
