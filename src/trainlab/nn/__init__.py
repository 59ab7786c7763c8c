"""Layers and model builders."""
from trainlab.nn.models import CNN, MLP, Block, conv_output_size

__all__ = ["CNN", "MLP", "Block", "conv_output_size"]
