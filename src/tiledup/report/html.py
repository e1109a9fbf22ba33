"""Rendering the report: Jinja2 templates (report/templates, autoescaped) over the view's plain data."""

from __future__ import annotations

import base64

import jinja2

ENV = jinja2.Environment(loader=jinja2.PackageLoader("tiledup.report", "templates"),
                         autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
                         trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def data_uri(data: bytes, mime: str) -> str:
    """An image inline in the page (the report is one self-contained file)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def render(template: str, **view) -> str:
    return ENV.get_template(template).render(**view)
