"""Cleaning short user-supplied text (display names, status lines, group names)."""

from __future__ import annotations

import unicodedata

__all__ = ["clean_line"]

# Bidirectional embedding/override/isolate controls and invisible spaces and joiners that
# only serve to make two names look alike; the zero-width joiner and non-joiner stay.
_BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u2060\ufeff\u180e\u00ad"
)
_DROP_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn"})


def clean_line(raw: str | None) -> str:
    """One line of plain text: NFC, whitespace controls (tabs, newlines) turned into spaces,
    other control, surrogate, private-use and unassigned characters and bidi overrides
    dropped, then trimmed. Format characters such as the zero-width joiner stay, so emoji
    like 👩‍💻 and scripts that need them survive."""
    text = unicodedata.normalize("NFC", raw or "")
    out = []
    for ch in text:
        if ch in "\t\n\r\v\f\x85\u2028\u2029":
            out.append(" ")
        elif ch in _BIDI_CONTROLS or unicodedata.category(ch) in _DROP_CATEGORIES:
            continue
        else:
            out.append(ch)
    return "".join(out).strip()
