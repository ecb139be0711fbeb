"""Headless-Chromium screenshots of report pages (used by the tests only).

Example::

    from tests.screenshot import CHROMIUM, render_screenshot
    if CHROMIUM.is_file():
        render_screenshot(Path("cmp/report.html"), Path("shot.png"))
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_PACKAGES = "apt-get update && apt-get install -y chromium chromium-driver"


def in_ci() -> bool:
    """True under CI (``CI=true``, as GitHub Actions, GitLab and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_browser(*paths: Path, module: str | None = None) -> object:
    """Skip the calling test when a browser file (or the ``module``) is missing; under CI
    fail instead, so a CI run never passes with its browser tests silently skipped.
    Returns the imported module (None without one)."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    imported = None
    if module is not None and not missing:
        try:
            imported = __import__(module, fromlist=["_"])
        except ImportError:
            missing.append(f"the Python module {module}")
    if missing:
        reason = f"needs {', '.join(missing)} ({BROWSER_PACKAGES})"
        if in_ci():
            pytest.fail(f"CI=true and a browser test cannot run: {reason}")
        pytest.skip(reason)
    return imported


def render_screenshot(
    html_file: Path, png: Path, timeout: float = 90.0, height: int = 2000
) -> bool:
    """Render ``html_file`` with headless Chromium into ``png`` (1280 px wide); True if written.

    Returns False when ``/usr/bin/chromium`` is absent or fails. Networking features are
    switched off, so the screenshot also shows that the page needs nothing from outside.
    """
    if not CHROMIUM.is_file():
        return False
    png = Path(png).absolute()
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    profile = tempfile.mkdtemp(prefix="medtl-chromium-")
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size=1280,{height}",
        Path(html_file).absolute().as_uri(),
    ]
    try:
        subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return png.is_file() and png.stat().st_size > 0
