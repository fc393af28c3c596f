"""Build hook: compile ``edgebus._speedups`` (optional C) when a C compiler is found.

edgebus runs without it: every function it holds also exists in pure Python and is
used instead when the module is missing (or ``EDGEBUS_NO_SPEEDUPS`` is set). So a machine
without a compiler, or a failed compile, still builds and installs; the hook says so
on stderr. For an editable install the module is compiled into the source tree (where
the editable install imports from); for a wheel it is added to the wheel, which then
carries a platform tag.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("edgebus/_native/speedups.c")


def _target() -> Path:
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return Path("edgebus") / f"_speedups{suffix}"


def compile_speedups(root: Path) -> Path | None:
    """Compile the extension into ``root/edgebus``; its path, or None (and why, on
    stderr) when it could not be built."""
    if os.environ.get("EDGEBUS_NO_SPEEDUPS"):
        print("edgebus: EDGEBUS_NO_SPEEDUPS set: pure Python only", file=sys.stderr)
        return None
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    if not cc or shutil.which(cc[0]) is None:
        print(f"edgebus: no C compiler ({cc[0] if cc else 'cc'}): pure Python only",
              file=sys.stderr)
        return None
    target = root / _target()
    command = [
        *cc,
        "-shared",
        "-fPIC",
        "-O2",
        "-Wall",
        f"-I{sysconfig.get_paths()['include']}",
        str(root / SOURCE),
        "-o",
        str(target),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"edgebus: compiling {SOURCE} failed, pure Python only:\n{result.stderr}",
              file=sys.stderr)
        return None
    return target


class CustomBuildHook(BuildHookInterface):  # type: ignore[misc]
    """Hatchling calls this before building a wheel or an editable install."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        built = compile_speedups(Path(self.root))
        if built is None or version == "editable":
            return
        build_data["force_include"][str(built)] = str(_target())
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
