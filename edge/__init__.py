"""edge-inspect: vision inspection appliance for pharmaceutical packaging lines."""

__version__ = "0.1.0"
