"""Executors: run one function over shards, results back in shard order.

The pipeline definition (pipeline.py) never knows which executor runs it. Every per-shard function
is pure (a shard's result depends on the shard's documents only), and results are reassembled in
shard order, so the kept set is identical for any executor and worker count.

    one process        LocalExecutor()
    local processes    PoolExecutor(workers=N)      (`--workers N`)
    a Ray cluster      RayExecutor(address=None)    (pip install 'trainforge[ray]')
"""

from __future__ import annotations

from typing import Callable, Sequence

from trainforge.errors import UserError


def shard(items: Sequence, n_shards: int) -> list[Sequence]:
    """Contiguous, near-equal slices (order preserved)."""
    n_shards = max(1, min(n_shards, len(items)))
    size, extra = divmod(len(items), n_shards)
    out, start = [], 0
    for i in range(n_shards):
        stop = start + size + (i < extra)
        out.append(items[start:stop])
        start = stop
    return out


class LocalExecutor:
    workers = 1

    def map(self, fn: Callable, args: list) -> list:
        return [fn(a) for a in args]

    def close(self) -> None:
        pass


def _warm_up(modules: tuple[str, ...]) -> None:
    import importlib

    for name in modules:
        importlib.import_module(name)


class PoolExecutor:
    """A process pool; 'spawn' so a parent that holds threads (MLflow, torch) is never forked.

    `preload`: modules the workers import as soon as they start (the caller's shard code, named by
    the caller: an executor runs any function and imports none of the pipeline itself)."""

    def __init__(self, workers: int, preload: tuple[str, ...] = ()):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        # spawn the workers and import the shard code now, so ~1 s of start-up per worker overlaps the
        # parent's reading instead of delaying the first shard
        for _ in range(workers):
            self.pool.submit(_warm_up, tuple(preload))

    def map(self, fn: Callable, args: list) -> list:
        return list(self.pool.map(fn, args))

    def submit(self, fn: Callable, arg):
        """One shard now, its result later (future.result()): lets the parent keep reading meanwhile."""
        return self.pool.submit(fn, arg)

    def close(self) -> None:
        self.pool.shutdown()


class RayExecutor:
    def __init__(self, workers: int, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise UserError("data.executor: ray is not installed: pip install 'trainforge[ray]'") from None
        self.ray = ray
        self.workers = workers
        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)

    def map(self, fn: Callable, args: list) -> list:
        remote = self.ray.remote(fn)
        return self.ray.get([remote.remote(a) for a in args])

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()


def make_executor(kind: str, workers: int, preload: tuple[str, ...] = ()):
    if workers < 1:
        raise UserError(f"data.workers must be ≥ 1, got {workers}")
    if kind == "ray":
        return RayExecutor(workers)
    return LocalExecutor() if workers == 1 else PoolExecutor(workers, preload)
