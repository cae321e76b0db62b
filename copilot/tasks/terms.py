"""Distinctive terms shared between an incident's live signals and past documents: the
crude but explainable overlap the root-cause and runbook rules use to say *why* they match."""

from __future__ import annotations

import re
from collections.abc import Sequence

_GENERIC_WORDS = """a about after again all also an and any are as at be because been before
being both but by can could did do does each few for from had has have he her his how if in into
is it its just may me might more most my no nor not now of off on once only or other our out own
same she should so some such than that the their them then there these they this those through
to too under until up very was we were what when where which while who why with would you your
something anything thing things went going get got make made use used using via max min
sorry many already top xx ms
alert fir firing fired error errors warn warning critical info severity
high low rate ratio service request return returned total count over last minute minutes second
seconds since new line lines pattern label labels threshold percent more less than will fail
failed failure utc example unknown value above below per api post"""
_GENERIC = frozenset(_GENERIC_WORDS.split())
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def key_terms(text: str) -> dict[str, str]:
    """Content terms of a text (stem → the word as written): camelCase, snake_case and
    kebab-case names are split, so ``LedgerDBConnectionsSaturated`` shares terms with
    "ledger-db connections"."""
    out: dict[str, str] = {}
    for token in _TOKEN.findall(text):
        for part in _CAMEL.findall(token):
            surface = part.lower()
            if surface.isdigit() or surface in _GENERIC:
                continue
            stem = _stem(surface)
            if stem not in _GENERIC and len(stem) > 1:
                out.setdefault(stem, surface)
    return out


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def distinctive(doc_terms: dict[str, set[str]]) -> set[str]:
    """Terms found in at most half of the documents (at least one): those that tell the
    documents apart rather than the domain they share."""
    df: dict[str, int] = {}
    for found in doc_terms.values():
        for term in found:
            df[term] = df.get(term, 0) + 1
    limit = max(1, len(doc_terms) // 2)
    return {t for t, n in df.items() if n <= limit}


def shown(found: set[str], surface: dict[str, str], limit: int = 5) -> str:
    """A few of ``found`` as the words were written, in the order ``surface`` met them."""
    ordered = [surface[t] for t in surface if t in found] + sorted(
        t for t in found if t not in surface)
    return ", ".join(list(dict.fromkeys(ordered))[:limit])


def and_list(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
