"""cellbench_driver.h, the C header native driver libraries are built against: shipped inside
the SDK's package, valid C and C++ on its own, and readable by cffi's cdef."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cellbench_sdk import driver_header


def test_the_header_is_package_data_next_to_the_module() -> None:
    assert driver_header.HEADER_PATH.is_file()
    assert driver_header.HEADER_PATH.parent == driver_header.INCLUDE_DIR
    assert driver_header.header_text().startswith("/*\n * cellbench_driver.h")


def test_version_and_functions_come_from_the_header() -> None:
    text = driver_header.header_text()
    assert f"#define CB_DRIVER_API_VERSION {driver_header.api_version()}\n" in text
    names = driver_header.function_names()
    assert names[:4] == ("cb_api_version", "cb_open", "cb_close", "cb_last_error")
    assert len(names) == len(set(names)) == text.count("\nCB_EXPORT ")


def test_declarations_are_plain_c_for_cffi() -> None:
    cffi = pytest.importorskip("cffi")
    declarations = driver_header.declarations()
    assert "CB_EXPORT" not in declarations and "#if" not in declarations
    ffi = cffi.FFI()
    ffi.cdef(declarations)
    # The layout a library and cellbench share: one int, then four doubles.
    assert ffi.sizeof("cb_sample") == 40 and ffi.offsetof("cb_sample", "age_s") == 8
    assert ffi.sizeof("cb_signal_info") == 64 + 16 + 4


@pytest.mark.parametrize(("compiler", "language", "defines"), [
    ("gcc", "c", []), ("gcc", "c", ["-DCB_BUILDING_DRIVER"]), ("g++", "c++", [])])
def test_the_header_compiles_on_its_own(tmp_path: Path, compiler: str, language: str,
                                        defines: list[str]) -> None:
    found = shutil.which(compiler)
    if found is None:
        pytest.skip(f"{compiler} is not installed")
    source = tmp_path / "only_the_header.c"
    source.write_text('#include "cellbench_driver.h"\n')
    done = subprocess.run(
        [found, "-x", language, "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-pedantic",
         f"-I{driver_header.INCLUDE_DIR}", *defines, str(source)],
        capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_every_status_and_mode_is_a_distinct_constant() -> None:
    defines = dict(re.findall(r"^#define (CB_\w+) (-?\d+)", driver_header.header_text(),
                              re.MULTILINE))
    for prefix in ("CB_MODE_", "CB_PROFILE_"):
        values = [v for k, v in defines.items() if k.startswith(prefix)]
        assert len(values) == len(set(values)), prefix
    statuses = [defines[k] for k in ("CB_OK", "CB_ERROR", "CB_NOT_SUPPORTED", "CB_OUT_OF_RANGE",
                                     "CB_TIMEOUT", "CB_DISCONNECTED")]
    assert len(set(statuses)) == 6 and all(int(v) < 0 for v in statuses[1:])
