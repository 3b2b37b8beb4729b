"""Configuration: experiment files read safely, validated against the schema, resolved with
the data set's defaults into a frozen `Experiment`. Imports no torch: `mgrb list` and the
launcher start from here."""

from mgrb.config.experiment import load_config, parse_config
from mgrb.config.schema import SCHEMA, Experiment

__all__ = ["SCHEMA", "Experiment", "load_config", "parse_config"]
