"""The ``smoke`` marker: a quick subset of the suite (``pytest -m smoke``, about a minute), for a
first check of an install. It covers the op against its reference, the losses, metrics, decoding,
config and package layout, and one tiny train -> evaluate -> predict run; the whole suite is the
real check."""

from __future__ import annotations

from pathlib import Path

import pytest

SMOKE_FILES = {"test_contrastive_mil.py", "test_losses.py", "test_metrics.py", "test_decoding.py",
               "test_config.py", "test_layout.py", "test_info.py"}
SMOKE_TESTS = {"test_train.py::test_train_evaluate_predict_end_to_end"}


def pytest_configure(config):
    config.addinivalue_line("markers", "smoke: the quick subset (pytest -m smoke)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        file_name = Path(str(item.fspath)).name
        if file_name in SMOKE_FILES or f"{file_name}::{item.originalname}" in SMOKE_TESTS:
            item.add_marker(pytest.mark.smoke)
