"""Citations in model output: find them, map prompt refs back to evidence ids, validate.

A prompt labels each context item with a short ref (``S1``, ``S2``...) that small models copy
reliably; answers may cite either that ref or the item's full id (``alert:12``). A cited id that
was not in the context is dropped, and a claim left with no valid citation is marked unsupported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# [S3] or [S3, S5] or [alert:12] or [chunk:pm-x::ab12; S4]
_BRACKET = re.compile(r"\[((?:\s*(?:S\d+|[a-z_]+:[^\]\s,;]+)\s*[,;]?)+)\]")
_ONE = re.compile(r"S\d+|[a-z_]+:[^\]\s,;]+")


def extract(text: str, refs: Mapping[str, str]) -> tuple[str, list[str]]:
    """(text without the citation brackets, cited ids in order). ``refs`` maps prompt refs to
    ids; an unknown ref is returned as written so that validation can drop and report it."""
    cited: list[str] = []
    for group in _BRACKET.findall(text):
        for token in _ONE.findall(group):
            cited.append(refs.get(token, token))
    clean = _BRACKET.sub("", text)
    clean = re.sub(r"\s+([.,;:])", r"\1", re.sub(r"[ \t]{2,}", " ", clean)).strip()
    return clean, list(dict.fromkeys(cited))


def validate(cited: Iterable[str], allowed: set[str]) -> tuple[list[str], list[str]]:
    """(kept, dropped): only ids that were in the context survive."""
    kept, dropped = [], []
    for cid in cited:
        (kept if cid in allowed else dropped).append(cid)
    return kept, dropped


_WORD = re.compile(r"[a-z0-9][a-z0-9_.:/-]*[a-z0-9]")
_COMMON = frozenset("""about after again also because been before being between could does during
each from have having here into just more most much only other over same should since some such
than that their them then there these they this those through under until very were what when
where which while will with would your yours the and for are was not but can""".split())


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """Lower-cased, lightly stemmed words of three or more characters; identifiers count
    whole and by their parts (``checkout-api`` → ``checkout-api``, ``checkout``, ``api``)."""
    words: set[str] = set()
    for token in _WORD.findall(text.lower()):
        for part in {token, *re.split(r"[-_.:/]+", token)}:
            if len(part) >= 3 and part not in _COMMON:
                words.add(_stem(part))
    return words


def support(claim: str, sources: Iterable[str]) -> float:
    """Share of a claim's content words found in the sources it cites (0..1): a cheap check
    that a model's citation points at text that says something like the claim."""
    words = content_words(claim)
    if not words:
        return 1.0
    found = set().union(*(content_words(s) for s in sources)) if sources else set()
    return len(words & found) / len(words)
