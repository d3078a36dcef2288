"""The classifier's inference function written straight into an ONNX graph, node by node.

Tracing the PyTorch module (``torch.onnx.export``) gives a graph shaped by how the module is
written: dynamic-shape bookkeeping (``Shape``, ``Gather``, ``Concat``), head reshapes and
transposes around every attention, and a last layer computed for every token. For one MRPC
pair those small nodes cost as much as a third of the int8 model's time. Building the graph
from the weights instead gives, per layer:

    MatMul(qkv) -> Split -> Attention -> MatMul(out) -> Add -> LayerNorm
                -> MatMul -> Gelu -> MatMul -> Add -> LayerNorm

with ONNX's own ``Attention`` (opset 23: heads, scaling, key mask and softmax in one kernel)
and, in the last layer, only the first ([CLS]) token's query, attention output and
feed-forward, as :meth:`~bertfit.model.encoder.BertEncoder.pool_padding_free` does in PyTorch: the
pooler reads nothing else. Every MatMul is one that ONNX Runtime's dynamic quantization turns
into an int8 kernel.

Inputs are bertfit's three packed int64 tensors [batch, sequence] (right-padded); the output
is ``logits`` [batch, num_classes].
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from bertfit.export.spec import MODEL_INPUTS, MODEL_OUTPUT

#: The graph's opset: 23 is the first with the standard ``Attention`` operator.
OPSET = 23

#: bertfit activation name -> (ONNX op, attributes); ``silu`` is built from Sigmoid and Mul.
_ACTIVATIONS = {
    "gelu": ("Gelu", {}),
    "gelu_tanh": ("Gelu", {"approximate": "tanh"}),
    "relu": ("Relu", {}),
    "tanh": ("Tanh", {}),
}


class _Graph:
    """Collects nodes and initializers, naming each value uniquely after a hint."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0
        self._constants: dict[tuple, str] = {}

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def weight(self, hint: str, array: np.ndarray) -> str:
        """A float32 initializer."""
        name = self._name(hint)
        self.initializers.append(
            numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)
        )
        return name

    def ints(self, *values: int) -> str:
        """An int64 vector constant, shared by every node that uses the same values."""
        key = tuple(values)
        if key not in self._constants:
            name = self._name("ints")
            array = np.array(values, dtype=np.int64)
            self.initializers.append(numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def op(self, op_type: str, inputs: list[str], hint: str, outputs: int = 1, **attributes):
        """Add a node; returns its output name (or names, when ``outputs`` > 1)."""
        names = [self._name(hint) for _ in range(outputs)]
        node = helper.make_node(op_type, inputs, names, name=self._name(op_type), **attributes)
        self.nodes.append(node)
        return names[0] if outputs == 1 else names


def _array(tensor) -> np.ndarray:
    return tensor.detach().to("cpu").float().numpy()


def _linear(graph: _Graph, x: str, linear, hint: str, rows: slice | None = None) -> str:
    """``x @ W.T + b`` of an ``nn.Linear``, optionally of a slice of its output rows."""
    weight, bias = _array(linear.weight), _array(linear.bias)
    if rows is not None:
        weight, bias = weight[rows], bias[rows]
    product = graph.op("MatMul", [x, graph.weight(f"{hint}.weight", weight.T)], hint)
    return graph.op("Add", [product, graph.weight(f"{hint}.bias", bias)], hint)


def _layer_norm(graph: _Graph, x: str, norm, hint: str) -> str:
    scale = graph.weight(f"{hint}.weight", _array(norm.weight))
    shift = graph.weight(f"{hint}.bias", _array(norm.bias))
    return graph.op("LayerNormalization", [x, scale, shift], hint, axis=-1, epsilon=norm.eps)


def _activation(graph: _Graph, x: str, name: str, hint: str) -> str:
    if name == "silu":
        return graph.op("Mul", [x, graph.op("Sigmoid", [x], hint)], hint)
    if name not in _ACTIVATIONS:
        raise ValueError(f"no ONNX form for hidden activation {name!r}")
    op_type, attributes = _ACTIVATIONS[name]
    return graph.op(op_type, [x], hint, **attributes)


def _first_token(graph: _Graph, x: str, hint: str) -> str:
    """[B, L, H] -> [B, 1, H]: the first ([CLS]) position."""
    return graph.op("Slice", [x, graph.ints(0), graph.ints(1), graph.ints(1)], hint)


def _embeddings(graph: _Graph, embeddings, word_ids: str, type_ids: str, length: str) -> str:
    # Positions 0..L-1: the first L rows of the table, broadcast over the batch.
    table = graph.weight("position_embeddings", _array(embeddings.position_embeddings.weight))
    positions = graph.op("Slice", [table, graph.ints(0), length, graph.ints(0)], "positions")
    words = graph.weight("word_embeddings", _array(embeddings.word_embeddings.weight))
    types = graph.weight("token_type_embeddings", _array(embeddings.token_type_embeddings.weight))
    x = graph.op(
        "Add",
        [
            graph.op("Gather", [words, word_ids], "words"),
            graph.op("Gather", [types, type_ids], "types"),
        ],
        "embeddings",
    )
    x = graph.op("Add", [x, positions], "embeddings")
    return _layer_norm(graph, x, embeddings.layer_norm, "embeddings.layer_norm")


def _layer(
    graph: _Graph,
    x: str,
    layer,
    masks: tuple[str, str],
    activation: str,
    index: int,
    first_only: bool,
):
    """One post-LayerNorm Transformer layer; ``first_only``: for the first token alone."""
    attention, hint = layer.attention, f"layers.{index}"
    hidden = attention.num_heads * attention.head_size
    if first_only:
        residual = _first_token(graph, x, f"{hint}.first")
        query = _linear(graph, residual, attention.qkv, f"{hint}.query", slice(0, hidden))
        key_value = _linear(graph, x, attention.qkv, f"{hint}.key_value", slice(hidden, None))
        key, value = graph.op("Split", [key_value], f"{hint}.kv", outputs=2, axis=-1, num_outputs=2)
        mask = masks[1]
    else:
        residual = x
        qkv = _linear(graph, x, attention.qkv, f"{hint}.qkv")
        query, key, value = graph.op(
            "Split", [qkv], f"{hint}.qkv", outputs=3, axis=-1, num_outputs=3
        )
        mask = masks[0]
    context = graph.op(
        "Attention",
        [query, key, value, mask],
        f"{hint}.context",
        q_num_heads=attention.num_heads,
        kv_num_heads=attention.num_heads,
    )
    attended = _linear(graph, context, attention.output, f"{hint}.attention_output")
    x = graph.op("Add", [attended, residual], f"{hint}.residual")
    x = _layer_norm(graph, x, layer.attention_norm, f"{hint}.attention_norm")
    feed_forward = layer.feed_forward
    inner = _linear(graph, x, feed_forward.intermediate, f"{hint}.intermediate")
    inner = _activation(graph, inner, activation, f"{hint}.activation")
    out = graph.op(
        "Add", [_linear(graph, inner, feed_forward.output, f"{hint}.output"), x], f"{hint}.residual"
    )
    return _layer_norm(graph, out, layer.output_norm, f"{hint}.output_norm")


def _key_masks(graph: _Graph, input_mask: str, length: str) -> tuple[str, str]:
    """Boolean key masks for Attention: [B, 1, L, L] (every query) and [B, 1, 1, L] (one).

    ``Attention`` wants the mask's query dimension spelled out, so the [B, 1, 1, L] mask of
    real keys is expanded once and shared by every full layer.
    """
    keys = graph.op("Cast", [input_mask], "key_mask", to=TensorProto.BOOL)
    one_query = graph.op("Unsqueeze", [keys, graph.ints(1, 2)], "key_mask")
    shape = graph.op(
        "Concat", [graph.ints(1), graph.ints(1), length, graph.ints(1)], "shape", axis=0
    )
    every_query = graph.op("Expand", [one_query, shape], "key_mask")
    return every_query, one_query


def build_classifier_graph(model):
    """An ``onnx.ModelProto`` computing ``model``'s logits (eval mode) from the packed inputs."""
    encoder = model.encoder
    graph = _Graph()
    word_ids, input_mask, type_ids = MODEL_INPUTS
    # The sequence length L, read once for the position rows and the attention masks.
    length = graph.op("Shape", [word_ids], "length", start=1, end=2)
    x = _embeddings(graph, encoder.embeddings, word_ids, type_ids, length)
    masks = _key_masks(graph, input_mask, length)
    activation = encoder.config.hidden_activation
    last = len(encoder.layers) - 1
    for index, layer in enumerate(encoder.layers):
        x = _layer(graph, x, layer, masks, activation, index, first_only=index == last)
    first = graph.op("Squeeze", [_first_token(graph, x, "cls"), graph.ints(1)], "cls")
    pooled = graph.op("Tanh", [_linear(graph, first, encoder.pooler.dense, "pooler")], "pooled")
    logits = _linear(graph, pooled, model.classifier.dense, "classifier")
    graph.nodes.append(helper.make_node("Identity", [logits], [MODEL_OUTPUT], name="logits"))

    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in MODEL_INPUTS
    ]
    output = helper.make_tensor_value_info(
        MODEL_OUTPUT, TensorProto.FLOAT, ["batch", model.num_classes]
    )
    body = helper.make_graph(
        graph.nodes, "bertfit_classifier", inputs, [output], graph.initializers
    )
    return helper.make_model(
        body, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bertfit"
    )
