"""Suite-wide: exporters started by tests keep their log read positions in a temporary folder, never in
the machine's default state folder (/var/lib/batch-exporter as root)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _log_state_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    patch.setenv("BATCH_EXPORTER_STATE_DIR", str(tmp_path_factory.mktemp("log-state")))
    yield
    patch.undo()
