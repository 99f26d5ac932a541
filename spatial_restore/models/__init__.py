"""Training models, registered in basicsr's MODEL_REGISTRY (``model_type:`` in YAML options)."""

from .._basicsr import register
from .restoration_model import RestorationModel

__all__ = ["RestorationModel"]

register("MODEL_REGISTRY", RestorationModel)
