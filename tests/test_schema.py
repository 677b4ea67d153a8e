"""The catalog schema's migration path: an older catalog is upgraded in place, data kept."""

from __future__ import annotations

from pathlib import Path

import duckdb

from sneakernet.catalog.db import SCHEMA_FILES, SCHEMA_VERSION, Catalog, schema_statements
from sneakernet.catalog.versions import list_versions


def _make_v1_catalog(path: Path) -> None:
    con = duckdb.connect(str(path))
    for statement in schema_statements(SCHEMA_FILES[0]):
        con.execute(statement)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("INSERT INTO datasets VALUES ('old', now())")
    con.execute(
        "INSERT INTO versions VALUES ('old', 1, 'first', now(), 'scan', '/data', 'h', 1, 5, 0, 0)"
    )
    con.close()


def test_v1_catalog_is_upgraded_and_keeps_its_versions(tmp_path: Path):
    path = tmp_path / "v1.duckdb"
    _make_v1_catalog(path)
    catalog = Catalog(path)
    [version] = list_versions(catalog, "old")
    assert (version.version, version.label, version.files, version.bytes) == (1, "first", 1, 5)
    with catalog.read() as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        row = con.execute("SELECT shipment_id, source_site FROM api.versions").fetchone()
        assert row == (None, None)
        assert con.execute("SELECT count(*) FROM api.shipments").fetchone() == (0,)


def test_every_schema_file_is_listed_once():
    assert len(SCHEMA_FILES) == SCHEMA_VERSION
    assert len(set(SCHEMA_FILES)) == len(SCHEMA_FILES)
