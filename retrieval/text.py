"""Tokenization for the lexical index: identifier-aware, so alert names match their words.

``KubePodCrashLooping`` yields ``kubepodcrashlooping`` and ``kube pod crash looping``;
``node_filesystem_avail_bytes`` yields the whole name and its parts.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z0-9]+(?:[_.:-][A-Za-z0-9]+)*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "may", "more", "most", "no", "not", "of", "on", "or", "our", "out", "should", "so", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "too", "via", "was", "we", "were", "what", "when", "where", "which", "while", "who", "will", "with", "would", "you", "your"]
)


def _stem(word: str) -> str:
    """A deliberately light stemmer: plural and -ing/-ed endings, enough for runbook prose."""
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    for match in _WORD.finditer(text):
        whole = match.group(0)
        parts = [p for p in re.split(r"[_.:-]", whole) if p]
        pieces: list[str] = []
        for part in parts:
            sub = _CAMEL.findall(part)
            pieces.extend(sub if len(sub) > 1 else [part])
        lowered = [p.lower() for p in pieces]
        for p in lowered:
            if p not in STOPWORDS and len(p) > 1:
                tokens.append(_stem(p))
        if len(lowered) > 1:
            tokens.append(whole.lower())
    return tokens
