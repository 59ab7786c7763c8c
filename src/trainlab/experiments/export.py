"""Export a trained run's model as a deployable file: TorchScript or ONNX.

Both files hold the network and its weights and run without trainlab: a TorchScript file with
``torch.jit.load(path)``, an ONNX file with any ONNX runtime (``onnxruntime``, or
``onnx.reference.ReferenceEvaluator``). The exported model computes what ``load_run(...).model``
computes: the raw outputs (logits for classification), for a batch of any size (the first axis is
dynamic). ONNX export needs the optional ``onnx`` package (``pip install onnx``).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from trainlab.train.checkpoint import atomic_write_bytes

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}


class ExportError(RuntimeError):
    """A model cannot be exported in the requested format; the message says why and what to do."""


def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; allowed: {', '.join(FORMATS)}")
    return format


def onnx_available() -> bool:
    """Whether the optional ``onnx`` package (needed by ``torch.onnx.export``) is installed."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_equivalent(module: nn.Module) -> nn.Module | None:
    """The ``torch.nn`` module computing the same forward as a trainlab activation, else ``None``.

    trainlab's activations are ``torch.autograd.Function`` classes (their backward is written out),
    which neither tracer can record; their forward values equal PyTorch's, so a deployable copy
    uses PyTorch's modules. Layer norm and max-pooling are swapped for the same reason; batch norm and dropout use
    plain tensor ops in eval mode.
    """
    from trainlab.nn import activations as A

    simple = {A.Sigmoid: nn.Sigmoid, A.Tanh: nn.Tanh, A.ReLU: nn.ReLU, A.SELU: nn.SELU, A.SiLU: nn.SiLU}
    kind = type(module)
    if kind in simple:
        return simple[kind]()
    if isinstance(module, A.LogSoftmax):
        return nn.LogSoftmax(dim=module.dim)
    if isinstance(module, A.Softmax):
        return nn.Softmax(dim=module.dim)
    if isinstance(module, A.GeneralizedRectifier):  # the leaky ReLU's formula holds for any slope
        return nn.LeakyReLU(negative_slope=module.alpha)
    if isinstance(module, A.PReLU):
        out = nn.PReLU(num_parameters=module.num_parameters)
        out.weight.data.copy_(module.weight.detach())
        return out
    if isinstance(module, A.ELU):
        return nn.ELU(alpha=module.alpha)
    if isinstance(module, A.GELU):
        return nn.GELU(approximate=module.approximate)
    from trainlab.nn.normalization import LayerNorm
    from trainlab.nn.pooling import MaxPool2d

    if type(module) is MaxPool2d:  # its fast path is a Function too
        return nn.MaxPool2d(module.kernel_size, module.stride, module.padding, module.dilation,
                            return_indices=module.return_indices, ceil_mode=module.ceil_mode)
    if isinstance(module, LayerNorm):  # its fast path is trainlab's own Function or C++ operator
        out = nn.LayerNorm(module.normalized_shape, eps=module.eps, elementwise_affine=module.elementwise_affine,
                           bias=module.bias is not None)
        if module.weight is not None:
            out.weight.data.copy_(module.weight.detach())
        if module.bias is not None:
            out.bias.data.copy_(module.bias.detach())
        return out
    return None


def deployable_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode on the CPU whose activations are PyTorch's (see above)."""
    import copy

    out = copy.deepcopy(model).cpu().eval()
    for name, child in list(out.named_modules()):
        for attr, sub in list(child.named_children()):
            replacement = _torch_equivalent(sub)
            if replacement is not None:
                setattr(child, attr, replacement)
    return out.eval()


def export_model(model: nn.Module, example: Tensor, path: str | Path, format: str = "torchscript") -> Path:
    """Write ``model`` (in eval mode, on the CPU) to ``path`` as ``format``; ``example`` is one input batch.

    The file is written atomically: a failed export leaves no partial file behind.
    """
    _check_format(format)
    path = Path(path)
    if format == "onnx" and not onnx_available():
        raise ExportError("exporting to ONNX needs the onnx package: pip install onnx")
    original = model
    if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in model.state_dict().values()):
        # NaN outputs also fail the copy's check below, which would then blame the translation
        raise ExportError(f"{type(model).__name__}: its weights hold NaN or Inf (the training diverged), so it "
                          "would only ever output NaN; retrain it (e.g. with a lower learning rate) to export it")
    example = example.cpu()
    buf = io.BytesIO()
    try:
        model = deployable_copy(original)
        with torch.no_grad():  # the copy must compute what the trained model computes
            want = copy_eval_outputs(original, example)
            got = model(example)
        if want.shape != got.shape or not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
            raise ExportError(f"{type(original).__name__}: its deployable copy computes other outputs than the "
                              "model (a layer trainlab cannot translate to PyTorch's); please report it")
        with torch.no_grad(), warnings.catch_warnings():
            # both exporters announce their successors (torch.export); the files they write are current
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            # layers check the feature width in Python; it is fixed per model (the batch axis stays free)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            if format == "torchscript":
                traced = torch.jit.trace(model, example, check_trace=False)
                torch.jit.save(traced, buf)
            else:
                torch.onnx.export(model, (example,), buf, dynamo=False, input_names=["input"],
                                  output_names=["output"],
                                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    except ExportError:
        raise
    except Exception as err:  # the exporters raise many types; one line says what failed
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ExportError(f"{type(model).__name__} could not be exported to {format}: {first}") from err
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def copy_eval_outputs(model: nn.Module, x: Tensor) -> Tensor:
    """``model(x)`` in eval mode on the CPU, leaving ``model`` (mode and device) as it was."""
    import copy

    m = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        return m(x)


def export_run(run_dir: str | Path, format: str = "torchscript", out: str | Path | None = None) -> Path:
    """Export the trained model of the run folder ``run_dir``; the file defaults to ``run_dir/model.pt``
    (TorchScript) or ``run_dir/model.onnx``. Returns the file written."""
    from trainlab.experiments.load import load_run

    _check_format(format)
    if format == "onnx" and not onnx_available():  # before loading data and model
        raise ExportError("exporting to ONNX needs the onnx package: pip install onnx")
    run = load_run(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / f"model{FORMATS[format]}"
    return export_model(run.model, run.example_input(2), path, format)
