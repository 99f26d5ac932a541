"""The paper's matrix view of the SASF layer (y = M·u) and effective receptive fields, as numbers and figures.

Figures need matplotlib (``pip install -e .[analysis]``); ``python -m spatial_restore.analysis --help``.
"""

from .erf import AnalysisError, classifier_stages, effective_receptive_field, load_classifier, load_denoiser, mass_radius
from .matrix import (
    core_output,
    autograd_matrix,
    core_inputs,
    layer_input,
    mamba_decay,
    random_layer,
    sasf_layers,
    sasf_matrix,
    stencil_matrix,
    stencil_sources,
    without_fusion,
)

__all__ = [
    "AnalysisError",
    "core_output",
    "autograd_matrix",
    "classifier_stages",
    "core_inputs",
    "effective_receptive_field",
    "layer_input",
    "load_classifier",
    "load_denoiser",
    "mamba_decay",
    "mass_radius",
    "random_layer",
    "sasf_layers",
    "sasf_matrix",
    "stencil_matrix",
    "stencil_sources",
    "without_fusion",
]
