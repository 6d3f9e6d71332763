"""Models out of cnnlab: ONNX files that describe themselves and are checked by onnxruntime when written."""

from cnnlab.export.onnx_file import Exportable, Exported, ExportFailed, export_onnx, write

__all__ = ["ExportFailed", "Exportable", "Exported", "export_onnx", "write"]
