"""Build hook: the shipped rules, routing, Prometheus config, runbooks and dashboards go into the package.

They live once in the repository (alerts/, deploy/prometheus/, dashboards/), where they are edited,
generated and tested. `build_py` copies them into the build folder as `batch_exporter/shipped/`, with
the repository's layout, so `batch-exporter drill` and `demo --stack` find them in an installed wheel
(batch_exporter/practice/stack.py, `ShippedFiles.locate`). The source tree is never written to. An
editable install gets no copy: it reads them from the checkout. MANIFEST.in puts the same files in the
sdist, so a wheel built from the sdist has them too.

Everything else about the package is in pyproject.toml.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PROJECT = Path(__file__).resolve().parent
# keep in step with MANIFEST.in
SHIPPED = (
    "alerts/*.rules.yml",
    "alerts/alertmanager.yml",
    "alerts/runbooks/*.md",
    "deploy/prometheus/prometheus.yml",
    "dashboards/*.json",
)
PACKAGED_AS = Path("batch_exporter", "shipped")


class BuildPyWithShippedFiles(build_py):
    """build_py, plus a copy of the shipped files in `<build_lib>/batch_exporter/shipped/`."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib, PACKAGED_AS)
        shutil.rmtree(target, ignore_errors=True)  # a reused build folder keeps no file the repository dropped
        for pattern in SHIPPED:
            sources = sorted(PROJECT.glob(pattern))
            if not sources:
                raise FileNotFoundError(f"{PROJECT}: nothing matches {pattern} (an sdist without the files "
                                        f"MANIFEST.in lists?)")
            for source in sources:
                copy = target / source.relative_to(PROJECT)
                self.mkpath(str(copy.parent))
                self.copy_file(str(source), str(copy))


setup(cmdclass={"build_py": BuildPyWithShippedFiles})
