"""Names that arrive from outside (file names, manifest fields) and how they may be shown.

A name with a control or format character (newline, ESC, a bidi override, a zero-width
character, a line separator) can forge lines in logs or drive a terminal; the landing refuses
such names, and anything that must show one anyway shows it through :func:`escape_text`.
"""

from __future__ import annotations

import unicodedata

# Cc: C0/C1 controls (NUL, newline, ESC, DEL); Cf: format (bidi overrides, zero-width, BOM);
# Zl/Zp: line and paragraph separators; Cs: surrogates (a non-UTF-8 byte decoded by the OS).
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def is_unsafe_char(char: str) -> bool:
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def has_control_chars(text: str) -> bool:
    """True when ``text`` holds any character that must never reach a terminal or log raw."""
    return any(is_unsafe_char(char) for char in text)


def _escape_char(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if not is_unsafe_char(char):
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_text(value: object) -> str:
    """``value`` as one printable line: control/format characters and backslashes escaped
    (repr-like: ``\\n``, ``\\x1b``, ``\\u202e``); other text, including non-ASCII letters, as is.
    Backslashes are doubled only in text that has something escaped, so ordinary text reads unchanged."""
    text = "" if value is None else str(value)
    if not has_control_chars(text):
        return text
    return "".join(_escape_char(char) for char in text)
