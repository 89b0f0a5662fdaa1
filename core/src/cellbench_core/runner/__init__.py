"""The runner: test plans run on channels, every sample handled in batches across channels.

What other code uses is importable from here; the modules are described in engine.py.
"""

from cellbench_core.runner.engine import Prepared, Runner, prepare
from cellbench_core.runner.external import Refusal, SetpointRefused
from cellbench_core.runner.records import (
    ChannelRef,
    ChannelState,
    ChannelStatus,
    Resume,
    RunError,
    TestOutcome,
    TestRequest,
)

__all__ = ["ChannelRef", "ChannelState", "ChannelStatus", "Prepared", "Refusal", "Resume",
           "RunError", "Runner", "SetpointRefused", "TestOutcome", "TestRequest", "prepare"]
