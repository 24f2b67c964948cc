from mlkube.backends.local.gpu import parse_gpu_list, visible_devices
from mlkube.backends.local.limits import Mode, _own_groups, affinity_for, detect


def test_affinity_takes_ceil_of_the_cpu_limit_and_rotates():
    assert affinity_for(1500, [0, 1, 2, 3], offset=1) == [1, 2]
    assert affinity_for(500, [0, 1, 2, 3], offset=3) == [3]
    assert affinity_for(None, [0, 1], offset=0) is None
    assert affinity_for(4000, [0, 1], offset=0) is None, "the whole machine needs no mask"


def test_own_groups_reads_v1_and_v2_lines():
    text = "4:memory:/a/b\n2:cpu,cpuacct:/\n0::/user.slice\n"
    assert _own_groups(text) == {
        "memory": "/a/b",
        "cpu": "/",
        "cpuacct": "/",
        "unified": "/user.slice",
    }


def test_detect_reports_a_mode(tmp_path):
    assert detect().mode in set(Mode)
    assert detect(root=tmp_path).mode is Mode.RLIMITS, "no cgroup files: rlimits fallback"


def test_gpu_list_and_visible_devices():
    assert parse_gpu_list("0\n1\n\n") == (0, 1)
    assert parse_gpu_list("NVIDIA-SMI has failed") == ()
    assert visible_devices((0, 2)) == "0,2"
    assert visible_devices(()) == ""
