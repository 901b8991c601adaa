"""desktop_tl: transfer learning with pretrained PyTorch image models."""

__version__ = "0.1.0"
