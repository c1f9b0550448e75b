"""Where a study lives: a journal file on one machine, an RDB (PostgreSQL) for many.

Optuna's journal file is an append-only log guarded by a file lock, so several worker processes on one
machine can share it (SQLite's one-writer lock makes parallel workers fail with "database is locked");
PostgreSQL or MySQL lets workers on many machines share a study.
"""

from __future__ import annotations

from pathlib import Path

from trainforge.errors import UserError


def default_storage(runs_dir: Path) -> str:
    return str(Path(runs_dir).resolve() / "optuna.journal")


def is_journal(url: str) -> bool:
    return url.endswith(".journal") or url.startswith("journal:")


def open_storage(url: str, workers: int = 1):
    """An Optuna storage object for `url` (a .journal path, or an RDB URL)."""
    import optuna

    if is_journal(url):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    if url.startswith("sqlite") and workers > 1:
        raise UserError(f"tune.storage {url}: SQLite takes one writer at a time, so {workers} workers would fail with "
                        "'database is locked'; leave tune.storage unset (a journal file) or use a PostgreSQL URL")
    if "://" not in url:
        raise UserError(f"tune.storage {url}: give a path ending in .journal or a database URL (sqlite:///…, postgresql://…)")
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
    except ImportError as e:
        raise UserError(f"tune.storage {url}: the database driver is missing ({e}); pip install 'trainforge[tune]' "
                        "(psycopg for PostgreSQL)") from None
    except Exception as e:  # noqa: BLE001 — a storage that does not open is a setup problem the user fixes
        raise UserError(f"tune.storage {url}: Optuna could not open it ({type(e).__name__}: {e})") from None
