"""The plugin template: ``cellbench plugin new NAME --kind KIND`` writes a new plugin distribution
whose skeleton passes the conformance kit's checks for its kind.

The files are in ``files/``: ``common/`` for every kind and one folder per kind, each a text with
``{{placeholders}}`` (``.tmpl``, so that no tool reads them as code of this package).
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path

#: A plugin name: lowercase words of letters and digits joined by single hyphens.
NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
MAX_NAME = 40


class PluginKind(StrEnum):
    """The kinds of plugin the template writes (``--kind``)."""

    CHANNEL = "channel"
    OSI = "osi"
    CHAMBER = "chamber"
    NOTIFIER = "notifier"
    SYNC = "sync"
    INTERFACE = "interface"


class TemplateError(ValueError):
    """A plugin cannot be written: the message names the argument (NAME, --kind, --dir)."""


@dataclass(frozen=True, slots=True)
class KindTemplate:
    """What differs between the kinds' templates."""

    title: str  # "channel driver"
    plural: str  # "channel drivers"
    enum: str  # the Kind member
    hook: str  # the registration hook
    module: str  # the module of the skeleton, and of its test: test_<module>.py
    suffix: str  # of the skeleton's class name
    summary: str  # the descriptor's description until the author writes theirs
    skeleton: str  # what the skeleton is, for the README
    dependencies: tuple[str, ...] = ("cellbench-sdk", "pydantic>=2.7,<3")


KINDS: dict[PluginKind, KindTemplate] = {
    PluginKind.CHANNEL: KindTemplate(
        "channel driver", "channel drivers", "CHANNEL_DRIVER", "cellbench_channel_drivers",
        "driver", "Driver", "simulated channels (replace with your cycler)",
        "simulated channels held in memory",
        ("cellbench-sdk", "numpy>=2.0,<3", "pydantic>=2.7,<3")),
    PluginKind.OSI: KindTemplate(
        "OSI device", "OSI devices", "OSI_DEVICE", "cellbench_osi_devices", "device", "Device",
        "simulated signals (replace with your device)", "a simulated temperature and setpoint"),
    PluginKind.CHAMBER: KindTemplate(
        "climate chamber", "climate chambers", "CLIMATE_CHAMBER", "cellbench_climate_chambers",
        "chamber", "Chamber", "simulated chamber (replace with your chamber)",
        "a simulated chamber held in memory"),
    PluginKind.NOTIFIER: KindTemplate(
        "notifier", "notifiers", "NOTIFIER", "cellbench_notifiers", "notifier", "Notifier",
        "writes events to a log (replace it)", "a notifier that writes to a log"),
    PluginKind.SYNC: KindTemplate(
        "sync target", "sync targets", "SYNC_TARGET", "cellbench_sync_targets", "target",
        "Target", "copies the station database into JSON files (replace it)",
        "a copy into JSON files, one per batch"),
    PluginKind.INTERFACE: KindTemplate(
        "interface", "interfaces", "INTERFACE", "cellbench_interfaces", "interface", "Interface",
        "a line protocol over TCP (replace it)", "a line protocol on TCP with two commands"),
}


def plugin_files(name: str, kind: str) -> dict[str, str]:
    """The files of a new plugin ``name`` of ``kind``: relative path -> text."""
    check_name(name)
    if kind not in KINDS:
        raise TemplateError(f"--kind {kind!r} is not a kind of plugin: use one of "
                            f"{', '.join(KINDS)}")
    spec = KINDS[PluginKind(kind)]
    package = "cellbench_" + name.replace("-", "_")
    words = "".join(part.capitalize() for part in name.split("-"))
    values = {
        "name": name, "distribution": f"cellbench-{name}", "package": package,
        "class": words + spec.suffix, "settings_class": words + "Settings",
        "kind_title": spec.title, "kind_plural": spec.plural, "kind_enum": spec.enum,
        "hook": spec.hook, "module": spec.module, "summary": spec.summary,
        "skeleton": spec.skeleton,
        "dependencies": ", ".join(f'"{dependency}"' for dependency in spec.dependencies),
    }
    files = resources.files(__package__).joinpath("files")
    layout = {
        "pyproject.toml": files / "common" / "pyproject.toml.tmpl",
        "README.md": files / "common" / "README.md.tmpl",
        f"src/{package}/__init__.py": files / "common" / "__init__.py.tmpl",
        f"src/{package}/py.typed": None,
        f"src/{package}/plugin.py": files / "common" / "plugin.py.tmpl",
        f"src/{package}/settings.py": files / kind / "settings.py.tmpl",
        f"src/{package}/{spec.module}.py": files / kind / f"{spec.module}.py.tmpl",
        f"tests/test_{spec.module}.py": files / kind / "test.py.tmpl",
    }
    written: dict[str, str] = {}
    for path, template in layout.items():
        text = "" if template is None else template.read_text(encoding="utf-8")
        written[path] = re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)
    return written


def check_name(name: str) -> None:
    """Refuse a NAME that cannot name a plugin, its distribution and its package."""
    if name.startswith("cellbench"):
        rest = name.removeprefix("cellbench").lstrip("-_")
        hint = f" (did you mean {rest!r}?)" if rest else ""
        raise TemplateError(f"NAME {name!r}: leave out the prefix cellbench, which every plugin "
                            f"distribution gets{hint}")
    if not NAME.fullmatch(name) or len(name) > MAX_NAME or keyword.iskeyword(name):
        raise TemplateError(f"NAME {name!r} is not a plugin name: use lowercase letters and "
                            f"digits in words joined by single hyphens, starting with a letter, "
                            f"at most {MAX_NAME} characters (e.g. acme-psu)")


def new_plugin(name: str, kind: str, directory: Path | None = None) -> Path:
    """Write a new plugin distribution into ``directory`` (default ``./cellbench-NAME``), which
    must not exist; return it. On any error nothing is written."""
    files = plugin_files(name, kind)
    option = "--dir" if directory is not None else "NAME"
    target = (directory or Path(f"cellbench-{name}")).absolute()
    if target.exists():
        raise TemplateError(f"{option}: {target} exists; choose another NAME or --dir "
                            "(nothing was written)")
    if not target.parent.is_dir():
        raise TemplateError(f"{option}: the folder {target.parent} to write {target.name} into "
                            "does not exist (nothing was written)")
    # Written beside the target and renamed into place, so that a failure leaves nothing.
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    staging.mkdir()
    try:
        for path, text in files.items():
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            (staging / path).write_text(text, encoding="utf-8")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
