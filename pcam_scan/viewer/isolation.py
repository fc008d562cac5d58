"""One slide's stalled reads never block the viewer's other requests.

A slide file or store on storage that stops answering (a dead network mount, a file another
process holds a lease on) blocks the thread that reads it for as long as the storage likes. When
such reads ran in Starlette's shared thread pool, 48 tile requests for that slide took all of its
threads and every route of the server stopped answering (issue 24, defect D).

`SlideGate` runs each request that reads a slide in a thread of its own, counted against that
slide: at most `per_slide` run at once. A further request for the slide waits for a free place
on the event loop (holding no thread); a request waits at most `timeout_s` in all, then is
answered 503 (`SlideBusyError`: the slide's places are all taken) or 504 (`SlideStalledError`:
its own read did not finish). A thread stuck in its read keeps its place until the read
returns, so a stalled slide holds at most `per_slide` threads, and requests for other slides and
the slide list, which never wait on those places, keep answering.

The viewer has two gates: one for its requests, and one for the store's file reads beneath them
(`pcam_scan.store.guarded_store.IsolatedLocalStore`, on Zarr's event loop), so a stalled store
chunk holds at most `per_slide` of Zarr's reading threads too, never the pool all slides share; a
request whose store read gives up is answered and frees its own place. Two gates, not one: a
request holding its slide's last place must never wait for a place of that slide for its read.

The gate holds no event-loop objects between requests (the test client runs each request on a
loop of its own): a waiter is handed its place through its own loop's `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from pcam_scan.errors import PcamScanError

T = TypeVar("T")


class SlideBusyError(PcamScanError):
    """Every place of a slide is taken by reads still running (answered 503, retry later)."""


class SlideStalledError(PcamScanError):
    """A read of a slide did not finish within the viewer's time limit (answered 504)."""


class _Waiter:
    """A request waiting for a place of its slide; `granted` (set under the gate's lock) says a
    finishing read handed it its place."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False


class SlideGate:
    """Per-slide places for the viewer's reads (see the module docstring)."""

    def __init__(self, per_slide: int, timeout_s: float, thread_name: str = "viewer-read") -> None:
        if per_slide < 1:
            raise ValueError("a slide needs at least one place for its reads")
        if not timeout_s > 0:
            raise ValueError("the read time limit must be > 0 s")
        self.per_slide = per_slide
        self.timeout_s = timeout_s
        self.thread_name = thread_name
        """Its threads are named `<thread_name>-<slide id>`."""
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}  # slide id -> reads holding a place (stuck ones too)
        self._waiting: dict[str, deque[_Waiter]] = {}

    def running(self, slide_id: str) -> int:
        """Reads of the slide holding a place now (a stalled one included)."""
        with self._lock:
            return self._running.get(slide_id, 0)

    async def run(self, slide_id: str, work: Callable[[], T]) -> T:
        """`work()` in a thread of its own under one of the slide's places; its result or its
        exception. SlideBusyError / SlideStalledError when the time limit passes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        await self._acquire(slide_id, loop)
        done: asyncio.Future[T] = loop.create_future()
        thread = threading.Thread(
            target=self._work, args=(slide_id, work, loop, done), name=f"{self.thread_name}-{slide_id}", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            self._release(slide_id)
            raise
        try:
            return await asyncio.wait_for(asyncio.shield(done), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise SlideStalledError(
                f"slide {slide_id!r}: its read did not finish within {self.timeout_s:g} s (its storage is stalled)"
            ) from None

    async def _acquire(self, slide_id: str, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._running.get(slide_id, 0) < self.per_slide and not self._waiting.get(slide_id):
                self._running[slide_id] = self._running.get(slide_id, 0) + 1
                return
            waiter = _Waiter(loop)
            self._waiting.setdefault(slide_id, deque()).append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.timeout_s)
        except BaseException as err:  # the time limit, or the client went away
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiting[slide_id].remove(waiter)
                    if not self._waiting[slide_id]:
                        del self._waiting[slide_id]
            if granted:
                self._release(slide_id)  # handed over just now: pass it on
            if isinstance(err, TimeoutError):
                raise SlideBusyError(
                    f"slide {slide_id!r} is busy: {self.per_slide} reads of it are still running "
                    f"after {self.timeout_s:g} s (its storage may be stalled); try again later"
                ) from None
            raise

    def _work(
        self, slide_id: str, work: Callable[[], T], loop: asyncio.AbstractEventLoop, done: asyncio.Future[T]
    ) -> None:
        """The thread's body: the read, its outcome to the request (if it still waits), and
        the slide's place to the next request."""
        try:
            result = work()
        except BaseException as err:
            _call_in(loop, _set_exception, done, err)
        else:
            _call_in(loop, _set_result, done, result)
        finally:
            self._release(slide_id)

    def _release(self, slide_id: str) -> None:
        """Hand the place to the slide's first live waiter, or free it."""
        while True:
            with self._lock:
                queue = self._waiting.get(slide_id)
                if not queue:
                    self._running[slide_id] -= 1
                    if not self._running[slide_id]:
                        del self._running[slide_id]
                    return
                waiter = queue.popleft()
                if not queue:
                    del self._waiting[slide_id]
                waiter.granted = True
            if _call_in(waiter.loop, _set_result, waiter.future, None):
                return
            # its loop is gone (its request with it): try the next waiter


def _call_in(loop: asyncio.AbstractEventLoop, setter: Callable[..., None], *args: object) -> bool:
    """Run `setter(*args)` on `loop`; False when that loop is closed."""
    try:
        loop.call_soon_threadsafe(setter, *args)
    except RuntimeError:
        return False
    return True


def _set_result(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[T], err: BaseException) -> None:
    if not future.done():
        future.set_exception(err)
