"""Where things live inside the work folder (``--workdir``, default ``./.cvtriton``), named once for the CLI,
the wizard and the steps.

* ``<workdir>/``: the Azure target's run (``run-state.json``, ``export/``, ``downloads/``, ...).
* ``<workdir>/local/``: the Local target's run — the headless ``local`` command and the wizard's Local
  target share it, so a run started in one resumes in the other.
* ``<workdir>/sample/``: the generated sample export and its test images.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_WORKDIR = Path(".cvtriton")
LOCAL_DIRNAME = "local"
SAMPLE_DIRNAME = "sample"


def local_run_dir(workdir: Path) -> Path:
    return Path(workdir) / LOCAL_DIRNAME


def sample_dir(workdir: Path) -> Path:
    return Path(workdir) / SAMPLE_DIRNAME
