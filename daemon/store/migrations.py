"""The catalog's schema as numbered steps: a new catalog runs them all, an older one the ones it lacks.

Part of the catalog layer (catalog.py opens the file and runs the steps, one transaction each).
A step is never edited once released: a catalog written by that release has already run it. A change
of schema is a new step at the end. Each applied step is recorded in the `migrations` table with
its time, and meta.schema_version names the last one; a catalog whose version is above the last
step here comes from a newer imgd and is refused.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass

APPLICATION_ID = 0x696D6764  # "imgd", stamped in the SQLite header so foreign files are recognised

Step = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Step


MIGRATIONS: list[Migration] = []


def migration(version: int, name: str) -> Callable[[Step], Step]:
    """Register a step; versions run 1, 2, 3, ... with no gaps."""

    def register(apply: Step) -> Step:
        assert version == len(MIGRATIONS) + 1, f"migration {version} registered out of order"
        MIGRATIONS.append(Migration(version, name, apply))
        return apply

    return register


def _run(conn: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits first, and each step must stay inside its own transaction.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


@migration(1, "contents, files and meta")
def _initial(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    _run(
        conn,
        """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS contents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            hash TEXT NOT NULL UNIQUE,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            vector BLOB NOT NULL
        );
        CREATE TABLE IF NOT EXISTS files (
            path BLOB PRIMARY KEY,
            content_id INTEGER REFERENCES contents(id),
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            missing_since REAL
        );
        CREATE INDEX IF NOT EXISTS files_content ON files(content_id);
        CREATE INDEX IF NOT EXISTS files_status ON files(status);
        """,
    )
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', '0')")
    # Tells this catalog's index files from another's: content ids restart in a new catalog.
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('catalog_id', ?)", (uuid.uuid4().hex,))


@migration(2, "media: per-content metadata (taken, camera, lens, GPS, type, upright size)")
def _media(conn: sqlite3.Connection) -> None:
    # A narrow table of its own, not columns on contents: filters scan it, and a contents row is
    # mostly its vector (1 KiB at 512 dims), so scanning contents would read every vector from disk.
    _run(
        conn,
        """
        CREATE TABLE media (
            content_id INTEGER PRIMARY KEY REFERENCES contents(id),
            version INTEGER NOT NULL DEFAULT 0,
            format TEXT,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            taken TEXT,
            taken_offset TEXT,
            make TEXT,
            model TEXT,
            lens TEXT,
            latitude REAL,
            longitude REAL
        );
        CREATE INDEX media_version ON media(version);
        INSERT INTO media(content_id, width, height) SELECT id, width, height FROM contents;
        """,
    )


@migration(3, "next_vectors: a second vector set, written beside the live one while the model changes")
def _next_vectors(conn: sqlite3.Connection) -> None:
    # Its own table, not a column on contents: the switch to the new model copies it over in one
    # transaction, and until then every reader keeps the old model's vectors. Which model the rows
    # belong to is recorded in meta (next_model, next_dim, next_fingerprint).
    conn.execute(
        "CREATE TABLE next_vectors (content_id INTEGER PRIMARY KEY REFERENCES contents(id), vector BLOB NOT NULL)"
    )


@migration(4, "vectors: their own ids, per (content, time); the index is keyed by vector id")
def _vectors(conn: sqlite3.Connection) -> None:
    # Several vectors per content are coming (a video's frames), so a vector gets an id of its own
    # and contents lose their vector column. Each existing vector keeps its content's id as its own
    # vector id, so every index file saved before the upgrade still names the right vectors and is
    # neither rebuilt nor re-embedded. New vector ids start 1000 above every content id ever given:
    # from then on a vector's id differs from its content's, so code that takes one kind of id for the
    # other cannot pass its tests by coincidence (the index's filter bitmap grows by 1000 bits).
    # `at`: seconds into the content (0 for a photo).
    _run(
        conn,
        """
        CREATE TABLE vectors (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            content_id INTEGER NOT NULL REFERENCES contents(id),
            at REAL NOT NULL DEFAULT 0,
            vector BLOB NOT NULL
        );
        INSERT INTO vectors(id, content_id, at, vector) SELECT id, id, 0, vector FROM contents;
        CREATE UNIQUE INDEX vectors_content ON vectors(content_id, at);
        DELETE FROM sqlite_sequence WHERE name = 'vectors';
        INSERT INTO sqlite_sequence(name, seq)
            VALUES ('vectors', coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'contents'), 0) + 1000);
        ALTER TABLE contents DROP COLUMN vector;
        CREATE TABLE next_vectors_by_vector (
            vector_id INTEGER PRIMARY KEY REFERENCES vectors(id),
            vector BLOB NOT NULL
        );
        INSERT INTO next_vectors_by_vector(vector_id, vector) SELECT content_id, vector FROM next_vectors;
        DROP TABLE next_vectors;
        ALTER TABLE next_vectors_by_vector RENAME TO next_vectors
        """,
    )


@migration(5, "alerts: saved searches that act on new pictures, and a short log of what they did")
def _alerts(conn: sqlite3.Connection) -> None:
    # In the catalog, not a file of their own: the daemon and the CLI then agree on them. `query`
    # holds the whole search request as JSON, so filters added later come along without a column each.
    _run(conn, ALERT_TABLES)


ALERT_TABLES = """
    CREATE TABLE IF NOT EXISTS alerts (
        name TEXT PRIMARY KEY,
        query TEXT NOT NULL,
        action TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE IF NOT EXISTS alert_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        score REAL NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT
    )
"""


@migration(6, "siblings: a RAW beside its JPEG, a live photo's video, listed through the photo")
def _siblings(conn: sqlite3.Connection) -> None:
    # A companion has no files row (never embedded, listed, counted or a duplicate): this table names
    # the primary whose path lists it, looked up either way by one index.
    _run(
        conn,
        """
        CREATE TABLE siblings (path BLOB PRIMARY KEY, primary_path BLOB NOT NULL);
        CREATE INDEX siblings_primary ON siblings(primary_path)
        """,
    )


@migration(7, "places: each content's city, region and country columns (named later, by the places pass)")
def _places(conn: sqlite3.Connection) -> None:
    # Only the columns here: naming the places of existing photos inside the upgrade took 150 s at
    # 1M contents, with the catalog locked and the city table loaded in the write transaction. The
    # engine's places pass (ingest/backfill.py) names them afterwards, in small batches between new
    # files; a row with a position and a NULL city waits for it ('' is "no place").
    # (latitude, longitude) is indexed for --near (a latitude band, then longitude from the index),
    # country for --country.
    for column in ("city", "region", "country"):
        conn.execute(f"ALTER TABLE media ADD COLUMN {column} TEXT")
    conn.execute("CREATE INDEX media_position ON media(latitude, longitude)")
    conn.execute("CREATE INDEX media_country ON media(country)")


@migration(8, "media.duration: a video's length in seconds (NULL for a photo)")
def _duration(conn: sqlite3.Connection) -> None:
    # A column on media, not on contents: the duration filters read it beside the type, as the other filters do.
    conn.execute("ALTER TABLE media ADD COLUMN duration REAL")


WORDS_SCHEMA = 9  # the words step's number (tests and the older reader name it)


@migration(WORDS_SCHEMA, "words: the words read in each picture, in an FTS5 trigram table, with their boxes")
def _words(conn: sqlite3.Connection) -> None:
    # `words`: one row per content whose pixels were read, even when none were found (so the pass
    # never reads it again); `lines` is JSON [[text, confidence, x0, y0, x1, y1], ...], boxes as
    # fractions of the upright picture. `words_fts`: the folded text of the lines that passed the
    # minimum confidence, rowid = content id, trigram-tokenized for substrings ("hardw").
    _run(
        conn,
        """
        CREATE TABLE words (
            content_id INTEGER PRIMARY KEY REFERENCES contents(id),
            read_at REAL NOT NULL,
            lines TEXT NOT NULL
        );
        CREATE VIRTUAL TABLE words_fts USING fts5(text, tokenize = 'trigram')
        """,
    )


UNPLACED = "latitude IS NOT NULL AND city IS NULL"  # a position whose place is not named yet


@migration(10, "media_unplaced: the photos whose place the places pass has not named yet")
def _unplaced(conn: sqlite3.Connection) -> None:
    # A partial index: the pass and `imgd status` find the backlog without scanning every row, and
    # it holds nothing once every place is named.
    conn.execute(f"CREATE INDEX media_unplaced ON media(content_id) WHERE {UNPLACED}")


@migration(11, "dupe_pass, dupe_pairs: the duplicates pass's plan, progress and pairs, so a restart resumes it")
def _dupe_pass(conn: sqlite3.Connection) -> None:
    # The daemon's first duplicates pass took minutes on both cores after every start (1M: 100-300 s);
    # its pairs (between vector ids) and the groups of lists done are kept here as it goes, so a restart
    # continues where it stopped, and once done only the vectors added since are searched again.
    # dupe_pass holds named values (the pass's key, plan, next group, high-water vector id, finished).
    _run(
        conn,
        """
        CREATE TABLE dupe_pass (name TEXT PRIMARY KEY, value BLOB);
        CREATE TABLE dupe_pairs (
            a INTEGER NOT NULL, b INTEGER NOT NULL, score REAL NOT NULL, PRIMARY KEY (a, b)
        ) WITHOUT ROWID
        """,
    )


# What a reader that may not migrate (a read-only open of an older catalog) sees in place of the
# tables of schema 4: views in its own temp schema, over the older tables, under the new names.
READ_AS_LATEST = {
    1: ["CREATE TEMP VIEW vectors AS SELECT id, id AS content_id, 0.0 AS at, vector FROM main.contents"],
    3: ["CREATE TEMP VIEW next_vectors AS SELECT content_id AS vector_id, vector FROM main.next_vectors"],
}
# The columns media gained after schema 2, by the step that added them: an older reader sees them NULL.
MEDIA_ADDED = {7: ("city", "region", "country"), 8: ("duration",)}
# A catalog from before words were read: empty tables of the same names, so every query runs unchanged.
READ_WITHOUT_WORDS = [
    "CREATE TEMP TABLE words (content_id INTEGER PRIMARY KEY, read_at REAL NOT NULL, lines TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE temp.words_fts USING fts5(text, tokenize = 'trigram')",
]


def read_as_latest(conn: sqlite3.Connection, version: int) -> None:
    """Make a read-only connection to a catalog of an older schema read like the latest one."""
    if version < WORDS_SCHEMA:
        for statement in READ_WITHOUT_WORDS:
            conn.execute(statement)
    if version < 6:  # no pairs were known before schema 6
        conn.execute("CREATE TEMP TABLE siblings (path BLOB PRIMARY KEY, primary_path BLOB NOT NULL)")
    if version < 4:
        for since, statements in READ_AS_LATEST.items():
            if version >= since:
                for statement in statements:
                    conn.execute(statement)
    if version < 5:  # no saved searches yet: empty ones, in the connection's own temp schema
        _run(conn, ALERT_TABLES.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
    missing = [f"NULL AS {column}" for step, columns in MEDIA_ADDED.items() if version < step for column in columns]
    if version >= 2 and missing:  # no place named, no video's length yet
        conn.execute(f"CREATE TEMP VIEW media AS SELECT *, {', '.join(missing)} FROM main.media")


LATEST = MIGRATIONS[-1].version


def current_version(conn: sqlite3.Connection) -> int:
    """The catalog's schema version; 0 for a new, empty file."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:  # no meta table: nothing was ever created here
        return 0
    return int(row[0]) if row else 0


def pending(version: int) -> list[Migration]:
    return [step for step in MIGRATIONS if step.version > version]


def apply(conn: sqlite3.Connection, step: Migration, now: float) -> None:
    """Run one step and record it; the caller holds the transaction, so both happen or neither."""
    step.apply(conn)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL)"
    )
    # Steps run before this table existed (schema 1 catalogs) are recorded without a time.
    for earlier in MIGRATIONS[: step.version - 1]:
        conn.execute(
            "INSERT OR IGNORE INTO migrations(version, name, applied_at) VALUES (?, ?, NULL)",
            (earlier.version, earlier.name),
        )
    conn.execute(
        "INSERT OR REPLACE INTO migrations(version, name, applied_at) VALUES (?, ?, ?)", (step.version, step.name, now)
    )
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(step.version),))
