"""The web process stays torch-free."""

from __future__ import annotations

LAYER = "/runs/1/layers/4"


def test_the_web_process_never_imports_torch():
    """The dashboard stays small and quick to start; compute lives in workers (README, Layout)."""
    import subprocess
    import sys

    code = (
        "import sys, tempfile, server.web.app as web; from server.config import load_settings; "
        "web.create_app(load_settings({'NEURONSCOPE_DATA_DIR': tempfile.mkdtemp()})); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
