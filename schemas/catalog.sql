-- sneakernet catalog, schema version 1.
--
-- This file is the one source of truth for the catalog's tables; the code
-- loads it (sneakernet.catalog.db) and never spells DDL of its own. Each
-- statement ends with a doubled semicolon so the loader needs no SQL parser.
--
-- Tables are internal. Users and scripts query the views in schema `api`
-- (documented in README.md, "Querying the catalog"); `sneakernet query` runs
-- read-only with `api` first on the search path.

CREATE TABLE meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);;

CREATE TABLE datasets (
    name       VARCHAR PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL
);;

-- One row per immutable version. files/bytes and the duplicate
-- figures are filled at commit so that listing and stats never group entries by hash.
CREATE TABLE versions (
    dataset    VARCHAR NOT NULL,
    version    INTEGER NOT NULL,
    label      VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    origin     VARCHAR NOT NULL,          -- 'scan' or 'ingest'
    root       VARCHAR,                   -- folder scanned, or store folder ingested into
    host       VARCHAR,
    files      BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    duplicate_files BIGINT NOT NULL,      -- files whose content appears earlier in the version
    duplicate_bytes BIGINT NOT NULL,
    PRIMARY KEY (dataset, version)
);;

-- The file list of every version. A version owns its rows; rows are never
-- updated, only inserted with their version in one transaction.
-- path is the name as text; for names that are not valid UTF-8, path holds a
-- readable form (invalid bytes as \xNN) and raw_path the exact bytes.
CREATE TABLE entries (
    dataset     VARCHAR NOT NULL,
    version     INTEGER NOT NULL,
    path        VARCHAR NOT NULL,
    raw_path    BLOB,
    kind        VARCHAR NOT NULL,         -- 'file' or 'symlink'
    size        BIGINT NOT NULL,
    mtime_ns    BIGINT NOT NULL,
    mode        INTEGER NOT NULL,
    inode       UBIGINT,
    device      UBIGINT,
    hash        VARCHAR,                  -- XXH3-128, 32 lowercase hex digits; NULL if not read
    link_target VARCHAR,
    is_video    BOOLEAN NOT NULL,         -- the name has a video extension (probe.VIDEO_EXTENSIONS)
    status      VARCHAR NOT NULL,         -- 'ok', 'unreadable' or 'changing'
    error       VARCHAR
);;

-- Video metadata keyed by content: identical bytes are probed once.
CREATE TABLE media (
    hash          VARCHAR PRIMARY KEY,
    probe_version INTEGER NOT NULL,
    ok            BOOLEAN NOT NULL,
    error         VARCHAR,
    container     VARCHAR,
    codec         VARCHAR,
    profile       VARCHAR,
    width         INTEGER,
    height        INTEGER,
    pix_fmt       VARCHAR,
    bit_depth     INTEGER,
    fps           DOUBLE,
    vfr           BOOLEAN,
    duration      DOUBLE,
    frames        BIGINT,
    bit_rate      BIGINT,
    rotation      INTEGER,
    creation_time VARCHAR,
    audio         STRUCT(stream INTEGER, codec VARCHAR, channels INTEGER, sample_rate INTEGER)[]
);;

-- What makes a rescan cheap: a file whose (device, inode, size, mtime_ns)
-- match a row here is not read again. hasher names the hash function, so a
-- change of function invalidates the cache instead of lying.
CREATE TABLE hash_cache (
    device   UBIGINT NOT NULL,
    inode    UBIGINT NOT NULL,
    size     BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    hasher   INTEGER NOT NULL,
    hash     VARCHAR NOT NULL
);;

CREATE SCHEMA api;;

CREATE VIEW api.datasets AS
SELECT d.name AS dataset,
       d.created_at,
       count(v.version) AS versions,
       max(v.version) AS latest
FROM main.datasets d LEFT JOIN main.versions v ON v.dataset = d.name
GROUP BY ALL;;

CREATE VIEW api.versions AS
SELECT dataset, version, label, created_at, origin, root, host, files, bytes
FROM main.versions;;

CREATE VIEW api.media AS
SELECT hash, ok, error, container, codec, profile, width, height, pix_fmt, bit_depth,
       fps, vfr, duration, frames, bit_rate, rotation, creation_time, audio,
       len(audio) AS audio_streams
FROM main.media;;

CREATE VIEW api.files AS
SELECT e.dataset, e.version, e.path, e.raw_path, e.kind, e.size,
       make_timestamp_ms(e.mtime_ns // 1000000) AS mtime, e.mtime_ns, e.hash,
       e.link_target, e.status, e.error, e.is_video,
       coalesce(NOT m.ok, false) AS broken,
       m.error AS media_error, m.container, m.codec, m.profile, m.width, m.height,
       m.pix_fmt, m.bit_depth, m.fps, m.vfr, m.duration, m.frames, m.bit_rate,
       m.rotation, m.creation_time, len(m.audio) AS audio_streams
FROM main.entries e LEFT JOIN main.media m ON m.hash = e.hash AND e.is_video;;
