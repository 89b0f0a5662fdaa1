"""The C header of native driver libraries, ``cellbench_driver.h``, shipped with the SDK.

A vendor library built against it can be loaded by a station (the ``native`` plugin, through
cffi). :data:`HEADER_PATH` is where the installed header lies, for a compiler's ``-I``;
:func:`declarations` is the part a C parser such as cffi's ``cdef`` reads.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

#: The installed header file.
HEADER_PATH = Path(__file__).parent / "include" / "cellbench_driver.h"
#: The folder holding it, for ``gcc -I``.
INCLUDE_DIR = HEADER_PATH.parent

_BEGIN = "/* cellbench: declarations begin"
_END = "/* cellbench: declarations end */"


@cache
def header_text() -> str:
    """The whole header."""
    return HEADER_PATH.read_text(encoding="utf-8")


@cache
def declarations() -> str:
    """The header's constants, types and functions, without the preprocessor guards and the
    export macro: plain C declarations for ``cffi.FFI.cdef``."""
    text = header_text()
    start = text.index(_BEGIN)
    body = text[text.index("\n", start) + 1:text.index(_END)]
    return body.replace("CB_EXPORT ", "")


@cache
def api_version() -> int:
    """``CB_DRIVER_API_VERSION``: the version of the interface this header declares."""
    match = re.search(r"^#define CB_DRIVER_API_VERSION (\d+)$", header_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{HEADER_PATH} defines no CB_DRIVER_API_VERSION")
    return int(match[1])


@cache
def function_names() -> tuple[str, ...]:
    """The names of the functions the header declares, in order."""
    return tuple(re.findall(r"^CB_EXPORT [^(]*?\b(cb_\w+)\(", header_text(), re.MULTILINE))
