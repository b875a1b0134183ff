"""printing renders what it is given: it imports nothing of engine and no database library."""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_FORBIDDEN = (
    "engine",
    "sqlalchemy",
    "adbc_driver_manager",
    "adbc_driver_sqlite",
    "adbc_driver_postgresql",
    "psycopg",
    "polars",
)


def _imports(path: Path) -> set[str]:
    """Top-level package of every import in `path`, wherever it is (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_module_of_printing_imports_engine_or_a_database_library():
    modules = sorted((ROOT / "printing").rglob("*.py"))
    assert len(modules) >= 8
    assert {
        str(p.relative_to(ROOT)): sorted(_imports(p) & set(_FORBIDDEN))
        for p in modules
        if _imports(p) & set(_FORBIDDEN)
    } == {}


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\n\ndef f():\n    from engine.errors import ConfigError\n    import sqlalchemy.orm\n")
    assert _imports(probe) == {"os", "engine", "sqlalchemy"}


def test_importing_printing_loads_neither_engine_nor_sqlalchemy():
    code = (
        "import sys, printing, printing.render, printing.fonts, printing.digital; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(_FORBIDDEN)!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "[]"
