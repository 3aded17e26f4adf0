"""Physical core count: llama.cpp decodes fastest with one thread per physical core."""

from __future__ import annotations

import os
import subprocess
import sys


def default_threads() -> int:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    physical = _physical_cores()
    return max(1, min(physical, usable) if physical else usable)


def _physical_cores() -> int | None:
    if sys.platform.startswith("linux"):
        try:
            text = open("/proc/cpuinfo", encoding="utf-8").read()
        except OSError:
            return None
        cores, phys = set(), "0"
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                phys = value.strip()
            elif key == "core id":
                cores.add((phys, value.strip()))
        return len(cores) or None
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True)
            return int(out.stdout.strip())
        except (OSError, ValueError):
            return None
    return None
