"""Compiling a driver library from C with gcc against the SDK's ``cellbench_driver.h``: for the
tests, the benchmark and anyone trying the example driver on Linux."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cellbench_sdk.driver_header import INCLUDE_DIR


class CompilerMissing(RuntimeError):
    """No C compiler of that name is installed."""


def compile_library(source: Path, target: Path, *defines: str, compiler: str = "gcc") -> Path:
    """``source`` compiled into the shared library ``target`` (``-shared -fPIC``, warnings as
    errors, each of ``defines`` as ``-D``); a failure raises ``RuntimeError`` with the
    compiler's messages."""
    found = shutil.which(compiler)
    if found is None:
        raise CompilerMissing(f"{compiler} is not installed; it compiles {source.name}")
    command = [found, "-shared", "-fPIC", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror",
               f"-I{INCLUDE_DIR}", *(f"-D{d}" for d in defines), "-o", str(target),
               str(source), "-lm"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return target
