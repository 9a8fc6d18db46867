"""Training methods, registered by name: importing this package registers them all."""

from core.methods import classifier, dcgan, nogan, unet  # noqa: F401  (registration side effect)
from core.methods.base import METHODS, Method, Phase, build_method, register

__all__ = ["METHODS", "Method", "Phase", "build_method", "register"]
