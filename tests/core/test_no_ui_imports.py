"""The core and the Triton layer never load a UI library: the wizard is one client among others."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import cvtriton_core
import cvtriton_triton


def _modules(package) -> list[str]:
    return [package.__name__] + [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                                 if ".backends." not in m.name]


def test_importing_every_core_module_loads_no_textual():
    names = _modules(cvtriton_core) + _modules(cvtriton_triton)
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(names) > 5
    assert out.stdout.strip() == ""


def test_the_product_never_loads_tritonclient_grpc():
    """tritonclient[grpc] is a test-only dependency (its ModelConfig schema parses config.pbtxt in the tests)."""
    import cvtriton_tui

    names = [n for n in _modules(cvtriton_core) + _modules(cvtriton_triton) + _modules(cvtriton_tui)
             if not n.endswith("__main__")]          # importing __main__ would open the wizard
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith(('grpc', 'tritonclient.grpc')))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert len(names) > 20 and out.stdout.strip() == ""


def test_no_installed_bare_triton_or_core_package():
    import importlib.util

    for bare in ("triton", "core"):
        spec = importlib.util.find_spec(bare)
        assert spec is None or "site-packages" in str(spec.origin or ""), f"{bare} resolves to {spec.origin}"
