"""The worker's faust app: what it does to the machine it starts on."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.service.app import build_app
from workers.testing import fresh_config


def test_faust_keeps_its_folder_out_of_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker started in a project folder must not leave ``<app>-data`` there."""
    monkeypatch.chdir(tmp_path)
    app = build_app(fresh_config())
    datadir = Path(app.conf.datadir).resolve()
    assert not datadir.is_relative_to(tmp_path.resolve())
    assert list(tmp_path.iterdir()) == []
