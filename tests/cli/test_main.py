"""The console entry point: output and exit codes intact, the working directory importable."""

from __future__ import annotations

import json

import pytest


def test_the_command_exits_at_once_with_its_output_and_code_intact(tmp_path):
    """The console entry point skips the interpreter's teardown: what was printed must still
    arrive whole, through a pipe, with the command's own exit code."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NEURONSCOPE_DATA_DIR": str(tmp_path)}
    env.pop("NEURONSCOPE_DATABASE_URL", None)
    command = [sys.executable, "-m", "server.cli.main", "layers"]
    listed = subprocess.run(
        [*command, "torchvision:vgg16", "--json"], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) > 30  # the whole JSON document, not a cut-off one
    cut_short = subprocess.run(  # 140 KB into a pipe whose reader leaves after 10 bytes
        f"{' '.join(command)} torchvision:densenet121 --json | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
    )
    assert len(cut_short.stdout) == 10 and cut_short.stderr == ""  # no BrokenPipeError
    refused = subprocess.run(
        [*command, "torchvision:nonsense"], capture_output=True, text=True, env=env
    )
    assert refused.returncode == 1
    assert (
        refused.stderr.startswith("neuronscope: error:") and "unknown torchvision" in refused.stderr
    )


def test_the_console_script_finds_a_model_module_in_the_working_directory(tmp_path):
    """`neuronscope analyze --model mynet:build` run beside mynet.py, as `python -m` would."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "neuronscope"
    if not script.exists():
        pytest.skip("the package is not installed with its console script")
    (tmp_path / "mynet.py").write_text(
        "from torch import nn\n\n\ndef build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3), nn.ReLU())\n"
    )
    env = {**os.environ, "NEURONSCOPE_DATA_DIR": str(tmp_path / "data")}
    env.pop("PYTHONPATH", None)
    listed = subprocess.run(
        [str(script), "layers", "mynet:build", "--input-size", "16", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    assert [layer["name"] for layer in json.loads(listed.stdout)] == ["0", "1", "2", "3"]
