"""nix-eval-jobs' output format, made from evix's events (what `evix-eval-jobs` prints).

One JSON object per line, keys sorted (as nix-eval-jobs' nlohmann::json prints them), only
its fields:

    job:   attr, attrPath, name, system, drvPath, outputs {name: path | null},
           requiredSystemFeatures [unless --no-instantiate]
           [+ meta] [+ inputDrvs] [+ extraValue] [+ constituents, namedConstituents,
           globConstituents] [+ isCached, cacheStatus, neededBuilds, neededSubstitutes]
    error: attr, attrPath, error

Attrset events are internal and never printed. `attr` joins the path with "." and wraps in
double quotes, without escaping, only the elements that contain a dot (nix-eval-jobs'
attrPathJoin): `0ad` and `gtk+` stay bare, `"dotted.name"` is quoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .config import EvalConfig
from .events import EventKind, event_kind

CACHE_FIELDS = ("cacheStatus", "neededBuilds", "neededSubstitutes")  # isCached follows from cacheStatus


def job_name(attr_path: list[str] | tuple[str, ...]) -> str:
    """nix-eval-jobs' `attr` for a path."""
    return ".".join(f'"{p}"' if "." in p else p for p in attr_path)


@dataclass(frozen=True)
class JobFormat:
    """Which optional fields a run's lines have (from its command line)."""

    meta: bool = False
    show_input_drvs: bool = False
    extra_value: bool = False
    constituents: bool = False
    cache_status: bool = False
    instantiate: bool = True

    @classmethod
    def of(cls, config: EvalConfig) -> JobFormat:
        return cls(config.meta, config.show_input_drvs, config.apply is not None, config.constituents,
                   config.check_cache_status, not config.no_instantiate)

    def job(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The nix-eval-jobs object for one evix event; None for an attrset (not printed)."""
        kind = event_kind(event)
        if kind == EventKind.ATTRSET:
            return None
        path = event["attrPath"]
        if kind == EventKind.ERROR:
            return {"attr": job_name(path), "attrPath": path, "error": event["error"]}
        job = {"attr": job_name(path), "attrPath": path, "name": event["name"], "system": event["system"],
               "drvPath": event["drvPath"], "outputs": event["outputs"]}
        if self.instantiate:
            job["requiredSystemFeatures"] = event.get("requiredSystemFeatures", [])
        if self.meta:
            job["meta"] = event.get("meta")
        if self.show_input_drvs:
            job["inputDrvs"] = event.get("inputDrvs", {})
        if self.extra_value:
            job["extraValue"] = event.get("extraValue")
        if self.constituents:
            job["constituents"] = event.get("constituents", [])
            job["namedConstituents"] = event.get("namedConstituents", [])
            job["globConstituents"] = event.get("globConstituents", False)
        if self.cache_status and "cacheStatus" in event:
            job.update((k, event[k]) for k in CACHE_FIELDS)
            job["isCached"] = event["cacheStatus"] != "notBuilt"  # deprecated in nix-eval-jobs, still read
        return job


def encode(job: dict[str, Any]) -> bytes:
    """One output line, keys sorted at every level."""
    return orjson.dumps(job, option=orjson.OPT_SORT_KEYS) + b"\n"


def path_order(job: dict[str, Any]) -> tuple[str, ...]:
    """The order of lines with one worker: ascending attrPath, element by element."""
    return tuple(job["attrPath"])
