"""Mail templates (Jinja2): a subject, a plain-text part and an autoescaped HTML part per kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).parent / "templates" / "mail"


class TemplateRenderer:
    def __init__(self, directory: Path = TEMPLATES) -> None:
        self._html = Environment(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(["html"]),  # a user agent string is attacker-chosen
            undefined=StrictUndefined,
        )
        # Plain text is not HTML: escaping it would garble, not protect, what a reader sees.
        self._text = Environment(
            loader=FileSystemLoader(directory),
            autoescape=False,  # noqa: S701
            undefined=StrictUndefined,
        )

    def render(self, kind: str, context: dict[str, Any]) -> tuple[str, str, str]:
        subject = self._text.get_template(f"{kind}.subject.txt").render(context).strip()
        # One line, whatever a context value held: no header injection through a subject.
        subject = " ".join(subject.split())
        text = self._text.get_template(f"{kind}.txt").render(context)
        html = self._html.get_template(f"{kind}.html").render({**context, "subject": subject})
        return subject, text, html
