"""`pipeline run`: validate, resume, start or join Ray, stream results to Parquet, write run.json."""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from manifests import schema
from manifests.io import manifest_columns
from manifests.validate import check_columns
from pipeline.allocators import return_freed_memory, trim_heap
from pipeline.config import RunConfig
from pipeline.local_ray import LocalRay, join_ray, local_resources, size_local_ray, start_local_ray
from pipeline.outputs import IMAGES_SUBDIR, remove_interrupted_writes, storage_failure, storage_reason, write_atomic
from pipeline.resources import ResourcePlan, plan_resources, sample_pixels
from pipeline.results_store import ResultCounts, ResultsStore, write_parquet_atomic
from pipeline.scoring import resolve_scoring
from pipeline.todo import SPILL_NAME, ManifestExtras, Todo, TodoOptions, prepare_todo
from pipeline.versions import package_versions
from pipeline.window_handover import wait_for_method_actors_to_exit
from stages.load import LoadConfig
from stages.metrics import ScoreConfig
from workers.registry import build_config, get_method


class RunError(RuntimeError):
    """The run cannot start; the message says what to change."""


@dataclass
class RunSummary:
    """What a finished run reports."""

    out: Path
    processed: int = 0  # result rows written by this run
    ok: int = 0
    errors: int = 0
    skipped: int = 0  # ids already finished by an earlier run
    rejected: int = 0  # manifest rows rejected before processing (duplicate id, empty path)
    seconds: float = 0.0
    error_samples: list[str] = field(default_factory=list)
    local_ray: LocalRay | None = None  # how the embedded Ray was started; None on a cluster

    @property
    def images_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One run per output folder at a time."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunError(f"{out} is in use by another pipeline run") from exc
        yield


STOPPED = ("the run stopped; results written so far are kept: make room (or fix the storage) and rerun "
           "the same command to resume")


@contextmanager
def _writing(folder: Path) -> Iterator[None]:
    """A failed write of run bookkeeping (results part, run.json) becomes a RunError naming the
    folder and the cause; atomic writes leave nothing half-written behind."""
    try:
        yield
    except OSError as exc:
        raise RunError(f"cannot write to {folder}: {storage_reason(exc)}; {STOPPED}") from exc


def _check_writable(folder: Path) -> None:
    probe = folder / ".write-probe"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise RunError(f"output folder {folder} is not writable: {exc.strerror or exc}") from exc


def _finished_ids(existing: pa.Table | None, config_hash: str, out: Path) -> pa.Array:
    """Ids whose every result row is ok and whose images exist; anything else is redone."""
    if existing is None or len(existing) == 0:
        return pa.array([], pa.string())
    hashes = set(pc.unique(existing[schema.CONFIG_HASH]).to_pylist())
    if hashes - {config_hash}:
        raise RunError(
            "this output folder holds results of a different configuration "
            f"(config hash {', '.join(sorted(hashes - {config_hash}))}, now {config_hash}); "
            "use a new --out, or --overwrite to start it afresh"
        )
    ok = pc.and_(pc.equal(existing[schema.STATUS], schema.STATUS_OK), pc.is_valid(existing[schema.OUTPUT]))
    good = [bool(flag) and (out / output).exists()
            for flag, output in zip(ok.to_pylist(), existing[schema.OUTPUT].to_pylist())]
    per_id = pa.table({"id": existing[schema.ID], "good": pa.array(good)}).group_by("id").aggregate(
        [("good", "all")])
    return per_id.filter(per_id["good_all"])["id"].combine_chunks()


def _result_table(batch: dict[str, np.ndarray], config: RunConfig, extras: ManifestExtras) -> pa.Table:
    """Driver side: a results batch in the results schema, plus the manifest's extra columns."""
    n = len(batch[schema.ID])
    columns = {}
    for field_ in schema.RESULT_SCHEMA:
        if field_.name == schema.METHOD:
            values = [config.method] * n
        elif field_.name == schema.CONFIG_HASH:
            values = [config.config_hash()] * n
        else:
            # np.floating too: joining blocks, Ray Data may hand an all-null string column as NaN float32
            values = [None if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)) else v
                      for v in batch[field_.name].tolist()]
        columns[field_.name] = pa.array(values, field_.type)
    table = pa.table(columns, schema=schema.RESULT_SCHEMA)
    for name in sorted(set(batch) - set(schema.RESULT_COLUMNS) - set(extras.columns) - {"gt", "image", "mask"}):
        values = batch[name].tolist()
        if all(v is None or isinstance(v, (int, float, str, bool)) for v in values):
            table = table.append_column(name, pa.array(values))  # a method's scalar extras (e.g. final loss)
    if extras.columns:
        picked = extras.take(table[schema.ROW].to_numpy())
        for name in extras.columns:
            table = table.append_column(name, picked[name])
    return table


def execute(config: RunConfig, progress: Callable[[str], None] = print, overwrite: bool = False) -> RunSummary:
    """Run the whole job; per-row problems become error rows, never exceptions."""
    return_freed_memory()  # the driver's size must not track the manifest's length
    method_cls = get_method(config.method)
    method_config = build_config(method_cls, {k: str(v) for k, v in config.method_options.items()})
    missing = method_cls.missing_weights(method_config)
    if missing:
        raise RunError(f"method '{config.method}' cannot start, weights are missing:\n  " + "\n  ".join(missing))
    scoring = resolve_scoring(config.lpips)
    if scoring.note:
        progress(scoring.note)
    config = dataclasses.replace(config, manifest=config.manifest.resolve(), out=config.out.resolve(),
                                 lpips=scoring.lpips)
    if config.dilate is not None and config.dilate < 0:
        raise RunError(f"--dilate must be >= 0 pixels, not {config.dilate}")
    check_columns(manifest_columns(config.manifest))  # not Parquet, a column missing: before touching OUT
    out = config.out
    _check_writable(out)
    with _exclusive(out):
        if overwrite:
            import shutil
            for sub in ("results", "images"):
                shutil.rmtree(out / sub, ignore_errors=True)
        _check_writable(out / IMAGES_SUBDIR)
        store = ResultsStore(out / "results")
        store.recover()
        remove_interrupted_writes(out / IMAGES_SUBDIR)  # a killed run's half-written images
        finished = _finished_ids(store.read(columns=[schema.ID, schema.STATUS, schema.OUTPUT, schema.CONFIG_HASH]),
                                  config.config_hash(), out)
        try:
            with _writing(out):
                todo = prepare_todo(config.manifest, out / SPILL_NAME, finished,
                                    TodoOptions(limit=config.limit, dilate=config.dilate))
            del finished
            summary = _run_todo(config, method_cls, method_config, scoring.config, todo, store, progress)
        finally:
            (out / SPILL_NAME).unlink(missing_ok=True)
    return summary


def _run_todo(config: RunConfig, method_cls, method_config, score_config: ScoreConfig, todo: Todo,
              store: ResultsStore, progress: Callable[[str], None]) -> RunSummary:
    out = config.out
    summary = RunSummary(out=out, skipped=todo.skipped, rejected=len(todo.rejected))
    for rejected in todo.rejected:
        progress(f"rejected manifest row {rejected.row} (id {rejected.id!r}): {rejected.error}")
    if todo.rejected:
        with _writing(out):
            write_parquet_atomic(pa.Table.from_pylist([r.__dict__ for r in todo.rejected]), out / "rejected.parquet")
    if summary.skipped:
        progress(f"resuming: {summary.skipped} id(s) already finished in {out}, {todo.rows} to do")
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    plan = None
    if todo.rows:
        plan = _stream(config, method_cls, method_config, score_config, todo, store, summary, progress)
    summary.seconds = time.perf_counter() - started
    with _writing(out):
        final = store.consolidate()
        _write_run_json(config, out, summary, plan, started_at, final)
    return summary


def _stream(config: RunConfig, method_cls, method_config, score_config: ScoreConfig, todo: Todo,
            store: ResultsStore, summary: RunSummary,
            progress: Callable[[str], None]) -> ResourcePlan:
    # Our own progress lines say what is happening; RAY_DATA_LOG_LEVEL=INFO brings Ray's back.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
    import ray

    from pipeline.graph import build_graph

    pixels = sample_pixels(todo.sample_images)

    def plan_for(cpus: float, gpus: float) -> ResourcePlan:
        return plan_resources(cpus, gpus, method_cls.resources, todo.rows, config.actors, config.batch_size,
                              pixels_per_row=pixels)

    started_ray = not ray.is_initialized()  # a caller's Ray (tests, notebooks) is used as it is
    if started_ray and config.address:
        join_ray(config.address)
    elif started_ray:
        cpus, gpus = local_resources(config.num_cpus)
        summary.local_ray = size_local_ray(plan_for(cpus, gpus), cpus, gpus)
        start_local_ray(summary.local_ray)
    try:
        resources = ray.cluster_resources()
        plan = plan_for(resources.get("CPU", 1), resources.get("GPU", 0))
        parts = windows(todo.rows, plan.rows_per_window)
        progress(f"running {config.method} on {todo.rows} row(s): {plan.actors} actor(s) × "
                 f"{plan.actor_cpus:g} CPU{f' + {plan.actor_gpus:g} GPU' if plan.actor_gpus else ''}, "
                 f"batch {plan.batch_size}, fusion {config.fusion}"
                 + (f", in {len(parts)} windows of {plan.rows_per_window} rows" if len(parts) > 1 else ""))
        collector = _ResultCollector(config, todo, store, summary, progress)
        load_config = LoadConfig(mask_threshold=config.mask_threshold, max_pixels=config.max_pixels)
        for index, window in enumerate(parts):
            if index:
                wait_for_method_actors_to_exit()
            ds = build_graph(todo, plan, config.method, method_config, config.fusion, load_config,
                             str(config.out), config.output_format, score_config, rows=window)
            for batch in _batches_until_ray_gives_up(ds, collector.flush):
                collector.take(batch)
        collector.flush()
        return plan
    finally:
        if started_ray:
            ray.shutdown()


class _ResultCollector:
    """The graph's result batches into the results store, counted and reported as they arrive;
    one collector spans every window of the run."""

    def __init__(self, config: RunConfig, todo: Todo, store: ResultsStore, summary: RunSummary,
                 progress: Callable[[str], None]) -> None:
        self.config, self.todo, self.store, self.summary, self.progress = config, todo, store, summary, progress
        self.extras = ManifestExtras(todo)
        self.pending: list[pa.Table] = []
        self.started = self.last_flush = time.perf_counter()

    def flush(self) -> None:
        if self.pending:
            with _writing(self.store.folder):
                self.store.append(pa.concat_tables(self.pending))
            self.pending.clear()
            trim_heap()
        self.last_flush = time.perf_counter()

    def take(self, batch: dict[str, np.ndarray]) -> None:
        config, summary = self.config, self.summary
        table = _result_table(batch, config, self.extras)
        self.pending.append(table)
        statuses = table[schema.STATUS].to_pylist()
        summary.processed += len(statuses)
        summary.ok += statuses.count(schema.STATUS_OK)
        summary.errors += len(statuses) - statuses.count(schema.STATUS_OK)
        for row_id, status, error in zip(table[schema.ID].to_pylist(), statuses, table[schema.ERROR].to_pylist()):
            if status != schema.STATUS_OK:
                self.progress(f"error in row id {row_id!r}: {error}")
                if len(summary.error_samples) < 20:
                    summary.error_samples.append(f"{row_id}: {error}")
        failure = next(filter(None, map(storage_failure, table[schema.ERROR].to_pylist())), None)
        if failure:  # full (or read-only) output storage: every further write would fail too
            try:
                self.flush()  # keep what finished, if the results folder still takes a part
            except RunError:
                pass  # then the rerun redoes those rows: their images are rewritten atomically
            raise RunError(f"cannot write to {config.out / IMAGES_SUBDIR}: {failure}; {STOPPED}")
        if (sum(len(t) for t in self.pending) >= config.flush_rows
                or time.perf_counter() - self.last_flush >= config.flush_seconds):
            self.flush()
        rate = summary.ok / max(1e-9, time.perf_counter() - self.started)
        self.progress(f"progress: {summary.processed}/{self.todo.rows} rows ({summary.ok} ok, "
                      f"{summary.errors} error) {rate:.1f} img/s")


def windows(rows: int, rows_per_window: int) -> list[range]:
    """The todo's rows in consecutive windows of `rows_per_window` (one window if 0)."""
    step = rows_per_window or rows
    return [range(start, min(rows, start + step)) for start in range(0, rows, step)] if rows else []


def _batches_until_ray_gives_up(ds, keep_results: Callable[[], None]) -> Iterator[dict[str, np.ndarray]]:
    """The result batches; when Ray gives up on a batch (its retries spent), keep what finished and
    stop with a RunError that says what probably happened and how to go on."""
    import ray

    from pipeline.graph import ACTOR_TASK_RETRIES

    batches = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except ray.exceptions.RayError as exc:
            keep_results()
            cause = (str(exc).strip().splitlines() or [""])[0]
            raise RunError(
                f"Ray gave up on a batch: {type(exc).__name__}: {cause}\n"
                f"If a method actor died on the same batch {ACTOR_TASK_RETRIES + 1} times, one of its rows "
                "crashes the method or exhausts its memory. The run stopped; results so far are kept and "
                "a rerun of the same command resumes.") from exc
        yield batch


def _write_run_json(config: RunConfig, out: Path, summary: RunSummary, plan: ResourcePlan | None,
                    started_at: str, final: ResultCounts | None) -> None:
    final = final or ResultCounts()
    counts = {"rows_total": final.rows_total, "ok": final.ok, "error": final.error}
    record = {
        "config": config.to_json(), "config_hash": config.config_hash(), "versions": package_versions(),
        "started_at": started_at, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "this_run": {"processed": summary.processed, "ok": summary.ok, "error": summary.errors,
                     "skipped_finished": summary.skipped, "rejected_manifest_rows": summary.rejected,
                     "seconds": round(summary.seconds, 3),
                     "images_per_second": round(summary.images_per_second, 3)},
        "results": counts,
        "resources": plan.__dict__ if plan else None,
        "embedded_ray": summary.local_ray.__dict__ if summary.local_ray else None,
    }
    write_atomic(out / "run.json", json.dumps(record, indent=2, default=str).encode())
