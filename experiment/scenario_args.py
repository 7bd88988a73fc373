"""The scenario from the command line, the same flags in every tool that runs one.

    --config FILE.toml | --scenario default|loaded|tiny    the scenario (entries of [[...]] tables merge with the
                                                           defaults' by name)
    --set section.field=value                              override one field, repeatable (jaxsim.config.set_fields)
    --print-config                                         print the effective config (units, ranges) and exit

``scenario_from_args`` raises :class:`jaxsim.fields.ConfigError` naming the flag, before any compute.
"""

from __future__ import annotations

import argparse

from jaxsim.config import SCENARIOS, SimConfig, config_toml, load_config, scenario_path, set_fields
from jaxsim.fields import ConfigError


def add_scenario_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--config", help="scenario TOML; its [[hardware]], [[models]], [[actions]] and "
                    "[[traffic.task_types]] entries merge with the defaults' by name (default: DESIGN.md's)")
    ap.add_argument("--scenario", help=f"a named scenario preset instead of --config: {', '.join(SCENARIOS)} "
                    "(loaded: the slot's tasks compete for the servers; tiny: a first try in under a minute)")
    ap.add_argument("--set", dest="set_fields", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override one config field, e.g. episode.horizon=20, topology.users_per_cell=4, "
                    "actions.edge.hardware=L4; repeatable; checked as the TOML would be")
    ap.add_argument("--print-config", action="store_true",
                    help="print the effective config as TOML (each field's unit and allowed range) and exit")


def scenario_from_args(args: argparse.Namespace) -> SimConfig:
    """The validated config the flags name."""
    if getattr(args, "scenario", None) is not None and args.config is not None:
        raise ConfigError("--scenario and --config: give one of them")
    cfg = load_config(args.config if getattr(args, "scenario", None) is None else scenario_path(args.scenario))
    return set_fields(cfg, args.set_fields) if args.set_fields else cfg


def print_config(cfg: SimConfig) -> None:
    print(config_toml(cfg), end="")
