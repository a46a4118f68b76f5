"""A pool of daemon worker threads for the API user agents' requests.

:class:`concurrent.futures.ThreadPoolExecutor` joins its workers when the interpreter exits, so one request hung
on the network kept a stopped command alive for up to ``(1 + max_retries) x timeout_s`` after its "stopped"
line. :class:`DaemonPool` takes the same work, started the same way, on threads that do not hold the exit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class DaemonPool:
    """Up to ``workers`` daemon threads taking work from a queue, started as work comes (as ThreadPoolExecutor
    does). ThreadPoolExecutor's workers are joined at interpreter exit, so one request hung on the network kept a
    stopped command alive for up to (1 + max_retries) x timeout_s after its "stopped" line; these are not. A
    worker holds no reference to the work it finished, so a pool whose owner is dropped unclosed is shut down
    by the owner's finalizer (see :class:`RemoteChatAgent`)."""

    def __init__(self, workers: int, name: str):
        self._max, self._name = workers, name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)  # released by a worker each time it has finished a job
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool was shut down")
            self._queue.put((future, fn, args))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max:
                thread = threading.Thread(
                    target=_work, args=(self._queue, self._idle), name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return future

    def shutdown(self, wait: bool = True) -> None:
        """Cancel the work not started (a batch waiting on it is told) and end every worker after its current
        request; with ``wait``, wait for that request, else leave it to its daemon thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
                    item[0].set_running_or_notify_cancel()  # wakes a wait() on it: cancel() alone does not
            for _ in self._threads:
                self._queue.put(None)
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()


def _work(
    jobs: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None], idle: threading.Semaphore
) -> None:
    """A :class:`DaemonPool` worker: a function, not a method, so that it keeps neither the pool nor, between
    jobs, the work it ran (the agent a bound method names) alive."""
    while (item := jobs.get()) is not None:
        future, fn, args = item
        del item
        if future.set_running_or_notify_cancel():
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, as concurrent.futures does
                future.set_exception(exc)
            else:
                future.set_result(result)
                del result
        del future, fn, args
        idle.release()  # free for the next job: submit() starts no thread while one is
