"""Configuration: experiment files read safely, validated against the schema, resolved with
the data set's defaults. Imports no torch: `mgrb list` and the launcher start from here."""

from mgrb.config.experiment import NUM_CLASSES, SCHEMA, load_config, parse_config

__all__ = ["NUM_CLASSES", "SCHEMA", "load_config", "parse_config"]
