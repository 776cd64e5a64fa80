import gc
import threading

import pytest


@pytest.fixture(autouse=True)
def no_sampler_left_running():
    """Every test must leave no dlprof sampler thread behind (it would skew later tests)."""
    yield
    gc.collect()  # iterators kept alive by exception tracebacks close their epoch here
    alive = [t for t in threading.enumerate() if t.name == "dlprof-sampler"]
    assert not alive, f"{len(alive)} dlprof-sampler thread(s) still running"
