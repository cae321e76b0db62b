"""Prompt templates as files: one per task, YAML frontmatter (version, required variables),
Jinja2 body with shared partials; rendering fails loudly on a missing variable."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

TEMPLATES = Path(__file__).resolve().parent / "templates"
_FRONT = re.compile(r"\A---\n(.*?)\n---\n", re.S)


class PromptError(Exception):
    """A template is malformed, or rendered without a required variable."""


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    requires: tuple[str, ...]
    body: str

    def render(self, **variables: Any) -> str:
        missing = [v for v in self.requires if v not in variables]
        if missing:
            raise PromptError(f"prompt {self.name!r} v{self.version} needs {', '.join(missing)}")
        import jinja2

        env = _env()
        try:
            return env.from_string(self.body).render(**variables).strip() + "\n"
        except jinja2.UndefinedError as exc:
            raise PromptError(f"prompt {self.name!r}: {exc.message}") from exc


@lru_cache(maxsize=1)
def _env() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["as_data"] = as_data
    return env


_TAGS = re.compile(r"<\s*(/?)\s*(context|item|system|instructions?)\b", re.I)


def as_data(text: object) -> str:
    """Untrusted text cannot close or open the prompt's own delimiters: ``</item>`` inside a
    log line becomes ``‹/item>``."""
    return _TAGS.sub(lambda m: "‹" + m.group(1) + m.group(2), str(text))


def load_prompt(name: str) -> Prompt:
    path = TEMPLATES / f"{name}.md.j2"
    if not path.exists():
        known = ", ".join(sorted(available()))
        raise PromptError(f"no prompt named {name!r}; known: {known}")
    text = path.read_text()
    match = _FRONT.match(text)
    if not match:
        raise PromptError(f"{path}: missing the --- frontmatter with version and requires")
    meta = yaml.safe_load(match.group(1)) or {}
    try:
        version = int(meta["version"])
        requires = tuple(str(v) for v in meta.get("requires", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise PromptError(f"{path}: frontmatter needs an integer 'version'") from exc
    return Prompt(name=name, version=version, requires=requires, body=text[match.end():])


def available() -> list[str]:
    return sorted(p.name.removesuffix(".md.j2") for p in TEMPLATES.glob("*.md.j2"))
