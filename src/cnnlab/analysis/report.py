"""The analyzer's result: one Row per module call and the model's totals, rendered as text, Markdown, CSV or
JSON (a stable schema with units in the key names)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SCHEMA = "cnnlab.analysis/1"


@dataclass
class Row:
    """One call of one module. Figures are inclusive of the modules it calls.

    `params` counts the parameters first used in this call (a shared or tied parameter is counted at its first
    use only), so that over the layers of a table they sum to the model's parameters. `activation_bytes` is the
    size of the call's output (the lecture's "memory"). `receptive_field` and `jump` are in input pixels (the
    largest over spatial axes), None where the output is not a spatial map. `own` marks the pseudo-row that
    holds the ops a container runs itself (e.g. a functional `F.conv2d` or a residual add) in a table.
    """

    name: str
    kind: str
    depth: int
    call: int = 1
    calls: int = 1
    leaf: bool = True
    own: bool = False
    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    params: int = 0
    macs: int = 0
    flops: int = 0
    activation_bytes: int = 0
    receptive_field: int | float | None = None
    jump: int | float | None = None
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    groups: int | None = None
    # the ops this call runs itself (not in a sub-module): what an `own` pseudo-row shows
    self_params: int = 0
    self_macs: int = 0
    self_flops: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("input_shape", "output_shape", "kernel", "stride", "padding", "dilation"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d


@dataclass
class Report:
    """What `analyze` measured. Units are in the names; all memory figures are bytes.

    - `total_params`: every parameter of the model once (shared and tied ones once), used or not.
    - `total_macs`: conv/linear/matmul multiply-accumulates, bias excluded; `flops`: everything, see formulas.py.
    - `total_activation_bytes`: every tensor a forward pass allocates (in-place results and views are not new).
    - `peak_activation_bytes`: the most activation bytes alive at once in an inference forward pass, input and
      output included, weights excluded (tensor lifetimes as Python frees them).
    - `training_bytes` = `saved_activation_bytes` (tensors autograd keeps for backward, weights excluded) +
      `param_bytes` + `buffer_bytes` + `grad_bytes` (one per trainable parameter) + `optimizer_state_bytes`
      (SGD with momentum: one copy of the trainable parameters; Adam/AdamW: two; plain SGD: none). Workspace
      of the kernels and the allocator's fragmentation are not included.
    """

    model: str
    input_shape: tuple[int, ...]
    batch_size: int
    dtype: str
    mode: str
    rows: list[Row]
    total_params: int
    trainable_params: int
    total_macs: int
    flops: int
    total_activation_bytes: int
    peak_activation_bytes: int
    param_bytes: int
    buffer_bytes: int
    grad_bytes: int
    optimizer: str
    optimizer_state_bytes: int
    receptive_field: int | float | None
    jump: int | float | None
    global_context: bool
    unsupported: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    depth: int | None = None
    # fp32 master copies of the trainable weights, when the report is at a narrower format (precision.memory)
    master_bytes: int = 0
    # Which figures are at that format and which stay fp32, one line under the totals (precision.memory)
    memory_note: str = ""
    # What autograd saves for backward, or the function that measures it (a second forward, run when first
    # asked for): see `saved_activation_bytes`.
    saved_bytes: int | Callable[[], int] = field(default=0, repr=False, compare=False)

    @property
    def saved_activation_bytes(self) -> int:
        """Bytes of the activations autograd saves for backward (weights excluded), measured on first use."""
        if callable(self.saved_bytes):
            self.saved_bytes = int(self.saved_bytes())
        return self.saved_bytes

    @property
    def training_bytes(self) -> int:
        """Saved activations + params + buffers + grads + optimizer state (see the class docstring)."""
        return (
            self.saved_activation_bytes
            + self.param_bytes
            + self.buffer_bytes
            + self.grad_bytes
            + self.optimizer_state_bytes
            + self.master_bytes
        )

    # ---- tables ----

    def layers(self, depth: int | None = None) -> list[Row]:
        """The rows of a table: calls at `depth` (None: the innermost), plus shallower leaves, plus an `own`
        row for every shallower container that runs costed ops itself. Their MACs sum to `total_macs`."""
        depth = self.depth if depth is None else depth
        limit = float("inf") if depth is None else depth
        out: list[Row] = []
        for r in self.rows:
            if r.depth > limit:
                continue
            if r.leaf or r.depth == limit:
                out.append(r)
            elif r.self_macs or r.self_params or r.self_flops:
                out.append(
                    dataclasses.replace(
                        r,
                        kind=f"{r.kind} (own ops)",
                        own=True,
                        params=r.self_params,
                        macs=r.self_macs,
                        flops=r.self_flops,
                        kernel=None,
                        stride=None,
                        padding=None,
                        dilation=None,
                        groups=None,
                    )
                )
        return out

    def _table(self, depth: int | None) -> tuple[list[str], list[list[str]]]:
        head = ["layer", "kind", "output (CxHxW)", "memory KB", "params", "MACs", "RF"]
        body = []
        for r in self.layers(depth):
            name = r.name or self.model
            if r.calls > 1:
                name += f" [{r.call}/{r.calls}]"
            out = "x".join(map(str, r.output_shape[1:])) if r.output_shape else "-"
            kb = r.activation_bytes / 1024
            body.append(
                [
                    "  " * max(0, r.depth - 1) + name if depth is not None else name,
                    r.kind,
                    out or "scalar",
                    f"{kb:,.2f}",
                    f"{r.params:,}",
                    f"{r.macs:,}",
                    "" if r.receptive_field is None else str(r.receptive_field),
                ]
            )
        return head, body

    def _summary(self) -> list[str]:
        mb = 1024**2
        lines = [
            f"params: {self.total_params:,} ({self.param_bytes / mb:,.2f} MB)",
            f"MACs: {self.total_macs:,} ({self.total_macs / 1e9:.3f} G); FLOPs: {self.flops:,}",
            f"activations: {self.total_activation_bytes / mb:,.2f} MB written, "
            f"peak {self.peak_activation_bytes / mb:,.2f} MB live (inference)",
            f"training estimate: {self.training_bytes / mb:,.2f} MB (saved activations "
            f"{self.saved_activation_bytes / mb:,.2f} + params/buffers "
            f"{(self.param_bytes + self.buffer_bytes) / mb:,.2f}"
            f" + grads {self.grad_bytes / mb:,.2f} + {self.optimizer} state {self.optimizer_state_bytes / mb:,.2f}"
            + (f" + fp32 master weights {self.master_bytes / mb:,.2f}" if self.master_bytes else "")
            + ")",
        ]
        if self.memory_note:
            lines.append(self.memory_note)
        if self.receptive_field is not None:
            lines.append(
                f"receptive field of the last feature map: {self.receptive_field} px (jump {self.jump})"
                + (" + global context" if self.global_context else "")
            )
        if self.unsupported:
            ops = ", ".join(f"{k} x{v}" for k, v in sorted(self.unsupported.items()))
            lines.append(f"ops without a cost formula (not counted): {ops}")
        lines += [f"warning: {w}" for w in self.warnings]
        return lines

    def _title(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return f"{self.model}: input {shape} ({self.dtype}, {self.mode} mode)"

    def to_text(self, depth: int | None = None) -> str:
        """The lecture's table (layer, output CxHxW, memory KB, params, MACs) and the totals."""
        head, body = self._table(depth)
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        left = {0, 1, 2}

        def fmt(cells: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        lines = [self._title(), fmt(head), fmt(["-" * w for w in widths])]
        lines += [fmt(row) for row in body]
        lines.append(fmt(["-" * w for w in widths]))
        return "\n".join(lines + self._summary()) + "\n"

    def to_markdown(self, depth: int | None = None) -> str:
        head, body = self._table(depth)
        lines = [f"**{self._title()}**", "", "| " + " | ".join(head) + " |"]
        lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|")
        lines += ["| " + " | ".join(c.strip() or " " for c in row) + " |" for row in body]
        lines.append("")
        lines += [f"- {s}" for s in self._summary()]
        return "\n".join(lines) + "\n"

    def to_csv(self, depth: int | None = None) -> str:
        """One line per table row, machine units (bytes, MACs)."""
        cols = [f.name for f in dataclasses.fields(Row)]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in self.layers(depth):
            d = r.to_dict()
            w.writerow(["x".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v) for v in d.values()])
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "model": self.model,
            "input_shape": list(self.input_shape),
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "mode": self.mode,
            "totals": {
                "params": self.total_params,
                "trainable_params": self.trainable_params,
                "macs": self.total_macs,
                "flops": self.flops,
                "activation_bytes": self.total_activation_bytes,
                "peak_activation_bytes": self.peak_activation_bytes,
                "saved_activation_bytes": self.saved_activation_bytes,
                "param_bytes": self.param_bytes,
                "buffer_bytes": self.buffer_bytes,
                "grad_bytes": self.grad_bytes,
                "optimizer": self.optimizer,
                "optimizer_state_bytes": self.optimizer_state_bytes,
                "master_bytes": self.master_bytes,
                "training_bytes": self.training_bytes,
            },
            "receptive_field_px": self.receptive_field,
            "jump_px": self.jump,
            "global_context": self.global_context,
            "unsupported": dict(sorted(self.unsupported.items())),
            "warnings": list(self.warnings),
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)
