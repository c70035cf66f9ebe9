"""Describe the machine and software a benchmark ran on."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib import metadata

PACKAGES = (
    "Django", "channels", "channels-redis", "redis", "daphne", "Twisted", "uvicorn", "uvloop",
    "httptools", "psycopg", "psycopg-pool", "asgiref", "msgpack", "websockets",
    "starlette",
)  # fmt: skip


def describe(*, redis_version: str | None, postgresql_version: str | None) -> dict:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(_meminfo_kb("MemTotal") / 2**20, 1),
        "swap_gib": round(_meminfo_kb("SwapTotal") / 2**20, 1),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "postgresql": postgresql_version,
        "redis": redis_version,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def summary_line(machine: dict) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM "
        f"(swap {machine['swap_gib']} GiB), {machine['os']}, kernel {machine['kernel']}; "
        f"Python {machine['python']}; PostgreSQL {machine['postgresql']}, "
        f"Redis {machine['redis']}; {packages}. Load average at start: "
        f"{' / '.join(map(str, machine['load_average_at_start']))}; machine "
        f"{machine.get('busy_percent_at_start', '?')}% busy just before the run."
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo_kb(field: str) -> int:
    with open("/proc/meminfo") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _os_name() -> str:
    try:
        with open("/etc/os-release") as file:
            for line in file:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
