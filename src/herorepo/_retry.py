"""Run a unit of work again from the start when it loses a race (deadlock, serialization...)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ._errors import (
    CannotConnectError,
    CommitInterruptedError,
    ConfigurationError,
    ConnectionLostError,
    RetriesExhaustedError,
    TransientError,
)
from ._unit_of_work import UnitOfWork, forbid_intermediate_commits

T = TypeVar("T")

logger = logging.getLogger("herorepo")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How :meth:`Database.run <herorepo.Database.run>` retries.

    Args:
        attempts: Runs in all, the first included.
        base_delay: Seconds before the second run; doubled for each further run.
        max_delay: The longest wait between runs.
        retry_on: Errors that trigger another run. Only errors after which a fresh run is safe
            belong here. A :class:`~herorepo.CommitInterruptedError` with ``committed=False``
            (the connection was lost during COMMIT, and the server rolled back) is always
            retried; one with ``committed=None`` (outcome unknown) only if
            ``CommitInterruptedError`` itself is listed here (``ConnectionLostError`` is not
            enough). Any
            other :class:`~herorepo.ConnectionLostError` (:class:`~herorepo.CannotConnectError`
            included, unless its ``refused`` says the login itself was turned down) is always
            retried too: the connection was lost, or never made, before COMMIT was sent, and
            the server rolls back a transaction whose connection is gone.
            To ride out a failover, give ``attempts`` and ``max_delay`` that add up to longer
            than a promotion takes (docs/scaling-out.md).

    .. versionadded:: 0.1.0
    """

    attempts: int = 5
    base_delay: float = 0.02
    max_delay: float = 1.0
    retry_on: tuple[type[BaseException], ...] = (TransientError,)

    def __post_init__(self) -> None:
        attempts: object = self.attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigurationError(
                f"attempts must be a whole number >= 1, got {self.attempts!r}."
            )
        if not 0 <= self.base_delay <= self.max_delay:
            raise ConfigurationError("Need 0 <= base_delay <= max_delay.")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed run number ``attempt``: exponential, with full jitter."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


async def run_with_retries(
    make_unit: Callable[[], UnitOfWork],
    work: Callable[[UnitOfWork], Awaitable[T]],
    policy: RetryPolicy,
) -> T:
    last: BaseException | None = None
    caught: tuple[type[BaseException], ...] = (*policy.retry_on, ConnectionLostError)
    for attempt in range(1, policy.attempts + 1):
        # An attempt that committed part of its work could not be run again safely.
        unit = forbid_intermediate_commits(make_unit())
        unit.attempt = attempt
        try:
            async with unit as uow:
                return await work(uow)
        except caught as error:
            if _not_retried(error, policy):
                raise  # an interrupted COMMIT that may have committed
            if unit.joined:
                raise  # part of an outer transaction: only the outermost can run it all again
            last = error
            if attempt == policy.attempts:
                break
            pause = policy.delay(attempt)
            logger.info(
                "herorepo: retrying a unit of work after %s (attempt %d of %d, waiting %.3f s)",
                type(error).__name__,
                attempt + 1,
                policy.attempts,
                pause,
            )
            await asyncio.sleep(pause)
    assert last is not None
    raise RetriesExhaustedError(policy.attempts, last) from last


def _not_retried(error: BaseException, policy: RetryPolicy) -> bool:
    # Retried whatever retry_on says, as nothing of it was saved: a COMMIT found rolled back,
    # and a connection lost (or never made) before COMMIT was sent. A loss during COMMIT is
    # always a CommitInterruptedError (see UnitOfWork._commit).
    if isinstance(error, CommitInterruptedError):
        # A COMMIT that may have committed runs again only if retry_on names this class itself
        # (or a subclass): listing ConnectionLostError must not repeat committed work.
        if error.committed is False:
            return False
        return not any(issubclass(kind, CommitInterruptedError) for kind in policy.retry_on)
    if isinstance(error, policy.retry_on):
        return False
    if isinstance(error, CannotConnectError):
        return error.refused  # a wrong password or database stays wrong
    return not isinstance(error, ConnectionLostError)
