"""Where the keys of a TOML file are: the line of each table and key, so that errors about a
station file can name the line (``tomllib`` keeps no positions)."""

from __future__ import annotations

import re

#: A key path as pydantic reports it: table and key names, and indices into arrays of tables.
KeyPath = tuple[str | int, ...]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'')
_HEADER = re.compile(r"^\s*(\[\[?)([^\[\]]+)\]\]?")


def _parts(dotted: str) -> list[str]:
    """The names of a dotted key, quotes removed: ``a."b.c"`` is ``["a", "b.c"]``."""
    names: list[str] = []
    for match in re.finditer(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^.\s]+)\s*(?:\.|$)', dotted):
        name = match[1]
        names.append(name[1:-1] if name[:1] in "\"'" else name)
    return names


def key_lines(text: str) -> dict[KeyPath, int]:
    """The 1-based line of every table header and key of the TOML ``text``, by key path
    (``("channels", 0, "settings", "count")``); the first line where each is given."""
    lines: dict[KeyPath, int] = {}
    arrays: dict[KeyPath, int] = {}  # how many tables each array of tables has so far
    table: KeyPath = ()
    depth = 0  # open brackets of a value that spans lines
    for number, raw in enumerate(text.splitlines(), start=1):
        # Strings blanked out (same length), so that their #, = and brackets count for nothing.
        masked = _STRING.sub(lambda string: " " * len(string[0]), raw).split("#", 1)[0]
        code = raw[:len(masked)]
        if depth:
            depth += _opened(masked)
            continue
        header = _HEADER.match(masked)
        if header:
            path: list[str | int] = []
            names = _parts(code[header.start(2):header.end(2)])
            for n, name in enumerate(names):
                path.append(name)
                is_last = n == len(names) - 1
                if is_last and header[1] == "[[":
                    arrays[tuple(path)] = arrays.get(tuple(path), 0) + 1
                if tuple(path) in arrays:
                    path.append(arrays[tuple(path)] - 1)
            table = tuple(path)
            lines.setdefault(table, number)
            if header[1] == "[[":
                lines.setdefault(table[:-1], number)
            continue
        equals = masked.find("=")
        if equals < 1 or not code[:equals].strip():
            continue
        lines.setdefault((*table, *_parts(code[:equals])), number)
        depth = _opened(masked[equals + 1:])
    return lines


def _opened(code: str) -> int:
    """How many more brackets ``code`` opens than it closes."""
    return code.count("[") + code.count("{") - code.count("]") - code.count("}")


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of the nearest enclosing key or table that has one."""
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None
