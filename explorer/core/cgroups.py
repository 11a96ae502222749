"""How much memory this process may use: the machine's available memory and the limits of the
cgroups it runs in (a SLURM job, a systemd unit, a container). Linux only; elsewhere both are
None. Nothing here imports the explorer: :mod:`explorer.nets.memory` compares them with its estimates.
"""

from __future__ import annotations

import os

__all__ = ["PROC_SELF_CGROUP", "CGROUP_V2_ROOT", "CGROUP_V1_MEMORY_ROOT", "meminfo_available", "cgroup_free_bytes"]


def meminfo_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (what the kernel can give a new program
    without swapping), or None where there is no such file."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


#: Where the process's cgroups are listed and where the cgroup file systems are mounted: the
#: unified (v2) tree and v1's memory controller. Module-level so that tests can point them at a
#: fake tree.
PROC_SELF_CGROUP = "/proc/self/cgroup"
CGROUP_V2_ROOT = "/sys/fs/cgroup"
CGROUP_V1_MEMORY_ROOT = "/sys/fs/cgroup/memory"

#: (limit file, usage file, memory.stat key of reclaimable page cache) per cgroup version
_CGROUP_FILES = {"v2": ("memory.max", "memory.current", "inactive_file"),
                 "v1": ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}


def _read_int(path: str) -> int | None:
    """The number in a cgroup file; None when missing, unreadable, "max" or v1's "no limit"."""
    try:
        with open(path, encoding="ascii") as fh:
            raw = fh.read().strip()
    except OSError:
        return None
    if not raw.isdigit():  # "max", or empty
        return None
    value = int(raw)
    return None if value >= 2**60 else value  # v1 writes "no limit" as about 2**63


def _stat_value(path: str, key: str) -> int:
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                name, _, value = line.partition(" ")
                if name == key and value.strip().isdigit():
                    return int(value)
    except OSError:
        pass
    return 0


def _own_cgroups(proc_cgroup: str) -> dict[str, str]:
    """This process's cgroup path per version, from ``/proc/self/cgroup``: the v2 line
    ``0::/path`` and the v1 line that lists the memory controller, ``N:memory:/path`` (or
    ``N:cpu,memory:/path``)."""
    out: dict[str, str] = {}
    try:
        with open(proc_cgroup, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            out.setdefault("v2", path)
        elif "memory" in controllers.split(","):
            out["v1"] = path
    return out


def cgroup_free_bytes(proc_cgroup: str | None = None, v2_root: str | None = None,
                      v1_root: str | None = None) -> int | None:
    """Memory this process may still use under its cgroup limits, in bytes, or None when no
    cgroup limits it.

    The cgroup that applies is the process's own (a SLURM job, a systemd unit, a container),
    read from ``/proc/self/cgroup`` (v2 ``0::/path``, v1 ``N:memory:/path``). Every cgroup from
    that one up to the root of the mounted tree can set a limit (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``); each leaves its limit minus its own usage (``memory.current``,
    ``memory.usage_in_bytes``, less the reclaimable page cache ``inactive_file`` of
    ``memory.stat``), and the smallest of these wins. A path that the mounted tree does not have
    (a container that sees only its own cgroup as the root) is skipped: its ancestors that exist,
    the root at least, still count.

    Args:
        proc_cgroup: the file that lists this process's cgroups (default :data:`PROC_SELF_CGROUP`).
        v2_root, v1_root: the mount points of the unified tree and of v1's memory controller
            (defaults :data:`CGROUP_V2_ROOT`, :data:`CGROUP_V1_MEMORY_ROOT`).

    Returns:
        bytes (0 when the usage is at the limit), or None.
    """
    own = _own_cgroups(proc_cgroup or PROC_SELF_CGROUP)
    roots = {"v2": v2_root or CGROUP_V2_ROOT, "v1": v1_root or CGROUP_V1_MEMORY_ROOT}
    free: list[int] = []
    for version, root in roots.items():
        limit_name, usage_name, cache_key = _CGROUP_FILES[version]
        parts = [p for p in own.get(version, "/").split("/") if p and p not in (".", "..")]
        for depth in range(len(parts), -1, -1):  # the process's cgroup, then each ancestor
            d = os.path.join(root, *parts[:depth])
            limit = _read_int(os.path.join(d, limit_name))
            if limit is None:
                continue
            usage = _read_int(os.path.join(d, usage_name)) or 0
            usage -= min(usage, _stat_value(os.path.join(d, "memory.stat"), cache_key))
            free.append(max(0, limit - usage))
    return min(free) if free else None
