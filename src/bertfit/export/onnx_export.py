"""Write a classifier as ONNX: export, optional transformer fusions, int8 quantization.

1. :func:`export_onnx` traces :class:`~bertfit.export.onnx_graph.FusibleClassifier` with
   PyTorch's TorchScript-based ONNX exporter (dynamic batch and sequence axes). That exporter
   is deprecated in favour of the ``torch.export``-based one, but it is the one whose graphs
   ONNX Runtime's BERT fusions are written for: the newer exporter's graph of the same model
   fuses no attention and takes about ten times as long to produce. ONNX Runtime applies its
   own fusions (LayerNorm, SkipLayerNorm, GELU, MatMul with bias or scale, quantized MatMul)
   to this graph when it loads it.
2. :func:`fuse` (optional) runs ``onnxruntime.transformers.optimizer`` (model type ``bert``):
   Attention, EmbedLayerNormalization, SkipLayerNormalization and BiasGelu nodes.
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

#: ONNX opset of exported models: LayerNormalization is a standard op from 17 on, ONNX Runtime
#: 1.14+ runs it, and the transformer fusions are written against graphs of this opset.
ONNX_OPSET = 17

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


def export_onnx(model: BertClassifier, path: Path, opset: int = ONNX_OPSET) -> None:
    """Export ``model`` (in eval mode) to ONNX at ``path`` with dynamic batch and length."""
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


def quantize_int8(source: Path, target: Path, per_channel: bool = True) -> None:
    """Dynamic int8 quantization of every MatMul, Attention and embedding node."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_logging():
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            # Shape inference cannot type the outputs of fused contrib ops; they are float.
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
