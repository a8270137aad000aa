"""Several worker processes on one search: the first (`--out`, or `--resume`) in SEARCH/, each
joining one (`--join SEARCH`) in SEARCH/worker-<k>/, all on the study's one storage (the journal on
a shared file system, or a `--storage` URL).

A worker is alive while it holds its folder's lock (`rundir.lock_run_dir`, an flock the kernel
drops when the process dies). A joining worker takes the first worker folder whose lock is free:
a new one, or a dead worker's, whose RUNNING population it finishes from its checkpoints. The
first worker also waits for the others and runs the confirmation, once."""

from __future__ import annotations

import fcntl
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

from mnist_jax.errors import ConfigError, OutputError
from mnist_jax.rundir import LOCK_FILE, lock_run_dir

WORKER_PREFIX = "worker-"


def worker_folder(search_dir: Path, worker: int) -> Path:
    """Where worker `worker` keeps its populations: SEARCH/ for the first, SEARCH/worker-<k>/."""
    return Path(search_dir) if worker == 0 else Path(search_dir) / f"{WORKER_PREFIX}{worker}"


def claim_worker(search_dir: Path) -> tuple[int, Path]:
    """A joining worker's number and folder, locked: the first of SEARCH/worker-1, -2, ... that is
    new or whose worker has died (its lock free)."""
    for worker in itertools.count(1):
        folder = worker_folder(search_dir, worker)
        try:
            folder.mkdir(exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot write to {search_dir}: {error.strerror}") from None
        for attempt in range(3):  # worker 0's liveness probe holds a free lock for a moment
            try:
                lock_run_dir(folder)
            except ConfigError:  # another worker holds it, or a probe did just then
                time.sleep(0.1 * (attempt + 1))
                continue
            return worker, folder
    raise AssertionError("unreachable")


def known_workers(search_dir: Path) -> list[int]:
    """The workers that have had a folder: 0 and each SEARCH/worker-<k>."""
    numbers = [
        int(p.name[len(WORKER_PREFIX) :])
        for p in Path(search_dir).glob(f"{WORKER_PREFIX}*")
        if p.is_dir() and p.name[len(WORKER_PREFIX) :].isdigit()
    ]
    return [0, *sorted(numbers)]


def alive(search_dir: Path, worker: int) -> bool:
    """Whether a live process (this one included: its own lock blocks the test's descriptor)
    locks worker `worker`'s folder."""
    try:
        descriptor = os.open(worker_folder(search_dir, worker) / LOCK_FILE, os.O_RDWR)
    except OSError:  # no folder or no lock file: never started
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # the test's lock, if it got it, goes with the descriptor
    return False


def others_working(search_dir: Path, me: int) -> Callable[[], bool]:
    """`run_search`'s `others_working`: whether a worker other than `me` is alive."""
    return lambda: any(alive(search_dir, w) for w in known_workers(search_dir) if w != me)


def wait_for_workers(
    study, search_dir: Path, *, poll: float = 5.0, on_wait: Callable[[str], None] = print
) -> None:
    """The first worker, its own trials done: waits until no trial of any worker is RUNNING. A
    dead worker's RUNNING population is a ConfigError saying how to finish it (`--join`); a
    RUNNING trial without a population, no other worker alive, was left by a kill: told FAIL."""
    from optuna.trial import TrialState

    from mnist_jax.search.engine import worker_of

    said = None
    while True:
        running = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        if not running:
            return
        workers = {worker_of(t) for t in running if "population" in t.user_attrs} - {0}
        for worker in sorted(workers):
            if not alive(search_dir, worker):
                folder = worker_folder(search_dir, worker)
                raise ConfigError(
                    f"worker {worker} ({folder}) stopped with trials unfinished: `--join "
                    f"{search_dir}` finishes them, then `--resume {search_dir}` confirms"
                )
        if not workers and not others_working(search_dir, 0)():
            for trial in running:  # asked, never given a population: a kill while asking
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            continue
        waiting = ", ".join(f"worker {w}" for w in sorted(workers)) or "a worker asking"
        if waiting != said:
            on_wait(f"waiting for {waiting} to finish its population")
            said = waiting
        time.sleep(poll)
