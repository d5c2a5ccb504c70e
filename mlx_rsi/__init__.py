"""mlx-rsi: fine-tune your own model from your own assistant work sessions."""

__version__ = "0.1.0"
