"""What a serving process sets in its interpreter."""

from __future__ import annotations

import sys

from idservice.entrypoints.grpc.server import GIL_SWITCH_INTERVAL_SECONDS, RunningServer


def test_a_serving_process_hands_the_gil_over_within_half_a_millisecond(
    server: RunningServer,
) -> None:
    assert server.port > 0
    assert sys.getswitchinterval() == GIL_SWITCH_INTERVAL_SECONDS == 0.0005
