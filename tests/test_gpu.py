"""The pin-memory and host-to-device stages: they only exist with an accelerator."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import dlprof

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_pin_and_transfer_are_timed(num_workers):
    def profiled(side):
        data = TensorDataset(torch.randn(256, 3, side, side), torch.arange(256))
        loader = DataLoader(data, batch_size=32, num_workers=num_workers, pin_memory=True)
        prof = dlprof.profile(loader, device="cuda")
        batches = [b for b in prof]
        assert all(x.is_cuda and y.is_cuda for x, y in batches)
        assert torch.equal(torch.cat([y for _, y in batches]).cpu(), torch.arange(256))
        return prof.to_dataframe()

    small, large = profiled(16), profiled(128)  # 0.1 MiB against 6 MiB a batch
    assert (small["pin_ms"] > 0).all() and (small["transfer_ms"] > 0).all()
    # the timers measure the copies: 64x the bytes take longer to pin and to copy to the device
    assert large["pin_ms"].median() > 2 * small["pin_ms"].median()
    assert large["transfer_ms"].median() > 2 * small["transfer_ms"].median()


def test_pin_thread_cost_is_measured():
    # 6 MiB batches: pinning each one is a real copy in the pin-memory thread
    data = TensorDataset(torch.randn(512, 3, 128, 128), torch.arange(512))
    loader = DataLoader(data, batch_size=32, num_workers=2, pin_memory=True)
    prof = dlprof.profile(loader, device="cuda")
    for _ in prof:
        pass
    df = prof.to_dataframe()
    assert (df["pin_cpu_ms"] > 0).all()
    # the CPU time of one thread cannot exceed its wall time (clock granularity aside)
    assert (df["pin_cpu_ms"] <= df["pin_ms"] + 0.1).all()
    # the wait on the pin thread is part of the loop's wait for the batch
    assert (df["pin_wait_ms"] <= df["wait_ms"] + 1e-6).all()
    assert any(n.startswith("pin-memory thread:") for n in prof.result().analyse().notes)


def test_device_sync_puts_the_steps_gpu_work_in_the_step():
    """A step that queues GPU work returns at once; with device_sync the work ends before the next
    ask is timed, so the step's time holds it (and the batches are the same)."""
    weight = torch.randn(4096, 4096, device="cuda")

    def steps(device_sync):
        loader = DataLoader(TensorDataset(torch.arange(40)), batch_size=4)
        prof = dlprof.profile(loader, device_sync=device_sync)
        seen = []
        for (batch,) in prof:
            seen += batch.tolist()
            x = weight
            for _ in range(20):  # ~3 GFLOP a matmul: milliseconds of queued work
                x = x @ weight
        torch.cuda.synchronize()
        df = prof.to_dataframe()
        return seen, df["step_ms"].iloc[1:-1].median(), prof.result().run.notes

    bare_seen, bare_step, _ = steps(False)
    sync_seen, sync_step, notes = steps(True)
    assert bare_seen == sync_seen == list(range(40))
    assert sync_step > 3 * bare_step
    assert any("includes the GPU work" in n for n in notes)
