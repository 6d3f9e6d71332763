"""cnnlab: the classic convolutional networks, faithful to their papers; build, measure, train and explain them."""

from cnnlab import convlab, data
from cnnlab.analysis import analyze
from cnnlab.registry import create_model, list_models, model_info

__all__ = ["analyze", "convlab", "create_model", "data", "list_models", "model_info"]
__version__ = "0.1.0"
