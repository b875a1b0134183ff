"""What gets installed: one schema inside the package, read as package data."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_top_level_schema_is_a_link_to_the_one_the_package_ships():
    # a second copy would drift from the one `listwise init` runs; a link cannot
    top = ROOT / "schema.sql"
    assert top.is_symlink(), "schema.sql must stay a symlink to engine/schema.sql (edit either name, one file)"
    assert os.readlink(top) == "engine/schema.sql"          # relative: valid in every clone
    assert (ROOT / "engine" / "schema.sql").is_file() and not (ROOT / "engine" / "schema.sql").is_symlink()


def test_schema_statements_are_those_of_the_packaged_file():
    from engine.db import schema_statements
    text = (ROOT / "engine" / "schema.sql").read_text(encoding="utf-8")
    created = [m.group(1) for s in schema_statements() if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s))]
    assert created == re.findall(r"^CREATE TABLE IF NOT EXISTS (\w+)", text, flags=re.M)
    assert "baskets" in created and len(created) > 10
