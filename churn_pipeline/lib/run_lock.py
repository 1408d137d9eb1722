"""One run per warehouse at a time: a lock file beside it, released by the OS however a run ends."""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout


class WarehouseBusy(RuntimeError):
    """Another run holds the warehouse's run lock."""


def lock_path(live: Path) -> Path:
    return live.with_name(f".{live.name}.lock")


def acquire_run_lock(live: Path, timeout_seconds: float) -> FileLock:
    """Wait up to `timeout_seconds` until no other run builds this warehouse; returns the held lock."""
    live.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path(live))
    try:
        lock.acquire(timeout=timeout_seconds, poll_interval=0.25)
    except Timeout:
        raise WarehouseBusy(
            f"another run is building {live} (lock {lock_path(live)} held for {timeout_seconds:g}s); try again when it finishes"
        ) from None
    return lock
