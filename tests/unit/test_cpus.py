"""The CPUs the service sizes itself by: the affinity, capped by a cgroup v2 or v1 CPU quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from idservice.config import Settings
from idservice.cpus import affinity_cpus, available_cpus, cgroup_v1_cpus, cgroup_v2_cpus

# More CPUs than any machine running the tests: the quota, not the affinity, decides.
HUGE = 10_000


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("200000 100000\n", 2),
        ("150000 100000", 2),  # 1.5 CPUs count as 2
        ("50000 100000", 1),  # half a CPU is still one
        ("100000 100000", 1),
        (f"{HUGE * 100000} 100000", HUGE),
        ("max 100000", None),
        ("", None),
        ("garbage", None),
        ("x 100000", None),
        ("0 100000", None),
    ],
)
def test_cgroup_v2_cpu_max(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    _write(tmp_path / "cpu.max", cpu_max)
    assert cgroup_v2_cpus(tmp_path) == expected


@pytest.mark.parametrize("directory", ["cpu", "cpu,cpuacct", "cpuacct,cpu"])
@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [("300000", "100000", 3), ("250000\n", "100000\n", 3), ("-1", "100000", None), ("", "1", None)],
)
def test_cgroup_v1_cfs_quota(
    tmp_path: Path, directory: str, quota: str, period: str, expected: int | None
) -> None:
    _write(tmp_path / directory / "cpu.cfs_quota_us", quota)
    _write(tmp_path / directory / "cpu.cfs_period_us", period)
    assert cgroup_v1_cpus(tmp_path) == expected


def test_no_cgroup_files_is_no_limit(tmp_path: Path) -> None:
    assert cgroup_v2_cpus(tmp_path) is None
    assert cgroup_v1_cpus(tmp_path) is None
    assert available_cpus(tmp_path) == affinity_cpus() >= 1


def test_a_v1_quota_without_its_period_is_no_limit(tmp_path: Path) -> None:
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "100000")
    assert cgroup_v1_cpus(tmp_path) is None


def test_the_quota_caps_the_affinity(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "100000 100000")
    assert available_cpus(tmp_path) == 1


def test_the_affinity_caps_a_larger_quota(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", f"{HUGE * 100000} 100000")
    assert available_cpus(tmp_path) == affinity_cpus()


def test_the_smallest_of_v1_and_v2_wins(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", f"{HUGE * 100000} 100000")
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "100000")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000")
    assert available_cpus(tmp_path) == 1


def test_the_real_default_is_at_least_one_and_at_most_the_affinity() -> None:
    assert 1 <= available_cpus() <= affinity_cpus()
    assert Settings.from_env({"IDSERVICE_PROCESSES": "auto"}).process_count == available_cpus()


def test_the_real_quota_is_followed_when_there_is_one() -> None:
    quotas = [q for q in (cgroup_v2_cpus(), cgroup_v1_cpus()) if q is not None]
    expected = min([affinity_cpus(), *quotas])
    assert available_cpus() == expected
