"""Import basicsr 1.4.2 on current torchvision, and register our classes in its registries.

basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, which torchvision removed; the
functions it needs live in ``torchvision.transforms.functional``. We alias the module before the
first basicsr import instead of patching site-packages.
"""

from __future__ import annotations

import importlib
import sys


def import_basicsr():
    """Import basicsr (installing the torchvision alias first); raises ImportError if it is absent."""
    if "torchvision.transforms.functional_tensor" not in sys.modules:
        import torchvision.transforms.functional as tv_functional

        sys.modules["torchvision.transforms.functional_tensor"] = tv_functional
    return importlib.import_module("basicsr")


def register(registry_name: str, obj):
    """Add ``obj`` to basicsr's ``registry_name`` (e.g. 'ARCH_REGISTRY') when basicsr is installed.

    Idempotent, so re-imports (tests, notebooks) never trip basicsr's duplicate-name assertion.
    Returns ``obj`` so it can be used as a decorator.
    """
    try:
        import_basicsr()
    except ImportError:
        return obj
    registry = getattr(importlib.import_module("basicsr.utils.registry"), registry_name)
    if obj.__name__ not in registry:
        registry.register(obj)
    return obj
