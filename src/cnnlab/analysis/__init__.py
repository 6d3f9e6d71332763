"""The analyzer: per-layer shapes, parameters, MACs, FLOPs, memory and receptive fields of any model."""

from cnnlab.analysis.api import analyze, resolve_model, smallest_working_size, total_macs
from cnnlab.analysis.report import Report, Row

__all__ = ["Report", "Row", "analyze", "resolve_model", "smallest_working_size", "total_macs"]
