"""Service calls that survive Fast DDS dropping an answer.

A Fast DDS service waits 100 ms for the caller's answer reader to be discovered, then drops the
answer ("failed to send response (timeout): client will not receive response"). On a loaded
machine discovery takes longer, so the first call after `service_is_ready()` can go unanswered
although the server did the work (a sim reset done, its answer lost). For requests that may be
repeated (a reset, setting parameters), ask again until an answer comes.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from rclpy.client import Client

# [s] without an answer, the request is sent again: long enough that a slow answer (a loaded
# machine) is not taken for a lost one, which would do the work twice.
RESEND_S = 5.0


def call_repeatable(client: Client, request, spin_once: Callable[[], None], timeout_s: float,
                    resend_s: float = RESEND_S):
    """The response to `request`, sent again every `resend_s` without one; None after `timeout_s`.

    `spin_once` runs the caller's executor briefly (it must let the answer be delivered).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        future = client.call_async(request)
        resend_at = min(deadline, time.monotonic() + resend_s)
        while not future.done() and time.monotonic() < resend_at:
            spin_once()
        if future.done():
            return future.result()
        client.remove_pending_request(future)
    return None
