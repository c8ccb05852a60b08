"""The option registry and the resolved configuration of a run (``rsxai.toml``)."""

from rsxai.config.commands import CLASSIFY_OPTIONS, EXPLAIN_KEYS, STATS_OPTIONS
from rsxai.config.option import STAGES, Option
from rsxai.config.options import OPTIONS
from rsxai.config.resolve import SECTIONS, Config, Section, load_config_file, resolve_config

__all__ = [
    "CLASSIFY_OPTIONS",
    "EXPLAIN_KEYS",
    "OPTIONS",
    "SECTIONS",
    "STAGES",
    "STATS_OPTIONS",
    "Config",
    "Option",
    "Section",
    "load_config_file",
    "resolve_config",
]
