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
