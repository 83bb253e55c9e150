"""The results store: every benchmark row in SQLite, one transaction per finished model."""

import csv
import io
import json
import sqlite3

from .config import home, results_db_path
from .errors import ZooError, printable
from .files import file_target, write_text

COLUMNS = [
    ("run_id", "TEXT"), ("created_at", "TEXT"), ("model", "TEXT"), ("dataset", "TEXT"), ("split", "TEXT"),
    ("n", "INTEGER"), ("limit_n", "INTEGER"), ("seed", "INTEGER"), ("status", "TEXT"), ("error", "TEXT"),
    ("protocol", "TEXT"), ("top1", "REAL"), ("top5", "REAL"), ("throughput", "REAL"), ("latency_p50_ms", "REAL"),
    ("latency_p95_ms", "REAL"), ("peak_memory_mb", "REAL"), ("params", "INTEGER"), ("load_time_s", "REAL"),
    ("device", "TEXT"), ("dtype", "TEXT"), ("attention", "TEXT"), ("batch_size", "INTEGER"), ("versions", "TEXT"),
    ("per_class", "TEXT"), ("confusion", "TEXT"),
]
NAMES = [c for c, _ in COLUMNS]
JSON_COLUMNS = ("versions", "per_class", "confusion")
SUMMARY = ["model", "protocol", "top1", "top5", "throughput", "latency_p50_ms", "latency_p95_ms", "peak_memory_mb",
           "params", "load_time_s", "status"]


# Each migration brings a database from the version before it (PRAGMA user_version) to its own.
MIGRATIONS = [
    f"CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY, {', '.join(f'{c} {t}' for c, t in COLUMNS[:26])})",
    "CREATE INDEX IF NOT EXISTS results_model_dataset ON results (model, dataset, split)",
]


def migrate(con):
    """Bring the schema up to date, one transaction per step; a newer database than this zoo is refused."""
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise ZooError(f"The results database has schema version {version}, newer than this zoo "
                       f"({len(MIGRATIONS)}): upgrade zoo, or pass --db to use another file.")
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        with con:
            con.execute(step)
            con.execute(f"PRAGMA user_version = {number}")


def connect(path=None):
    """An open, migrated results database; a corrupt or unusable file is a ZooError naming it."""
    path = file_target(results_db_path(path))  # SQLite would write its journal beside a device
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path)
        migrate(con)
    except (sqlite3.Error, OSError) as e:
        raise ZooError(f"The results database {path} cannot be used ({e}): move it aside, or pass --db "
                       "another file.") from None
    return con


def check_writable(path=None):
    """Fail before any benchmark work if rows could not be saved: open, migrate, and take a write lock."""
    con = connect(path)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.rollback()
    except sqlite3.Error as e:
        raise ZooError(f"The results database {results_db_path(path)} is not writable ({e}): pass --db "
                       "another file.") from None
    finally:
        con.close()


def save_row(row, path=None):
    """Insert one row in its own transaction: an interrupted run keeps every finished model.

    If the database fails after the work, the row goes to a JSON file beside it rather than being lost.
    """
    values = [json.dumps(row.get(c)) if c in JSON_COLUMNS else row.get(c) for c in NAMES]
    try:
        con = connect(path)
        try:
            with con:
                con.execute(f"INSERT INTO results ({', '.join(NAMES)}) VALUES ({', '.join('?' * len(NAMES))})", values)
        finally:
            con.close()
    except (ZooError, sqlite3.Error) as e:
        spare = home() / f"unsaved-result-{row.get('run_id')}-{row.get('model')}.json".replace("/", "_")
        write_text(spare, json.dumps(row, indent=2, default=str))
        raise ZooError(f"{e} The finished result was kept in {spare}.") from None


def query(path=None, *, dataset=None, model=None, last=None, run_id=None):
    """Rows (dicts), oldest first; `last` keeps the newest N runs."""
    where, args = [], []
    for column, value in (("dataset", dataset), ("model", model), ("run_id", run_id)):
        if value:
            where.append(f"{column} = ?")
            args.append(printable(value))  # names are stored so: bytes that are not UTF-8 as \xNN escapes
    sql = "SELECT * FROM results" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
    con = connect(path)
    con.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in con.execute(sql, args)]
    finally:
        con.close()
    for row in rows:
        for column in JSON_COLUMNS:
            row[column] = json.loads(row[column]) if row[column] else None
    rows = with_deltas(rows)  # before --last, so the newest runs still compare with older ones
    if last:
        runs = list(dict.fromkeys(r["run_id"] for r in rows))[-last:]
        rows = [r for r in rows if r["run_id"] in runs]
    return rows


def with_deltas(rows):
    """Add delta_top1: the change from the previous comparable run (same model, data, size, seed, protocol)."""
    previous = {}
    for row in rows:
        key = (row["model"], row["dataset"], row["split"], row["n"], row["seed"], row["protocol"])
        before = previous.get(key)
        row["delta_top1"] = row["top1"] - before if before is not None and row["top1"] is not None else None
        if row["top1"] is not None:
            previous[key] = row["top1"]
    return rows


def fmt(value, column):
    if value is None:
        return "-"
    if column in ("top1", "top5", "delta_top1"):
        return f"{value:+.4f}" if column == "delta_top1" else f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 10 else f"{value:#.3g}"  # 3.00, not 3, beside 3.14
    return str(value)


def export(rows, fmt_name, path):
    """Write rows as csv, json or md, atomically."""
    if fmt_name == "json":
        text = json.dumps(rows, indent=2)
    elif fmt_name == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else NAMES)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
        text = buffer.getvalue()
    elif fmt_name == "md":
        text = markdown(rows)
    else:
        raise ZooError(f"Unknown export format {fmt_name!r}: use csv, json or md.")
    write_text(path, text)


def markdown(rows, columns=SUMMARY):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c), c) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"
