"""Small HTML pieces shared by the report's sections and its mosaics."""

from __future__ import annotations

import base64
import html


def _img(data: bytes, mime: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{base64.b64encode(data).decode()}">'


def gallery(cards: list[str]) -> str:
    return '<div class="gallery">' + "\n".join(cards) + "</div>"
