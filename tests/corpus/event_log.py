"""Event-log helpers for the scale tests: run a mathforge Spark command with its event log on, then read
what it cost (`jobs/event_log.py` does the parsing: tasks, "Result Size" bytes sent to the driver, shuffle)."""

from __future__ import annotations

from pathlib import Path

from jobs.event_log import AppCost, application_logs, event_log_conf, read_app_cost

__all__ = ["AppCost", "conf_flags", "last_app_cost", "read_app_cost"]


def conf_flags(directory: Path) -> list[str]:
    """`--conf KEY=VALUE` flags for a mathforge Spark command that log its events (plain JSON) into
    `directory` (created here)."""
    directory.mkdir(parents=True, exist_ok=True)
    return [flag for kv in event_log_conf(directory) for flag in ("--conf", kv)]


def last_app_cost(directory: Path) -> AppCost:
    """The cost of the newest application that logged into `directory`."""
    return read_app_cost(application_logs(directory)[-1])
