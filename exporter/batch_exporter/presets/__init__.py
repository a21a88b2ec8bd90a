"""Presets: the runs, records and schedule sections of a well-known scheduler's own tables, generated from
a name and an id, so that nobody has to write them by hand. A preset only writes configuration: what it
generates is validated and checked (sqlcheck) exactly like the same sections written by a user, and a
section the user writes next to the preset replaces the generated one key by key.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import airflow, sqlserver_agent
from .common import Generated

PRESETS: dict[str, Callable[[Mapping[str, Any]], Generated]] = {
    "airflow": airflow.generate,
    "sqlserver-agent": sqlserver_agent.generate,
}


class PresetError(ValueError):
    """A preset that cannot be generated: unknown, or a parameter missing or wrong."""


def expand(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch's configuration with its `preset` expanded into runs, records and schedule; the user's own
    keys in those sections win over the generated ones, nested mappings key by key. A batch without a preset
    is returned as it is."""
    preset = batch.get("preset")
    if preset is None:
        return dict(batch)
    if not isinstance(preset, Mapping) or not isinstance(preset.get("name"), str):
        raise PresetError(f"preset: expected a mapping with a 'name' (one of {', '.join(PRESETS)})")
    name = preset["name"]
    if name not in PRESETS:
        raise PresetError(f"preset.name: unknown preset {name!r} (known: {', '.join(PRESETS)})")
    try:
        generated = PRESETS[name]({k: v for k, v in preset.items() if k != "name"})
    except ValueError as exc:
        raise PresetError(f"preset {name}: {exc}") from None
    out = dict(batch)
    for section, values in generated.items():
        own = batch.get(section)
        out[section] = _merged(values, own) if isinstance(own, Mapping) else values
    return out


def _merged(generated: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """`own` over `generated`, mapping by mapping: a user's `columns: {queued_at: ...}` keeps the other
    generated columns. A key set to null removes the generated one."""
    out = dict(generated)
    for key, value in own.items():
        if isinstance(value, Mapping) and isinstance(generated.get(key), Mapping):
            out[key] = _merged(generated[key], value)
        else:
            out[key] = value
    return out
