"""Training models, registered in basicsr's MODEL_REGISTRY (``model_type:`` in YAML options)."""

from .._basicsr import register
from .restoration_model import RestorationModel, tiled_forward

__all__ = ["RestorationModel", "tiled_forward"]

register("MODEL_REGISTRY", RestorationModel)
