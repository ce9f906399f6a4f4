import os

import pytest
import torch

# The Triton kernels run on the CPU interpreter where there is no GPU; this must be set before any kernel
# module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# one thread: the suite's models are tiny, and on a small, busy machine a second thread costs more than it gives
torch.set_num_threads(1)


@pytest.fixture
def in_process(monkeypatch):
    """A sweep's groups trained by threads of this process instead of spawned workers: no interpreter starts, so
    a deadline of a second is spent training. A worker sets torch's threads as a spawned one does; restored."""
    from concurrent.futures import ThreadPoolExecutor

    import replicate.training.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "_executor", lambda kind, workers, out, profile: ThreadPoolExecutor(workers))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pausing_clock(monkeypatch):
    """The trainer's pause clock made independent of the machine's speed: every second look at it is past any
    deadline, so a group with a deadline pauses at the first 16-step boundary after the one it started or resumed
    at (on a fast machine a tiny group would otherwise finish before a sub-second deadline and never pause)."""
    import time as clock

    import replicate.training.train as train_module

    class Clock:
        looks = 0
        perf_counter = staticmethod(clock.perf_counter)
        monotonic = staticmethod(clock.monotonic)

        @classmethod
        def time(cls) -> float:
            cls.looks += 1
            return clock.time() + (1e6 if cls.looks % 2 == 0 else 0.0)

    monkeypatch.setattr(train_module, "time", Clock)
