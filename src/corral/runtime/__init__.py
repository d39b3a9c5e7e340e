"""Runtime: expert residency (load once, single-flight) and dynamic micro-batching."""

from corral.runtime.batcher import BatchStats, MicroBatcher
from corral.runtime.host import ExpertHost
from corral.runtime.roster import Roster
from corral.runtime.runtime import ExpertHandle, ExpertState, LoadListener, Runtime

__all__ = [
    "BatchStats",
    "ExpertHandle",
    "ExpertHost",
    "ExpertState",
    "LoadListener",
    "MicroBatcher",
    "Roster",
    "Runtime",
]
