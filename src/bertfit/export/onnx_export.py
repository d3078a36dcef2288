"""Write a classifier as ONNX: the graph, optional transformer fusions, int8 quantization.

1. :func:`export_onnx` writes the graph :mod:`bertfit.export.onnx_builder` builds from the
   weights (opset 23, dynamic batch and sequence axes): the default, and the fastest graph
   measured (``bench/export_inference.py``). ONNX Runtime adds its own fusions (MatMul with
   bias, quantized MatMul) when it loads it.
2. :func:`export_traced` instead traces :class:`~bertfit.export.onnx_graph.FusibleClassifier`
   with PyTorch's TorchScript-based exporter (opset 17), the graph layout that
   ``onnxruntime.transformers``' BERT fusions recognise, and :func:`fuse` runs them
   (``--transformer-fusions``): Attention, EmbedLayerNormalization, SkipLayerNormalization and
   BiasGelu nodes. That exporter is deprecated in favour of the ``torch.export``-based one,
   whose graph of the same model fuses no attention and takes about ten times as long.
3. :func:`quantize_int8` applies ONNX Runtime's dynamic quantization: int8 weights, uint8
   activations quantized at run time (the u8s8 kernels that AVX-512 VNNI accelerates).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from bertfit.export.onnx_graph import FusibleClassifier
from bertfit.export.spec import MODEL_INPUTS, MODEL_OUTPUT
from bertfit.model.classifier import BertClassifier

#: ONNX opset of traced models: LayerNormalization is a standard op from 17 on, and the
#: transformer fusions are written against graphs of this opset.
TRACED_OPSET = 17

#: Fused node types the export reports (and a correct BERT export has).
FUSED_OPS = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu")


def example_inputs(model: BertClassifier) -> tuple[torch.Tensor, ...]:
    """A small batch with padding and two segments, to trace the graph with."""
    vocab = model.config.vocab_size
    word_ids = torch.arange(2 * 8, dtype=torch.int64).reshape(2, 8) % vocab
    mask = torch.ones_like(word_ids)
    mask[1, 5:] = 0
    type_ids = torch.zeros_like(word_ids)
    type_ids[:, 4:] = 1
    return word_ids, mask, type_ids


def export_onnx(model: BertClassifier, path: Path) -> int:
    """Write ``model``'s inference graph (built from its weights) to ``path``; returns the opset."""
    # onnx and onnxruntime are the export extra: the torch-export format runs without them.
    import onnx

    from bertfit.export.onnx_builder import OPSET, build_classifier_graph

    onnx.save(build_classifier_graph(model.eval()), str(path))
    return OPSET


def export_traced(model: BertClassifier, path: Path, opset: int = TRACED_OPSET) -> int:
    """Trace ``model`` (in eval mode) to ONNX at ``path``, in the layout the transformer fusions
    recognise, with dynamic batch and length; returns the opset."""
    graph = FusibleClassifier(model).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in MODEL_INPUTS}
    axes[MODEL_OUTPUT] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        # The deprecation notice of the TorchScript-based exporter; see the module docstring.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph,
            example_inputs(model),
            str(path),
            input_names=list(MODEL_INPUTS),
            output_names=[MODEL_OUTPUT],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return opset


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """Silence the optimizer's and quantizer's advice, printed through the root logger."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def fuse(source: Path, target: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Apply ONNX Runtime's BERT graph fusions; returns how many nodes of each kind it made."""
    # Only --transformer-fusions needs these; they take about a second to import.
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    with _quiet_logging():
        optimized = optimizer.optimize_model(
            str(source),
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            optimization_options=FusionOptions("bert"),
            # Python fusions only; ONNX Runtime applies its own (machine-specific) ones at load.
            opt_level=0,
        )
        optimized.save_model_to_file(str(target))
    stats = optimized.get_fused_operator_statistics()
    return {name: int(stats.get(name, 0)) for name in FUSED_OPS}


def quantize_int8(
    source: Path, target: Path, per_channel: bool = True, fused: bool = False
) -> None:
    """Dynamic int8 quantization of every MatMul and embedding node, and of the fused
    ``com.microsoft`` Attention nodes when ``fused`` (the quantizer would mistake ONNX's own
    ``Attention`` for that one, so a built graph names what to quantize)."""
    from onnx import TensorProto  # the export extra, as in export_onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_logging():
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=None if fused else ["MatMul", "Gather"],
            # Shape inference cannot type the outputs of fused contrib ops; they are float.
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
