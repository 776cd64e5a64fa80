from dlprof.probe.environment import _cgroup_cpu_quota, available_cores


def test_cgroup_quota_caps_cores(tmp_path):
    path = tmp_path / "cpu.max"
    path.write_text("150000 100000\n")
    assert _cgroup_cpu_quota(str(path)) == 1.5
    path.write_text("max 100000\n")
    assert _cgroup_cpu_quota(str(path)) is None
    assert _cgroup_cpu_quota(str(tmp_path / "missing")) is None
    assert available_cores() >= 1
