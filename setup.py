"""Build the optional C module ``edgebus._speedups``; everything else is in pyproject.toml.

edgebus runs without the module: every function it holds also exists in pure Python,
used instead when the module is missing (or ``EDGEBUS_NO_SPEEDUPS`` is set at run
time). So, as aiokafka's ``ve_build_ext`` does, a machine without a C compiler or a
failed compile still builds and installs, and says so on stderr; with
``EDGEBUS_NO_SPEEDUPS`` set at build time the extension is not even tried (the wheel is
then pure Python). ``pip install -e .`` compiles it into the source tree.

The Avro schemas of the top-level ``schemas/`` go into the wheel as
``edgebus/_schemas/`` (where ``edgebus.wire.schema_registry`` looks for them when there
is no source checkout beside the package), and into the sdist as ``schemas/``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import CCompilerError, ExecError, PlatformError

ROOT = Path(__file__).resolve().parent
SCHEMAS = "schemas"
SCHEMA_FILES = ("*.avsc", "README.md")
SPEEDUPS = Extension(
    "edgebus._speedups",
    [
        "edgebus/_native/speedups.c", "edgebus/_native/reader.c", "edgebus/_native/fold.c",
        "edgebus/_native/fold_checks.c",
        "edgebus/_native/rows.c", "edgebus/_native/interleave.c",
    ],
    depends=["edgebus/_native/speedups.h", "edgebus/_native/fold.h"],
    optional=True,
)


def _schema_files() -> list[Path]:
    return sorted(p for pattern in SCHEMA_FILES for p in (ROOT / SCHEMAS).glob(pattern))


def _say(message: str) -> None:
    print(f"edgebus: {message}", file=sys.stderr)


class optional_build_ext(build_ext):
    """``build_ext`` that falls back to pure Python when the module cannot be compiled."""

    def run(self) -> None:
        try:
            super().run()
        except (PlatformError, FileNotFoundError) as e:  # no usable compiler at all
            self._fall_back(e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except (CCompilerError, ExecError, PlatformError, FileNotFoundError, ValueError) as e:
            self._fall_back(e)

    def _fall_back(self, error: BaseException) -> None:
        _say(
            f"could not compile edgebus._speedups ({type(error).__name__}: {error}); "
            "installing without it: edgebus runs the same code in pure Python "
            "(identical records, slower writes)"
        )


class build_py_with_schemas(build_py):
    """``build_py`` that also copies ``schemas/`` into the package as ``edgebus/_schemas``."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads schemas/ of the checkout
            return
        files = _schema_files()
        if not any(p.suffix == ".avsc" for p in files):
            raise FileNotFoundError(f"no Avro schemas in {ROOT / SCHEMAS}: edgebus needs them")
        target = Path(self.build_lib) / "edgebus" / "_schemas"
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copyfile(path, target / path.name)


class sdist_with_schemas(sdist):
    """``sdist`` that carries ``schemas/`` (outside any package), for wheels built from it."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        schemas = [str(p.relative_to(ROOT)) for p in _schema_files()]
        super().make_release_tree(base_dir, [*files, *(s for s in schemas if s not in files)])


if os.environ.get("EDGEBUS_NO_SPEEDUPS"):
    _say("EDGEBUS_NO_SPEEDUPS is set: building without edgebus._speedups (pure Python)")
    ext_modules: list[Extension] = []
else:
    ext_modules = [SPEEDUPS]

setup(
    ext_modules=ext_modules,
    cmdclass={
        "build_ext": optional_build_ext,
        "build_py": build_py_with_schemas,
        "sdist": sdist_with_schemas,
    },
)
