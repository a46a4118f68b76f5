"""Typed configuration: the schema and its loading."""

from mgfrec.config.load import ConfigError, load_config, validate, write_resolved
from mgfrec.config.schema import MGFRecConfig

__all__ = ["ConfigError", "MGFRecConfig", "load_config", "validate", "write_resolved"]
