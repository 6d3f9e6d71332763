"""Models out of cnnlab: ONNX files that describe themselves and are checked by onnxruntime when written."""

from cnnlab.export.onnx_file import (
    RANDOM_WEIGHTS,
    Exportable,
    Exported,
    ExportFailed,
    batchnorm_from_noise,
    export_onnx,
    write,
)

__all__ = [
    "RANDOM_WEIGHTS",
    "ExportFailed",
    "Exportable",
    "Exported",
    "batchnorm_from_noise",
    "export_onnx",
    "write",
]
