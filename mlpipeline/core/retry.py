"""One way to retry, on tenacity: a bounded number of attempts, a wait between them, and every
retry reported by the caller in its own words (what failed, attempt n of N, the wait).

The last attempt's error is raised as it was, so callers translate it once, after the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

import tenacity

# on_retry(attempt that failed, seconds until the next one, its outcome: .exception() or .result())
OnRetry = Callable[[int, float, Future], None]


def retrying(
    *,
    attempts: int,
    wait: tenacity.wait.wait_base,
    retry: tenacity.retry.retry_base,
    on_retry: OnRetry,
) -> tenacity.Retrying:
    """Call it with the work: `retrying(...)(work, *args)`. The last attempt's error is raised;
    a result that `retry` rejects on the last attempt is returned as is (callers check it)."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=wait,
        retry=retry,
        before_sleep=lambda state: on_retry(
            state.attempt_number, state.next_action.sleep, state.outcome
        ),
        # On the last attempt: its result, or its error raised as it was (not a RetryError).
        retry_error_callback=lambda state: state.outcome.result(),
    )
