"""Stopping a run cleanly on SIGTERM (a preempted VM, SLURM's notice) or SIGINT (Ctrl-C).

The trainer asks `agreed(step)` after each step; every process gets the same answer at the same
step, so all of them checkpoint there together and exit.
"""

from __future__ import annotations

import logging
import signal

import jax
import numpy as np
from jax.experimental import multihost_utils


class Preemption:
    """SIGTERM or SIGINT (Ctrl-C) sets a flag; hosts agree on it at the same step (a tiny
    all-gather), checkpoint there and exit cleanly. A second SIGINT kills at once (the default
    action), for when the checkpoint is not wanted or the step hangs."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, every: int):
        self.requested = False
        self.name = ""  # of the first signal received, for the exit message
        self.every = max(int(every), 1)
        self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}

    def _handler(self, signum, frame):
        if not self.requested:
            self.requested, self.name = True, signal.Signals(signum).name
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the next Ctrl-C kills
            logging.warning("SIGINT received: checkpointing at the next check; Ctrl-C again "
                            "to kill without it")

    def agreed(self, step: int) -> bool:
        if jax.process_count() == 1:
            return self.requested  # nothing to agree on: check every step, no collective
        if step % self.every:
            return False
        flags_all = multihost_utils.process_allgather(np.int32(self.requested))
        return bool(np.any(flags_all))

    def restore(self):
        for s, previous in self._previous.items():
            if previous is not None:  # None: a handler not installed from Python
                signal.signal(s, previous)
