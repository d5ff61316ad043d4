"""The installed import names are the unique ones the README promises; no bare `triton` or `core`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_package_dirs_are_the_readme_layout_with_unique_names():
    """setup.py's mapping is the README's layout table (folder -> import name), and no name is a bare one."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    mapping = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PACKAGE_DIRS")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = {name: folder.rstrip("/") for folder, name in
                  re.findall(r"^\| `([a-z_/]+)` \| `(cvtriton_[a-z]+)` \|", readme, flags=re.MULTILINE)}
    assert mapping == documented and len(mapping) == 4
    for name, folder in mapping.items():
        assert name.startswith("cvtriton_") and (ROOT / folder / "__init__.py").is_file()


def test_installed_modules_resolve_to_the_mapped_folders():
    import cvtriton_core
    import cvtriton_standins
    import cvtriton_triton
    import cvtriton_tui

    assert Path(cvtriton_core.__file__).parent.name == "core"
    assert Path(cvtriton_triton.__file__).parent.name == "triton"
    assert Path(cvtriton_standins.__file__).parent.name == "standins"
    assert Path(cvtriton_tui.__file__).parent.name == "cvtriton_tui"
