-- sneakernet catalog, schema version 2: where copies live and what happened to them.
--
-- Applied on top of catalog.sql (version 1) by sneakernet.catalog.db; same
-- conventions (statements end with a doubled semicolon, users query `api`).
--
-- The copies the catalog knows of: the folder a version was scanned from
-- (versions.origin = 'scan', root), the store folder it was ingested into
-- (origin = 'ingest', root), and the drives of a shipment (shipment_entries).

-- One row per shipment, keyed by the id written on every drive: the name is
-- what people type, and the same name may be chosen at two sites.
CREATE TABLE shipments (
    shipment_id VARCHAR PRIMARY KEY,
    name        VARCHAR NOT NULL,
    from_site   VARCHAR,
    to_site     VARCHAR,
    drives      INTEGER NOT NULL,
    files       BIGINT NOT NULL,          -- entries of the versions carried
    bytes       BIGINT NOT NULL,          -- bytes on the drives (each content once)
    created_at  TIMESTAMPTZ NOT NULL
);;

CREATE TABLE shipment_versions (
    shipment_id VARCHAR NOT NULL,
    dataset     VARCHAR NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (shipment_id, dataset, version)
);;

CREATE TABLE drives (
    drive_id    VARCHAR PRIMARY KEY,
    shipment_id VARCHAR NOT NULL,
    number      INTEGER NOT NULL,         -- 1-based; drive `number` of shipments.drives
    label       VARCHAR,
    files       BIGINT,                   -- data files physically on the drive
    bytes       BIGINT,
    seal        VARCHAR,                  -- the seal written when the drive was finished
    last_mount  VARCHAR                   -- where it was last seen mounted
);;

-- The whole file list of a shipment: every entry of every version carried,
-- and which drive holds its bytes (drive_path on drive `drive_number`).
-- Identical content is carried once, so several entries may share one
-- drive_path; `carried` marks the entry whose copy is the one on the drive.
CREATE TABLE shipment_entries (
    shipment_id  VARCHAR NOT NULL,
    dataset      VARCHAR NOT NULL,
    version      INTEGER NOT NULL,
    path         VARCHAR NOT NULL,
    hash         VARCHAR,
    size         BIGINT NOT NULL,
    drive_number INTEGER,
    drive_path   VARCHAR,
    carried      BOOLEAN NOT NULL
);;

-- The custody log: every shipment's and drive's history. event_id is a uuid
-- so that events read back from a drive merge without duplicates.
CREATE TABLE events (
    event_id    VARCHAR PRIMARY KEY,
    shipment_id VARCHAR NOT NULL,
    drive_id    VARCHAR,
    happened_at TIMESTAMPTZ NOT NULL,
    event       VARCHAR NOT NULL,         -- planned, packed, verified, shipped, received, ingested, ...
    site        VARCHAR,
    host        VARCHAR,
    "user"      VARCHAR,
    note        VARCHAR,
    details     VARCHAR                   -- JSON: figures of the step (files, bytes, seconds, outcome)
);;

-- Every store folder holding a whole copy of a version, put there by ingest
-- (the first copy is also the version's root; a site that packed a version
-- and ingested it again has its scanned folder as root and the store here).
CREATE TABLE version_copies (
    dataset     VARCHAR NOT NULL,
    version     INTEGER NOT NULL,
    root        VARCHAR NOT NULL,
    shipment_id VARCHAR,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (dataset, version, root)
);;

-- Ingested versions say where they came from.
ALTER TABLE versions ADD COLUMN shipment_id VARCHAR;;
ALTER TABLE versions ADD COLUMN source_site VARCHAR;;

CREATE OR REPLACE VIEW api.versions AS
SELECT dataset, version, label, created_at, origin, root, host, files, bytes,
       shipment_id, source_site
FROM main.versions;;

CREATE VIEW api.shipments AS
SELECT s.shipment_id, s.name, s.from_site, s.to_site, s.drives, s.files, s.bytes,
       s.created_at,
       (SELECT arg_max(e.event, e.happened_at) FROM main.events e
        WHERE e.shipment_id = s.shipment_id) AS state,
       (SELECT max(e.happened_at) FROM main.events e WHERE e.shipment_id = s.shipment_id) AS updated_at
FROM main.shipments s;;

CREATE VIEW api.drives AS
SELECT d.drive_id, s.name AS shipment, d.shipment_id, d.number, s.drives AS of_drives,
       d.label, d.files, d.bytes, d.seal, d.last_mount
FROM main.drives d JOIN main.shipments s USING (shipment_id);;

CREATE VIEW api.events AS
SELECT e.event_id, s.name AS shipment, e.shipment_id, e.drive_id, e.happened_at, e.event, e.site,
       e.host, e."user", e.note, e.details
FROM main.events e LEFT JOIN main.shipments s USING (shipment_id);;
