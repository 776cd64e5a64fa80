import os
import subprocess
import sys
import time

import pytest

from dlprof.analysis.judgements import shared_cores
from dlprof.probe.environment import OthersOnTheCores, _cgroup_cpu_quota, available_cores

SPIN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass"


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


@pytest.mark.solo
def test_other_processes_cpu_is_counted_and_the_scans_own_is_not():
    """A process outside this one's tree (its parent gone: init adopts it) spinning is counted;
    our own child spinning as long is not (a trial and its workers). Both are measured while
    they spin. Alone (solo): the other tests' processes are other processes too."""
    own = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        time.sleep(0.3)  # the interpreter started: from here it spins
        window = OthersOnTheCores()
        time.sleep(1.0)
        ours, _ = window.stop()
    finally:
        own.wait(timeout=60)
    # the middle process exits at once; the spinner, its child, is no descendant of ours
    subprocess.run([sys.executable, "-c", f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {SPIN!r}])"],
                   timeout=60, check=True)
    time.sleep(0.3)
    window = OthersOnTheCores()
    time.sleep(1.0)
    others, _ = window.stop()
    time.sleep(1.0)  # the stranger ends by itself (1 s of CPU)
    assert ours < 0.2, ours  # our own child's CPU is not another process's
    assert others > 0.5, others  # a core's worth, less what the machine's speed takes from it


def test_a_busy_machine_is_warned_about_above_the_smallest_gain_the_scan_acts_on():
    assert shared_cores(0.005, 0.001, 2) is None  # an idle machine of ours
    assert shared_cores(0.05, 0.0, 2) is None  # 2.5% of the cores: under MIN_GAIN
    said = shared_cores(0.78, 0.0, 2)
    assert said.startswith("other processes used 0.78 of the 2 cores on average") and "steal" not in said
    assert shared_cores(0.0, 0.2, 2).startswith("the hypervisor gave 0.20 of the 2 cores to other machines")
    assert shared_cores(None, None, 2) is None
