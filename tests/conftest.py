import gc

import psutil
import pytest


def sampler_processes() -> list[psutil.Process]:
    """dlprof system-sampler processes started by this test process."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "dlprof.probe.system" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(autouse=True)
def no_sampler_left_running():
    """Every test must leave no dlprof sampler process behind (it would skew later tests)."""
    yield
    gc.collect()  # profilers kept alive by exception tracebacks stop their sampler here
    alive = sampler_processes()
    assert not alive, f"{len(alive)} dlprof sampler process(es) still running"
