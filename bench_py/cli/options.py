"""What several verbs share: a configuration file and profile, extra variables."""

from __future__ import annotations

from typing import Any

import click


def config_overrides(config_file: str | None, profile: str | None) -> dict[str, Any] | None:
    import yaml

    overrides: dict[str, Any] = {}
    if config_file:
        with open(config_file, encoding="utf-8") as handle:
            overrides = yaml.safe_load(handle) or {}
        if not isinstance(overrides, dict):
            raise click.BadParameter("the file must hold a mapping of configuration keys", param_hint="--config")
    if profile:
        overrides["profile"] = profile
    return overrides or None


def extra_variables(pairs: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--var")
        out[key] = yaml.safe_load(value)
    return out
