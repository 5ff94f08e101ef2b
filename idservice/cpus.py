"""How many CPUs this process can use: its affinity, capped by a cgroup CPU quota.

A container limited to 2 CPUs (`resources.limits.cpu: "2"`, `docker run --cpus 2`) still sees
every CPU of the node in its affinity mask; the limit is a quota of CPU time per period in its
cgroup. Sizing threads or processes by the affinity alone would oversubscribe the quota, and the
kernel would throttle the whole container. Standard library only; no I/O at import.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

# Where the cgroup filesystem is mounted; inside a container (its own cgroup namespace) its
# root is the container's cgroup.
CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 mounts the cpu controller under one of these names (alone or with cpuacct).
_V1_CPU_DIRECTORIES = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def affinity_cpus() -> int:
    """The CPUs this process may run on (a cpuset in a container), not the host's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_cpus(quota: int, period: int) -> int | None:
    """CPUs a quota of `quota` µs per `period` µs amounts to, rounded up; None when unlimited."""
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def cgroup_v2_cpus(cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """`cpu.max` ("<quota> <period>", or "max <period>" when unlimited); None without a quota."""
    text = _read(cgroup_root / "cpu.max")
    if text is None:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        return _quota_cpus(int(parts[0]), int(parts[1]))
    except ValueError:
        return None


def cgroup_v1_cpus(cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """`cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: unlimited); None without a quota."""
    for name in _V1_CPU_DIRECTORIES:
        directory = cgroup_root / name
        quota = _read(directory / "cpu.cfs_quota_us")
        period = _read(directory / "cpu.cfs_period_us")
        if quota is None or period is None:
            continue
        try:
            return _quota_cpus(int(quota), int(period))
        except ValueError:
            return None
    return None


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """min(the affinity's CPUs, the cgroup v2 quota, the cgroup v1 quota), at least 1.

    Quotas are rounded up (1.5 CPUs count as 2); a missing or unreadable file is no limit.
    """
    limits = [affinity_cpus(), cgroup_v2_cpus(cgroup_root), cgroup_v1_cpus(cgroup_root)]
    return max(1, min(limit for limit in limits if limit is not None))
