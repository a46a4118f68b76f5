"""The API user agents' worker pool: bounded, daemon, reusing idle workers, and cancelling what it never started."""

from __future__ import annotations

import threading
from concurrent.futures import wait

import pytest

from mgfrec.user_agents.daemon_pool import DaemonPool


def test_work_runs_on_at_most_the_given_number_of_daemon_threads():
    pool = DaemonPool(2, "t")
    gate = threading.Event()
    seen: set[str] = set()

    def job(i: int) -> int:
        seen.add(threading.current_thread().name)
        assert threading.current_thread().daemon  # a hung request never holds the interpreter's exit
        gate.wait(5)
        return i * i

    futures = [pool.submit(job, i) for i in range(5)]
    gate.set()
    wait(futures, timeout=10)
    assert [f.result() for f in futures] == [0, 1, 4, 9, 16]
    assert seen <= {"t_0", "t_1"} and len(pool._threads) == 2
    pool.shutdown()
    assert not any(t.is_alive() for t in pool._threads)


def test_an_idle_worker_takes_the_next_job_instead_of_a_new_thread():
    pool = DaemonPool(4, "t")
    for i in range(3):
        assert pool.submit(lambda x: x + 1, i).result(timeout=5) == i + 1
    assert len(pool._threads) == 1
    pool.shutdown()


def test_shutdown_cancels_the_work_not_started_and_wakes_its_waiter():
    pool = DaemonPool(1, "t")
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "done"

    first = pool.submit(slow)
    queued = pool.submit(lambda: "never")
    assert started.wait(5)
    waiter = threading.Thread(target=wait, args=([queued],))
    waiter.start()
    pool.shutdown(wait=False)
    waiter.join(5)
    assert not waiter.is_alive() and queued.cancelled()  # cancel() alone left a wait() on it hanging
    release.set()
    assert first.result(timeout=5) == "done"  # the job in progress finishes on its own thread
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: None)


def test_an_exception_reaches_the_caller_and_the_worker_goes_on():
    pool = DaemonPool(1, "t")

    def boom() -> None:
        raise KeyboardInterrupt  # a BaseException too: handed over, as concurrent.futures does

    assert isinstance(pool.submit(boom).exception(timeout=5), KeyboardInterrupt)
    assert pool.submit(lambda: 7).result(timeout=5) == 7
    pool.shutdown()
