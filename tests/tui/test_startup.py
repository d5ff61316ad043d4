"""First paint stays fast: the wizard's import path and its first screen load no heavy library (SDKs,
onnx, onnxruntime, tritonclient, docker, numpy, PIL); those load in workers when a step needs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("azure", "msrest", "onnx", "onnxruntime", "tritonclient", "docker", "numpy", "PIL", "pytriton", "requests")

PROBE = """
import asyncio, sys
from pathlib import Path
from cvtriton_tui.app import WizardApp

async def main():
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=(120, 40)) as pilot:
        while not app.main.has_pane("local-test"):    # first paint done, the other panes mounted after it
            await pilot.pause(0.05)
        await pilot.pause(0.3)              # startup checks run
        assert app.main.pane("local-test").is_mounted
asyncio.run(main())
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:]))
print(",".join(heavy))
"""


def test_the_wizard_starts_without_heavy_imports(local_env: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, *HEAVY], capture_output=True, text=True, timeout=60,
                         cwd=local_env.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""


def test_the_probe_would_notice_a_heavy_import(local_env: Path) -> None:
    out = subprocess.run([sys.executable, "-c", "import PIL.Image\n" + PROBE, *HEAVY], capture_output=True,
                         text=True, timeout=60, cwd=local_env.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "PIL"
