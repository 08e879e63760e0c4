"""Configuration: the TOML file, validated into typed objects; `edge check` prints its problems."""

from edge.config.loader import (
    Config,
    ConfigError,
    Problem,
    default_path,
    load_config,
    parse_text,
    transform_problem,
)

__all__ = ["Config", "ConfigError", "Problem", "default_path", "load_config", "parse_text", "transform_problem"]
