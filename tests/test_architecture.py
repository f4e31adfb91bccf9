"""The gateway process never imports torch (or the rest of the worker's stack)."""

from __future__ import annotations

import subprocess
import sys


def test_api_process_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "import app.cli\n"
        "from app.main import create_app\n"
        "TestClient(create_app()).get('/openapi.json').raise_for_status()\n"
        "heavy = ('torch', 'diffusers', 'transformers', 'av', 'worker')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
