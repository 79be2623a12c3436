"""Switchyard: one OpenAI-compatible endpoint in front of many model providers."""

from switchyard._version import __version__
from switchyard.config import Config, default_config, load_config
from switchyard.errors import (
    ConfigError,
    InvalidRequestError,
    ModelNotFoundError,
    SwitchyardError,
    UpstreamError,
)
from switchyard.server.app import create_app

__all__ = [
    "Config",
    "ConfigError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "SwitchyardError",
    "UpstreamError",
    "__version__",
    "create_app",
    "default_config",
    "load_config",
]
