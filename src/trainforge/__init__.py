"""trainforge: from raw data to a deployed, monitored model with one config."""

__version__ = "0.1.0"
