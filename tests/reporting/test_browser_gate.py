"""Browser tests skip where Chromium is missing, but fail under CI=true; .ci/run installs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.screenshot import require_browser

CI_RUN = Path(__file__).resolve().parents[2] / ".ci" / "run"


def test_missing_browser_skips_outside_ci(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium-driver"):
        require_browser(tmp_path / "no-chromium")


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_missing_browser_fails_under_ci(tmp_path, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true and a browser test cannot run"):
        require_browser(tmp_path / "no-chromium")


def test_missing_module_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    present = tmp_path / "chromium"
    present.write_text("")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_xyz"):
        require_browser(present, module="no_such_module_xyz")
    assert require_browser(present, module="json").dumps([1]) == "[1]"


def test_ci_run_installs_the_debian_packages_and_sets_ci():
    text = CI_RUN.read_text()
    assert "export CI=true" in text
    assert "apt-get update" in text and "apt-get install -y chromium chromium-driver" in text
    assert text.rstrip().endswith("make test")
