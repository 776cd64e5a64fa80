"""A real 2-rank gloo job under torchrun on CPU: records gathered over the job's own process
group, merged on rank 0, the straggler named when one rank's dataset is slowed."""
import json
import os
import subprocess
import sys

import pytest

from dlprof.analysis.ranks import analyse_ranks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _job(tmp_path, slow_rank=None):
    env = {**os.environ, "DLPROF_OUT": str(tmp_path)}
    env.pop("DLPROF_SLOW_RANK", None)
    if slow_rank is not None:
        env["DLPROF_SLOW_RANK"] = str(slow_rank)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "recipes/ddp_train.py"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = json.loads((tmp_path / "results.json").read_text())
    return merged, (tmp_path / "report.md").read_text()


@pytest.mark.timeout(300)
def test_slowed_rank_is_named_the_straggler(tmp_path):
    merged, report = _job(tmp_path, slow_rank=1)
    assert merged["schema"] == "dlprof.distributed" and merged["world_size"] == 2
    assert [r["facts"]["rank"] for r in merged["ranks"]] == [0, 1]
    assert all(r["facts"]["sampler"].endswith("DistributedSampler)") for r in merged["ranks"])
    assert "BatchSampler(DistributedSampler)" in report
    analysis = analyse_ranks(merged)
    assert analysis.stragglers == [1]
    waits = dict(zip(analysis.table["rank"], analysis.table["wait_ms"]))
    assert waits[1] > waits[0] + 30  # 32 samples x 2 ms more a batch, less what the step hides
    assert analysis.lost_ms_per_step > 30
    assert "**Stragglers:** rank 1" in report and "rank 0 (straggler)" not in report


@pytest.mark.timeout(300)
def test_equal_ranks_flag_no_straggler(tmp_path):
    merged, report = _job(tmp_path)
    assert analyse_ranks(merged).stragglers == []
    assert "No straggler" in report
