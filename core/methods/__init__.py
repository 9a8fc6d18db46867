"""Training methods, registered by name: importing this package imports every module in it, so a new file
here is a new method (see ``core.methods.base.Method``)."""

import importlib
import pkgutil

from core.methods.base import (
    METHODS,
    Method,
    Phase,
    all_options,
    build_generator,
    build_method,
    get_method,
    method_label,
    method_names,
    register,
)

_FIRST = ("unet", "dcgan", "nogan", "classifier")  # the listing order of the built-in methods
for _name in sorted((m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")),
                    key=lambda n: (_FIRST.index(n) if n in _FIRST else len(_FIRST), n)):
    if _name != "base":
        importlib.import_module(f"{__name__}.{_name}")

__all__ = ["METHODS", "Method", "Phase", "all_options", "build_generator", "build_method", "get_method",
           "method_label", "method_names", "register"]
