"""The rules for text that enters cellbench from outside — plan files, queue rows, remote
commands, imported files, the command line — checked where it enters, once, by these
functions (docs/hardening.md, "Names and text").

- **Text** (messages, step text, plan text): any Unicode character except control characters
  other than tab and newline (NUL among them: PostgreSQL cannot store it, and it stops central
  sync) and lone surrogates (not encodable as UTF-8).
- **A name** (of a test, plan, battery, station, channel, ...): text of one line, not empty, no
  leading or trailing blanks, at most :data:`NAME_LENGTH` characters (the database's limit).
- **An identifier** (a battery's name and chemistry, a station or channel name: what
  remote-control replies list):
  a name without ``;`` or ``,``, the separators of those replies (docs/rci.md).
"""

from __future__ import annotations

import unicodedata

#: The longest name the database stores (``schema.NAME_LENGTH``).
NAME_LENGTH = 255

_ALLOWED_CONTROLS = frozenset("\t\n")
_SEPARATORS = ";,"


class TextError(ValueError):
    """Text that breaks one of the rules; the message names what it is and the rule."""


def check_text(value: object, what: str, *, length: int | None = None) -> str:
    """``value`` if it is text by the rules above (and at most ``length`` characters)."""
    if not isinstance(value, str):
        raise TextError(f"{what} must be text, not {type(value).__name__}")
    # Printable ASCII, most text, holds no control character: a start of 100,000 channels
    # checks their names in a tenth of the time.
    if not (value.isascii() and value.isprintable()):
        for position, char in enumerate(value):
            category = unicodedata.category(char)
            if (category == "Cc" and char not in _ALLOWED_CONTROLS) or category == "Cs":
                raise TextError(f"{what} holds the control character U+{ord(char):04X} at "
                                f"position {position + 1}; text may not hold control "
                                "characters other than tab and newline")
    if length is not None and len(value) > length:
        raise TextError(f"{what} is {len(value)} characters long; at most {length} are "
                        "allowed")
    return value


def printable(text: str) -> str:
    """``text`` with what the text rule refuses written as escapes (``\\x00``): for text a
    device or a library produced, which cellbench stores rather than refuses."""
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if (unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROLS)
        or unicodedata.category(char) == "Cs" else char
        for char in text)


def check_name(value: object, what: str, *, length: int = NAME_LENGTH) -> str:
    """``value`` if it is a name by the rules above."""
    text = check_text(value, what, length=length)
    if not text.strip():
        raise TextError(f"{what} must not be empty")
    if "\n" in text or "\t" in text:
        raise TextError(f"{what} must be one line without tabs")
    if text != text.strip():
        raise TextError(f"{what} must not start or end with blanks: {text!r}")
    return text


def check_identifier(value: object, what: str, *, length: int = NAME_LENGTH) -> str:
    """``value`` if it is an identifier by the rules above."""
    text = check_name(value, what, length=length)
    for char in _SEPARATORS:
        if char in text:
            raise TextError(f"{what} must not hold {char!r} (it separates the fields of "
                            f"remote-control replies): {text!r}")
    return text
