"""lifecycled: drain machines before AWS takes them away."""

__version__ = "0.1.0"
