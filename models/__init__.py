"""Networks for width search; knows nothing about search, MLflow or Ray."""

from models.convnet import REFERENCE_HIDDEN, REFERENCE_WIDTHS, ConvNet, default_pool_after, format_widths, parse_widths
from models.init import apply_max_norm_, chi_mean, init_layer, init_weight_, norm_aware_std, unit_norms

__all__ = [
    "REFERENCE_HIDDEN",
    "REFERENCE_WIDTHS",
    "ConvNet",
    "apply_max_norm_",
    "chi_mean",
    "default_pool_after",
    "format_widths",
    "init_layer",
    "init_weight_",
    "norm_aware_std",
    "parse_widths",
    "unit_norms",
]
