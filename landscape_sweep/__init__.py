"""landscape_sweep: how depth, width and flatness-seeking optimizers shape the loss landscape."""

__version__ = "0.1.0"
