"""tensor: nested-list instances stacked into one tensor for any nn.Module or TorchScript model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from . import v2
from .base import BadInstance, BaseHandler, InvalidRequest
from .torch_model import load_torch_model

OUTPUTS = ("list", "argmax")


class TensorHandler(BaseHandler[torch.Tensor, torch.Tensor]):
    """An instance is one sample as a nested list (or ``{"data": nested list}``) of ``options.dtype`` (default
    float32), of ``options.shape`` when given. The samples of all requests with the same shape go through the
    model as one batch; the instances of one request must share a shape. A prediction is the model's output row
    as a list, or its argmax (``options.output: argmax``; the class name when class_names are given).

    A v2 input is the batch itself: shape [N, *options.shape] (any sample shape without it), of a numeric datatype
    that converts to ``options.dtype`` without losing its kind (floats take any number, integers integers, bool
    BOOL); it answers the output rows with the model's dtype and shape.
    """

    v2_expects = "one sample per row"

    def load(self, model_path: Path | None) -> None:
        model_file = self.config.get("model_file")
        self.model = load_torch_model(
            self.require_model(model_path),
            self.model_dir / model_file if model_file else None,
            self.config.get("model_class"),
            self.device,
        )
        dtype = getattr(torch, str(self.options.get("dtype") or "float32"), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"options.dtype {self.options.get('dtype')!r} is not a torch dtype (e.g. float32, int64)")
        self.dtype = dtype
        shape = self.options.get("shape")
        self.shape = tuple(int(n) for n in shape) if shape is not None else None
        self.served_shapes: set[tuple[int, ...]] = set()  # sample shapes a forward pass has taken
        self.output = self.options.get("output") or "list"
        if self.output not in OUTPUTS:
            raise ValueError(f"options.output must be one of {OUTPUTS}, not {self.output!r}")

    def preprocess_instance(self, instance: Any) -> torch.Tensor:
        if isinstance(instance, dict) and "data" in instance:
            instance = instance["data"]
        if not isinstance(instance, list):
            kind = type(instance).__name__
            raise BadInstance(f'expected a nested list of numbers or {{"data": nested list}}, got {kind}')
        try:
            tensor = torch.tensor(instance, dtype=self.dtype)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise BadInstance(f"not a rectangular nested list of numbers: {exc}") from exc
        if self.shape is not None and tuple(tensor.shape) != self.shape:
            raise BadInstance(f"expected shape {list(self.shape)}, got {list(tensor.shape)}")
        return tensor

    def v2_items(self, tensor: v2.Tensor) -> list[torch.Tensor]:
        # Straight from the flat data to one tensor: no nested lists in between, and the shape checked as a whole.
        if self.dtype == torch.bool:
            accepted: tuple[str, ...] = ("BOOL",)
        elif self.dtype.is_floating_point or self.dtype.is_complex:
            accepted = v2.NUMERIC
        else:
            accepted = v2.INTEGERS
        if tensor.datatype not in accepted:
            raise InvalidRequest(
                f"datatype {tensor.datatype}, expected {' or '.join(accepted)} (the model takes {self.dtype})"
            )
        shape = tensor.shape
        if self.shape is not None and tuple(shape[1:]) != self.shape:
            raise InvalidRequest(f"shape {shape}, expected {[-1, *self.shape]} (N samples of {list(self.shape)})")
        if len(shape) < 2:
            raise InvalidRequest(f"shape {shape}, expected [N, ...] ({self.v2_expects})")
        if shape[0] == 0:
            raise InvalidRequest(f"shape {shape} holds no instances")
        try:
            batch = torch.tensor(tensor.data, dtype=self.dtype).reshape(shape)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise BadInstance(f"cannot make a {self.dtype} tensor of the data: {exc}") from exc
        return list(batch.unbind(0))

    def check_request(self, items: list[torch.Tensor]) -> None:
        shapes = {tuple(item.shape) for item in items}
        if len(shapes) > 1:
            raise InvalidRequest(f"the instances differ in shape: {sorted(shapes)}; one request is one batch")

    def pass_key(self, item: torch.Tensor) -> tuple[int, ...]:
        # Requests from different clients may meet in one server-side batch with different shapes: one forward
        # pass per shape (usually exactly one), so a wrongly shaped request cannot fail the others.
        return tuple(item.shape)

    def inference(self, items: list[torch.Tensor]) -> torch.Tensor:
        shape = tuple(items[0].shape)
        try:
            result = self.model(torch.stack(items).to(self.device))
        except RuntimeError as exc:
            # Without options.shape the model alone knows what a sample is. Once it has served another shape, a
            # pass of this shape failing is the client's instances, not the model: a 400 that says so (the first
            # line of torch's error: TorchScript appends its own traceback to the message).
            # Before any pass has succeeded, torch's words decide: a shape its layers refuse (a matmul, a conv's
            # channels, a size mismatch) is the instances' shape too.
            served = sorted(self.served_shapes)
            if self.shape is None and served and shape not in served:
                raise InvalidRequest(
                    f"instances of shape {list(shape)} do not fit the model, which has served shape(s) "
                    f"{[list(s) for s in served]} ({_first_line(exc)}); set options.shape in mar.yaml to have "
                    "them checked up front", 400,
                ) from exc
            if self.shape is None and not served and _SHAPE_REFUSED.search(_first_line(exc)):
                raise InvalidRequest(
                    f"instances of shape {list(shape)} do not fit the model ({_first_line(exc)}); set "
                    "options.shape in mar.yaml to have them checked up front", 400,
                ) from exc
            raise
        self.served_shapes.add(shape)
        if not isinstance(result, torch.Tensor):
            raise TypeError(f"the model returned {type(result).__name__}; the tensor task needs a Tensor")
        if result.dim() == 0 or result.shape[0] != len(items):
            raise ValueError(f"the model returned shape {list(result.shape)} for a batch of {len(items)}")
        return result.cpu()

    def postprocess(self, outputs: torch.Tensor) -> list[Any]:
        if self.output == "list":
            return list(outputs)  # rows as tensors: v2 answers their dtype
        best = outputs.reshape(len(outputs), -1).argmax(dim=1).tolist()
        return [self.class_names[i] for i in best] if self.class_names else best


# torch's messages for an input whose shape a layer cannot take (matmul, linear, conv, cat, view, batch norm)
_SHAPE_REFUSED = re.compile(
    r"shapes cannot be multiplied|size mismatch|must match the size|Given groups=|to have \d+ channels"
    r"|Expected \d+D|expected \d+D|input of size|is invalid for input of size|Expected input batch_size"
)


def _first_line(exc: BaseException) -> str:
    """torch's own words: the last line of the message (TorchScript puts its traceback before them)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
