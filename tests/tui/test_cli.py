"""The headless command's last guard: a work folder that cannot be used is bad input (exit 2, one line
naming the path and the fix), not an "unexpected error, please report this" (exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvtriton_tui.cli import main


@pytest.mark.parametrize("extra", [[], ["--model", "MODEL", "--image", "IMAGE"]])
def test_unusable_workdir_is_bad_input(in_tmp: Path, capsys: pytest.CaptureFixture[str], extra: list[str]) -> None:
    Path("afile").write_text("a file where the work folder should be")
    Path("MODEL").write_bytes(b"not used: the work folder fails first")
    Path("IMAGE").write_bytes(b"")
    code = main(["--workdir", "afile", "local", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "afile" in err and "writable --workdir" in err and "report this" not in err
