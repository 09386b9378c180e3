"""One step on N machines at once → every machine's result or error (Fabric's ``GroupResult`` model, STYLE 13).

The caller decides what a failure on one machine means; the other machines' results are kept either way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from orchestrator.errors import OrchestrateError, RunInterrupted

T = TypeVar("T")
R = TypeVar("R")
MAX_WORKERS = 32


@dataclass
class GroupResult(Generic[T, R]):
    """What one step did on each item: a result or an exception, in the items' order."""

    items: list[T]
    name: Callable[[T], str]  # how an item is named in messages (a machine's id)
    results: dict[int, R] = field(default_factory=dict)  # by position in ``items``
    errors: dict[int, BaseException] = field(default_factory=dict)

    @property
    def failed(self) -> list[tuple[T, BaseException]]:
        """The items that failed, with their errors."""
        return [(self.items[i], self.errors[i]) for i in sorted(self.errors)]

    def __iter__(self) -> Iterator[tuple[T, R | BaseException]]:
        for i, item in enumerate(self.items):
            yield item, self.results[i] if i in self.results else self.errors[i]

    def detail(self, describe: Callable[[R], str] = str) -> str:
        """One line for the step's event: each item's result or error."""
        if len(self.items) == 1:
            only = self.results.get(0)
            return describe(only) if 0 in self.results and only is not None else str(self.errors.get(0, ""))
        return "; ".join(
            f"{self.name(item)}: {describe(outcome) if i in self.results else outcome}"  # type: ignore[arg-type]
            for i, (item, outcome) in enumerate(self)
        )

    def raise_first(self) -> None:
        """Raises the first item's error, saying which item failed (the others' results stay here)."""
        if not self.errors:
            return
        item, error = self.failed[0]
        if len(self.items) > 1 and isinstance(error, OrchestrateError) and not str(error).startswith(
            f"{self.name(item)}: "
        ):
            error.args = (f"{self.name(item)}: {error}",)
        raise error


def fan_out(
    items: Sequence[T],
    work: Callable[[T], R],
    *,
    name: Callable[[T], str] = str,
    cancel: threading.Event | None = None,
    thread_name: str = "fanout",
) -> GroupResult[T, R]:
    """Runs ``work`` on every item at once and returns every item's result or exception.

    Exceptions of every type are kept per item (a bug on one machine does not lose the others' results). An
    interrupt (KeyboardInterrupt, or any exception raised in this thread while waiting, such as the lifecycle's
    RunInterrupted from a signal handler) sets ``cancel`` and propagates at once without waiting for slow workers:
    their loops watch ``cancel`` and what they started is stopped by the caller's teardown.
    """
    group: GroupResult[T, R] = GroupResult(list(items), name)
    if len(group.items) == 1:  # in this thread: signals and tracebacks stay simple
        try:
            group.results[0] = work(group.items[0])
        except RunInterrupted:
            raise
        except Exception as error:  # noqa: BLE001 - kept per item; the caller decides
            group.errors[0] = error
        return group
    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(group.items)) or 1, thread_name_prefix=thread_name)
    futures: list[Future[R]] = [pool.submit(work, item) for item in group.items]
    try:
        wait(futures)
    except BaseException:
        if cancel is not None:
            cancel.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    for i, future in enumerate(futures):
        failure = future.exception()
        if failure is None:
            group.results[i] = future.result()
        else:
            group.errors[i] = failure
    return group
