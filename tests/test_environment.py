import os
import subprocess
import sys

from dlprof.probe.environment import _cgroup_cpu_quota, available_cores


def test_cgroup_quota_caps_cores(tmp_path):
    path = tmp_path / "cpu.max"
    path.write_text("150000 100000\n")
    assert _cgroup_cpu_quota(str(path)) == 1.5
    path.write_text("max 100000\n")
    assert _cgroup_cpu_quota(str(path)) is None
    assert _cgroup_cpu_quota(str(tmp_path / "missing")) is None


def test_available_cores_follow_the_affinity_and_the_quota():
    quota = _cgroup_cpu_quota()
    allowed = len(os.sched_getaffinity(0))
    expected = min(allowed, -(-quota // 1)) if quota else allowed
    assert available_cores() == max(1, int(expected))
    # a process pinned to one core (taskset -c 0, a cpuset) has one core, whatever the machine has
    pinned = subprocess.run([sys.executable, "-c", "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
                             "from dlprof.probe.environment import available_cores; print(available_cores())"],
                            capture_output=True, text=True, timeout=120)
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == "1"
