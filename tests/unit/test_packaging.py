"""The wheel ships every package folder (editable installs hide a missing one)."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for package, folder in tool["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found <= listed, f"missing from [tool.setuptools] packages: {sorted(found - listed)}"


def test_importing_the_sdk_pulls_in_no_heavy_dependency():
    import subprocess
    import sys

    code = "import promptserve, sys; print([m for m in ('torch','ray','onnxruntime','fastapi','open_clip') if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def _imports(path: Path) -> set[str]:
    """Every promptserve module a file imports, at any depth (lazy imports count too)."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m.startswith("promptserve")}


def test_layers_import_only_downwards():
    """The house's rules, read from the source: the common model layer (models/*.py) imports no
    family; serving imports no export-time module (exporters/, models/<family>/export/); the
    common serving layer imports no family."""
    families = [p.name for p in (ROOT / "models").iterdir() if (p / "family.py").exists()]
    assert "clip" in families
    family_mods = tuple(f"promptserve.models.{f}" for f in families)
    export_mods = ("promptserve.exporters", *(f"{m}.export" for m in family_mods))
    problems = []
    for path in (ROOT / "models").glob("*.py"):
        problems += [(path, m) for m in _imports(path) if m.startswith(family_mods)]
    for path in (ROOT / "serving").rglob("*.py"):
        problems += [(path, m) for m in _imports(path) if m.startswith(family_mods + export_mods)]
    for family in families:
        for path in (ROOT / "models" / family / "serve").rglob("*.py"):
            problems += [(path, m) for m in _imports(path) if m.startswith(export_mods)]
    # of the SDK, servers use only its public, dependency-light modules
    shared = (
        "promptserve.types",
        "promptserve.images",
        "promptserve.optional",
        "promptserve._version",
    )
    sdk = {f"promptserve.{p.stem}" for p in (ROOT / "sdk").glob("*.py")} | {"promptserve"}
    serving_side = [*(ROOT / "serving").rglob("*.py"), *(ROOT / "models").rglob("serve/*.py")]
    for path in serving_side:
        problems += [(path, m) for m in _imports(path) if m in sdk and not m.startswith(shared)]
    assert not problems, "\n".join(f"{p.relative_to(ROOT)} imports {m}" for p, m in problems)
