"""jaxmm: multimodal learning when modalities compete, overlap, or only work together (JAX/Flax/optax)."""

__version__ = "0.1.0"
