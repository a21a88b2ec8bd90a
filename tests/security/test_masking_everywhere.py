"""Issue 11, item 6: a card number written with any repeated separator is masked in each output that
goes through masking.py: the exporter's log, path labels, status-code labels and rerun-check text."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from batch_exporter.masking import MaskingFilter, mask_digits, mask_path
from batch_exporter.rerun.phrases import masked_code, status_code

# the separators of the review, each around the test card 4111 1111 1111 1111
WRITTEN = ["4,111,111,111,111,111", "4111:1111:1111:1111", "4111|1111|1111|1111", "4111=1111=1111=1111",
           "4111*1111*1111*1111", "4111#1111#1111#1111", "4111\\1111\\1111\\1111", "4111%2C1111%2C1111%2C1111"]


def _digits(text: str) -> str:
    return "".join(ch for ch in text.replace("%2C", "") if ch.isdigit())


@pytest.mark.parametrize("card", WRITTEN)
def test_the_exporters_log_masks_message_arguments_and_tracebacks(card: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("batch_exporter.test_masking_everywhere")
    caplog.handler.addFilter(MaskingFilter())
    try:
        raise ValueError(f"bad row {card}")
    except ValueError:
        logger.exception("check failed on %s", card)
    text = caplog.text
    masked = mask_digits(card)
    assert _digits(masked) == "1111"
    assert f"check failed on {masked}" in text and f"bad row {masked}" in text
    assert card not in text


@pytest.mark.parametrize("card", WRITTEN)
def test_path_labels_mask_card_numbers_and_keep_other_numbers(card: str) -> None:
    label = mask_path(f"/var/log/batch/{card}/auth-20261127-000001.log")
    assert label.endswith("/auth-20261127-000001.log")
    assert _digits(label) == "1111" + "20261127000001"


@pytest.mark.parametrize("card", WRITTEN)
def test_rerun_check_status_codes_are_masked(card: str) -> None:
    assert _digits(masked_code(card) or "") == "1111"
    assert _digits(status_code(card)) == "1111"


def test_the_exporters_own_log_masks_a_card_number_in_an_error(tmp_path: Path) -> None:
    # a driver's error names the file, and the file's folder is named like a card number
    folder = tmp_path / "4111111111111111"
    folder.mkdir()
    config = tmp_path / "c.yml"
    config.write_text(f"databases:\n  main: {{sqlite: {folder / 'runs.db'}}}\nbatches:\n  b:\n    database: main\n"
                      "    checks:\n      c: {query: 'SELECT 1'}\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "once", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert "cannot open SQLite file" in result.stderr
    assert "4111111111111111" not in result.stderr and "************1111" in result.stderr


def test_a_card_number_in_a_log_file_name_is_masked_in_its_path_label(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "auth-4111111111111111-20261127.log").write_text("one line\n", encoding="utf-8")
    config = tmp_path / "c.yml"
    config.write_text(f"global: {{state_dir: {tmp_path / 'state'}}}\nbatches:\n  b:\n    logs:\n      app:\n"
                      f"        path: '{logs}/*.log'\n        size_limit: 1MiB\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "once", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "4111111111111111" not in result.stdout
    assert "auth-************1111-20261127.log" in result.stdout
