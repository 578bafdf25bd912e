"""Clean-ups of QDQ ONNX graphs so that ONNX Runtime can fuse them into int8 kernels."""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy.deps import require


class _Constants:
    """Resolve a tensor name to its constant value (initializer, Constant node, or Identity chain)."""

    def __init__(self, graph: Any) -> None:
        self.numpy_helper = require('onnx', 'QDQ graph clean-up').numpy_helper
        self.inits = {t.name: t for t in graph.initializer}
        self.producers = {out: node for node in graph.node for out in node.output}

    def __call__(self, name: str) -> np.ndarray | None:
        while name not in self.inits:
            node = self.producers.get(name)
            if node is None:
                return None
            if node.op_type == 'Identity':
                name = node.input[0]
            elif node.op_type == 'Constant':
                return self.numpy_helper.to_array(node.attribute[0].t)
            else:
                return None
        return self.numpy_helper.to_array(self.inits[name])


def fold_weight_quantizers(model: Any) -> int:
    """Replace every ``QuantizeLinear`` whose input, scale and zero point are constants by its int8/uint8
    result (an initializer), in place; returns how many were folded.

    The TorchScript exporter writes fake-quantised weights as ``DequantizeLinear(QuantizeLinear(W))``;
    ONNX Runtime only fuses ``DequantizeLinear(int8 constant) -> Conv/Gemm`` into QLinearConv/QGemm.
    """
    graph = model.graph
    constant = _Constants(graph)
    folded = []
    for node in graph.node:
        if node.op_type != 'QuantizeLinear' or len(node.input) < 3:
            continue
        weight, scale, zero_point = (constant(name) for name in node.input[:3])
        if weight is None or scale is None or zero_point is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == 'axis'), 1)
        shape = [1] * weight.ndim
        if scale.ndim == 1 and scale.size > 1:
            shape[axis] = -1
        info = np.iinfo(zero_point.dtype)
        quantised = np.rint(weight / scale.reshape(shape)) + zero_point.astype(np.int64).reshape(shape)
        quantised = np.clip(quantised, info.min, info.max).astype(zero_point.dtype)
        graph.initializer.append(constant.numpy_helper.from_array(quantised, node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    return len(folded)


def remove_redundant_clips(model: Any) -> int:
    """Drop each ``Clip`` (ReLU/ReLU6) feeding only a ``QuantizeLinear`` whose representable range lies
    inside the clip range (the quantiser clamps anyway), in place; returns how many were removed.

    Leaves ``Conv -> QuantizeLinear``, which ONNX Runtime fuses into QLinearConv (else it fuses
    ``Conv + Clip`` in float first and the int8 path is lost).
    """
    graph = model.graph
    constant = _Constants(graph)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    removed = []
    for node in graph.node:
        users = consumers.get(node.output[0], []) if node.op_type == 'Clip' else []
        if len(users) != 1 or users[0].op_type != 'QuantizeLinear' or len(users[0].input) < 3:
            continue
        scale, zero_point = constant(users[0].input[1]), constant(users[0].input[2])
        low = constant(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        high = constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None or zero_point is None or scale.size != 1:
            continue
        info = np.iinfo(zero_point.dtype)
        q_low = (info.min - zero_point.item()) * scale.item()
        q_high = (info.max - zero_point.item()) * scale.item()
        tol = 1e-6 * max(1.0, abs(q_high))
        if (low is None or low.item() <= q_low + tol) and (high is None or high.item() >= q_high - tol):
            users[0].input[0] = node.input[0]
            removed.append(node)
    for node in removed:
        graph.node.remove(node)
    return len(removed)


def bypass_identities(model: Any) -> None:
    """Make nodes read initializers directly instead of through ``Identity`` nodes (the exporter shares
    equal constants such as zero points that way; ONNX Runtime's QDQ fusions want initializers)."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    source = {node.output[0]: node.input[0] for node in graph.node
              if node.op_type == 'Identity' and node.output[0] not in outputs}
    for node in graph.node:
        for i, name in enumerate(node.input):
            while name in source:
                name = source[name]
            node.input[i] = name


def scalarise_qparams(model: Any) -> None:
    """Store one-element scales and zero points of Quantize/DequantizeLinear as scalars (PyTorch writes
    shape (1,); ONNX Runtime's QLinearAdd and similar fusions need per-tensor parameters of rank 0)."""
    onnx = require('onnx', 'QDQ graph clean-up')
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    names = {name for node in graph.node if node.op_type in ('QuantizeLinear', 'DequantizeLinear')
             for name in node.input[1:3]}
    for name in names & set(inits):
        value = onnx.numpy_helper.to_array(inits[name])
        if value.ndim == 1 and value.size == 1:
            inits[name].CopyFrom(onnx.numpy_helper.from_array(value.reshape(()), name))


def remove_unused(model: Any) -> None:
    """Delete nodes whose outputs nobody reads, then initializers nobody reads, in place."""
    graph = model.graph
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(out in used for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)


def clean_qdq_graph(model: Any) -> None:
    """All clean-ups above, in order, in place."""
    bypass_identities(model)
    scalarise_qparams(model)
    fold_weight_quantizers(model)
    remove_redundant_clips(model)
    remove_unused(model)
