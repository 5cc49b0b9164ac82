"""The one Jinja environment: strict, deterministic, with YAML-safe value filters."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jinja2

from ._errors import TemplateError
from ._resources import templates_dir


def to_yaml_scalar(value: Any) -> str:
    """Render a value as a YAML flow scalar that parses back to exactly the same value.

    JSON is valid YAML, and json.dumps escapes quotes, colons, newlines and control characters, so a value can
    never break out of its place in the document. Non-ASCII is kept readable (ensure_ascii=False) but the
    characters YAML forbids in a document (C0/C1 controls, surrogates) stay escaped.
    """
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return json.dumps(value)
    text = json.dumps(value, ensure_ascii=False)
    return "".join(_escape_yaml_unsafe(ch) for ch in text)


def _escape_yaml_unsafe(ch: str) -> str:
    code = ord(ch)
    printable = code in (0x09, 0x0A, 0x0D) or 0x20 <= code <= 0x7E
    printable = printable or 0xA0 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF
    # NEL, LS and PS are line breaks to YAML 1.1: raw inside a quoted scalar they fold (and eat nearby spaces).
    if printable and code not in (0xFEFF, 0x2028, 0x2029):
        return ch
    return f"\\u{code:04x}" if code <= 0xFFFF else json.dumps(ch)[1:-1]


def to_json_line(value: Any) -> str:
    """One line of compact JSON with sorted-free, insertion-ordered keys (model_snapshot must be one line)."""
    return json.dumps(value, separators=(",", ":"))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yaml"] = to_yaml_scalar
    env.filters["json_line"] = to_json_line
    return env


def render_template(template: str, /, **context: Any) -> str:
    """Render ``templates/TEMPLATE`` with ``context``; a Jinja failure becomes a TemplateError naming the template."""
    try:
        return environment().get_template(template).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"not found in {templates_dir()}", template=template) from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(str(exc), template=template) from exc
