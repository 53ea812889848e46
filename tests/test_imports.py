"""Every entry module imports on its own, first in a fresh interpreter: an import cycle
between the models and the platforms would break one of them only in some orders."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "tidings.app",
        "tidings.cli",
        "tidings.publishing.worker",
        "tidings.platforms",
        "tidings.platforms.store",
        "tidings.scheduled_posts.models",
        "tidings.channels.service",
    ],
)
def test_module_imports_first(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
