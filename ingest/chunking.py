"""Structure-aware chunking: Markdown headings first, then a token budget with overlap.

Each chunk keeps its section path ("Diagnosis > Check the pool"), and its embedded text is
prefixed with the document title, section path and, for runbooks, the alerts it answers, so
that both rankers see what the passage is about even when the passage itself does not say.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ingest.documents import Document
from ingest.tokens import count_tokens, encoding
from retrieval.types import Chunk

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")


@dataclass
class Section:
    path: list[str]
    text: str


def split_sections(body: str) -> list[Section]:
    """Split Markdown at ATX headings (not inside code fences); keep the heading trail."""
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        text = "\n".join(lines).strip()
        if text:
            sections.append(Section([t for _, t in trail], text))
        lines.clear()

    for line in body.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            while trail and trail[-1][0] >= level:
                trail.pop()
            trail.append((level, match.group(2).strip()))
        else:
            lines.append(line)
    flush()
    return sections


def _windows(text: str, budget: int, overlap: int) -> list[str]:
    """Split text to pieces of at most ``budget`` tokens, paragraph-aligned where possible."""
    if count_tokens(text) <= budget:
        return [text]
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for para in paragraphs:
        n = count_tokens(para)
        if n > budget:
            if current:
                pieces.append("\n\n".join(current))
                current, size = [], 0
            pieces.extend(_token_windows(para, budget, overlap))
            continue
        if size + n > budget and current:
            pieces.append("\n\n".join(current))
            tail = _tail(current, overlap)
            current, size = ([tail] if tail else []), count_tokens(tail) if tail else 0
        current.append(para)
        size += n
    if current:
        pieces.append("\n\n".join(current))
    return pieces


def _tail(paragraphs: list[str], overlap: int) -> str:
    if overlap <= 0 or not paragraphs:
        return ""
    tokens = encoding().encode(paragraphs[-1], disallowed_special=())
    return str(encoding().decode(tokens[-overlap:])).strip() if len(tokens) > overlap else paragraphs[-1]


def _token_windows(text: str, budget: int, overlap: int) -> list[str]:
    enc = encoding()
    tokens = enc.encode(text, disallowed_special=())
    step = max(1, budget - overlap)
    out = []
    for start in range(0, len(tokens), step):
        out.append(str(enc.decode(tokens[start : start + budget])).strip())
        if start + budget >= len(tokens):
            break
    return [o for o in out if o]


def chunk_document(
    doc: Document, *, budget: int, overlap: int, min_tokens: int, salt: str = ""
) -> list[Chunk]:
    """Chunks of one document with ids that are hashes of their content (plus ``salt``)."""
    pieces: list[tuple[list[str], str]] = []
    first = re.search(r"^#[ \t]+(.+?)[ \t#]*$", doc.body, re.MULTILINE)
    h1 = first.group(1).strip() if first else None
    for section in split_sections(doc.body):
        head = section.path
        if head and (head[0] == doc.title or head[0] == h1):
            head = head[1:]
        for piece in _windows(section.text, budget, overlap):
            pieces.append((head, piece))
    merged: list[tuple[list[str], str]] = []
    for head, text in pieces:
        if merged and count_tokens(merged[-1][1]) < min_tokens and (
            count_tokens(merged[-1][1]) + count_tokens(text) <= budget
        ):
            prev_head, prev_text = merged.pop()
            label = prev_head if prev_head == head else (prev_head or head)
            text = (f"{' > '.join(head)}\n{text}" if head and head != prev_head else text)
            merged.append((label, f"{prev_text}\n\n{text}"))
        else:
            merged.append((head, text))
    if not merged:
        merged = [([], doc.body.strip())]
    base = {k: v for k, v in doc.metadata.items() if v is not None}
    date = str(base.get("date") or "")
    services = list(base.get("services") or [])
    alerts = list(base.get("alerts") or [])
    chunks: list[Chunk] = []
    for n, (head, text) in enumerate(merged):
        section = " > ".join(head)
        prefix = [doc.title]
        if section:
            prefix.append(section)
        header = " — ".join(prefix)
        extra = []
        if alerts:
            extra.append("Alerts: " + ", ".join(alerts))
        if services:
            extra.append("Services: " + ", ".join(services))
        embed_text = "\n".join([header, *extra, "", text])
        digest = hashlib.sha256(
            "\x00".join([salt, doc.doc_id, str(n), embed_text]).encode()
        ).hexdigest()[:16]
        meta = dict(base)
        meta.update(
            doc_id=doc.doc_id, kind=doc.kind, title=doc.title, section=section, source=doc.source,
            services=services, chunk_index=n,
        )
        if date:
            meta["date_int"] = int(date.replace("-", ""))
        chunks.append(Chunk(id=f"{doc.doc_id}::{digest}", doc_id=doc.doc_id, text=text,
                            embed_text=embed_text, metadata=meta))
    return chunks
