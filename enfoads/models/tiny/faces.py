"""Tiny InsightFace pack: ``buffalo_l`` + ``inswapper_128.onnx`` in the real format.

``build_into(folder, seed)`` writes an InsightFace ``root``::

    folder/models/buffalo_l/det_10g.onnx      SCRFD-style detector (9 outputs)
    folder/models/buffalo_l/w600k_r50.onnx    recognition [N,3,112,112] -> [N,512]
    folder/models/buffalo_l/genderage.onnx    attributes  [N,3,96,96]   -> [N,3]
    folder/models/buffalo_l/2d106det.onnx     landmarks   [N,3,192,192] -> [N,212]
    folder/models/buffalo_l/1k3d68.onnx       landmarks   [N,3,192,192] -> [N,3309]
    folder/models/inswapper_128.onnx          swapper (target, source) -> [1,3,128,128]

so ``FaceAnalysis(name="buffalo_l", root=folder)`` and
``model_zoo.get_model(folder / "models/inswapper_128.onnx")`` load it through
insightface's own shape-based routing. Models are ONNX opset 13, IR version 8,
built with ``onnx.helper``; ~5.4 MB in all, built in ~0.1 s.

The recognition, attribute, landmark and swapper weights are random (seeded).
The detector is hand-made, not random, so tests can place faces: it finds
*white squares on a grey background* (see :func:`face_test_pattern`).

Detector, in the detector's frame (the image letterboxed into ``det_size``;
with ``det_size=(640, 640)`` a 640x480 image keeps its scale):

- It works on stride 16 (the stride-8 and stride-32 heads always score 0).
- It is tuned for squares of **32 to 160 px; 96 px** (:data:`TUNED_SQUARE`)
  is the default. One face per square, at any position: the box comes from
  the white area and centroid in an 11x11-cell window (176 px) around the
  peak, so it fits the square within a pixel or two (checked at random
  positions). Squares down to 24 px are still found, with looser boxes; much
  larger white areas give one face with a box capped at ~176 px.
- Several faces work when squares are separated: keep a gap of at least
  :data:`MIN_GAP` px between squares (smaller gaps still give separate faces
  from 64 px squares up, but boxes bleed into each other).
- A blank grey image (or the black letterbox padding) gives no face.
- The five key points follow ArcFace's template scaled to the square, so
  alignment (recognition crops, swaps) maps the square onto the aligned crop.

All heads are average pools and 1x1-ish convolutions over the real input, so
their output shapes follow the input size, as insightface 2.x requires (it
rewrites the graph into fixed-shape copies per ``det_size``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

OPSET = 13
IR_VERSION = 8
PACK_NAME = "buffalo_l"
SWAPPER_FILE = "inswapper_128.onnx"
PACK_FILES = ("det_10g.onnx", "w600k_r50.onnx", "genderage.onnx", "2d106det.onnx", "1k3d68.onnx")

#: Square size (px, in the detector frame) the detector is tuned for.
TUNED_SQUARE = 96
#: Square sizes (px, detector frame) that give exactly one well-fitting face.
SQUARE_RANGE = (32, 160)
#: Smallest gap (px) to keep between two squares for them to be two faces.
MIN_GAP = 96
#: Background grey of :func:`face_test_pattern`.
GREY = 127

_STRIDE = 16  # the only stride whose head fires
_MOMENT_CELLS = 11  # window (in cells) for the square's area and centroid
# ArcFace's 5-point template in its 112 px crop.
_ARCFACE_KPS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


# --------------------------------------------------------------------------
# graph helpers


class _Graph:
    """A small builder: nodes get explicit names that never start with ``Sub``
    or ``Mul`` (insightface reads such names in the first nodes as "an MXNet
    model that normalises inside", and would then skip mean/std)."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes = []
        self.initializers = []
        self._count = 0

    def const(self, name: str, array) -> str:
        from onnx import numpy_helper

        full = f"{self.prefix}_{name}"
        self.initializers.append(numpy_helper.from_array(np.asarray(array), full))
        return full

    def op(self, op_type: str, inputs, outputs=1, **attrs):
        from onnx import helper

        self._count += 1
        if isinstance(outputs, int):
            names = [f"{self.prefix}_{op_type.lower()}_{self._count}_{i}" for i in range(outputs)]
        else:
            names = list(outputs)
        self.nodes.append(
            helper.make_node(op_type, list(inputs), names, name=f"{self.prefix}_{self._count}_{op_type.lower()}", **attrs)
        )
        return names[0] if len(names) == 1 else names

    def model(self, inputs, outputs, doc: str):
        from onnx import helper

        graph = helper.make_graph(self.nodes, self.prefix, inputs, outputs, initializer=self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="enfoads.models.tiny.faces",
            doc_string=doc,
        )
        model.ir_version = IR_VERSION
        return model


def _tensor(name: str, shape):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _flat_head(g: _Graph, x: str, width: int, name: str) -> str:
    """[1, anchors*width, h, w] -> [h*w*anchors, width], SCRFD's row order."""
    t = g.op("Transpose", [x], perm=[0, 2, 3, 1])
    return g.op("Reshape", [t, g.const(f"shape_{name}", np.array([-1, width], dtype=np.int64))], outputs=[name])


# --------------------------------------------------------------------------
# detector


def _detector():
    g = _Graph("det")
    x = "input.1"
    # Whiteness in [0, 1]: blob = (pixel - 127.5) / 128 per channel (RGB); grey
    # and the black letterbox give 0, white gives 1.
    half, white_blob = 0.5, (255.0 - 127.5) / 128.0
    scale = 1.0 / (white_blob - half)
    gray = g.op(
        "Conv",
        [x, g.const("gray_w", _f32(np.full((1, 3, 1, 1), scale / 3.0))), g.const("gray_b", _f32([-half * scale]))],
    )
    white = g.op("Clip", [gray, g.const("zero", _f32(0.0)), g.const("one", _f32(1.0))])

    # Stride 16: c = white fraction per 16x16 cell.
    c = g.op("AveragePool", [white], kernel_shape=[_STRIDE, _STRIDE], strides=[_STRIDE, _STRIDE])
    # r: a double box filter (triangle, 9 cells wide), unimodal over one square.
    pool5 = dict(kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2], count_include_pad=1)
    r = g.op("AveragePool", [g.op("AveragePool", [c], **pool5)], **pool5)
    # A face centre is a cell where r is its 3x3 neighbourhood's maximum. Tied
    # neighbours (a square centred between cells) see the same window below,
    # so they give identical boxes and NMS keeps one.
    rmax = g.op("MaxPool", [r], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    peak = g.op("Cast", [g.op("Equal", [r, rmax])], to=1)
    # Confidence: ~0.01 for a 16 px square, ~1 from 24 px up; 0 on blank grey.
    conf = g.op(
        "Sigmoid",
        [g.op("Mul", [g.op("Add", [r, g.const("r_min", _f32(-0.045))]), g.const("r_gain", _f32(400.0))])],
    )
    score = g.op("Mul", [peak, conf])
    no_score = g.op("Mul", [score, g.const("nil", _f32(0.0))])

    # Area (px^2) and centroid offset (px, from the anchor = cell's top-left
    # pixel) of the white pixels in an 11x11 cell window.
    k = _MOMENT_CELLS
    offs = _STRIDE * (np.arange(k, dtype=np.float32) - k // 2) + _STRIDE / 2
    cell_area = float(_STRIDE * _STRIDE)
    kern = np.zeros((3, 1, k, k), dtype=np.float32)
    kern[0, 0] = cell_area
    kern[1, 0] = cell_area * offs[None, :]
    kern[2, 0] = cell_area * offs[:, None]
    mom = g.op("Conv", [c, g.const("moments", kern)], pads=[k // 2] * 4)
    area, mx, my = g.op("Split", [mom], outputs=3, axis=1)
    denom = g.op("Add", [area, g.const("eps", _f32(1.0))])
    dx = g.op("Div", [mx, denom])
    dy = g.op("Div", [my, denom])
    side = g.op("Sqrt", [g.op("Relu", [area])])
    inv_stride = g.const("inv_stride", _f32(1.0 / _STRIDE))

    # Distances in stride units: box = centroid +- side / 2.
    box = g.op("Concat", [dx, dy, dx, dy], axis=1)
    box = g.op("Mul", [box, g.const("box_sign", _f32([-1, -1, 1, 1]).reshape(1, 4, 1, 1))])
    box = g.op("Add", [box, g.op("Mul", [side, g.const("box_half", _f32([0.5] * 4).reshape(1, 4, 1, 1))])])
    box = g.op("Mul", [box, inv_stride])
    # Key points: centroid + template offsets scaled to the square.
    kps = g.op("Concat", [dx, dy] * 5, axis=1)
    rel = (_ARCFACE_KPS / 112.0 - 0.5).reshape(1, 10, 1, 1)
    kps = g.op("Add", [kps, g.op("Mul", [side, g.const("kps_rel", _f32(rel))])])
    kps = g.op("Mul", [kps, inv_stride])

    scores16 = _flat_head(g, g.op("Concat", [score, no_score], axis=1), 1, "score_16")
    boxes16 = _flat_head(g, g.op("Concat", [box, box], axis=1), 4, "bbox_16")
    kps16 = _flat_head(g, g.op("Concat", [kps, kps], axis=1), 10, "kps_16")

    heads = {16: (scores16, boxes16, kps16)}
    for stride in (8, 32):
        pooled = g.op("AveragePool", [white], kernel_shape=[stride, stride], strides=[stride, stride])
        zero = g.op("Mul", [pooled, g.const(f"nil_{stride}", _f32(0.0))])
        outs = []
        for what, width in (("score", 1), ("bbox", 4), ("kps", 10)):
            reps = g.const(f"reps_{what}_{stride}", np.array([1, 2 * width, 1, 1], dtype=np.int64))
            outs.append(_flat_head(g, g.op("Tile", [zero, reps]), width, f"{what}_{stride}"))
        heads[stride] = tuple(outs)

    outputs = []
    for i, width in enumerate((1, 4, 10)):
        for stride in (8, 16, 32):
            outputs.append(_tensor(heads[stride][i], [f"n{stride}", width]))
    return g.model(
        [_tensor(x, [1, 3, "height", "width"])],
        outputs,
        "tiny SCRFD-format detector: finds white squares on grey",
    )


# --------------------------------------------------------------------------
# random-weight heads


def _pooled_dense(prefix, rng, size, pool, out_dim, input_name, output_name, *, tanh=False, bias=None, std=0.1):
    """[N,3,size,size] -> avg pool -> flatten -> dense (-> tanh) -> [N,out_dim]."""
    g = _Graph(prefix)
    feats = 3 * (size // pool) ** 2
    p = g.op("AveragePool", [input_name], kernel_shape=[pool, pool], strides=[pool, pool])
    flat = g.op("Flatten", [p], axis=1)
    w = _f32(rng.normal(0.0, std, size=(feats, out_dim)))
    b = _f32(np.zeros(out_dim) if bias is None else bias)
    dense = g.op("Gemm", [flat, g.const("w", w), g.const("b", b)], outputs=[output_name if not tanh else "dense"])
    if tanh:
        g.op("Tanh", [dense], outputs=[output_name])
    return g.model(
        [_tensor(input_name, ["None", 3, size, size])],
        [_tensor(output_name, ["None", out_dim])],
        f"tiny random {prefix}",
    )


def _swapper(rng):
    """Inputs target [1,3,128,128] (first) and source [1,512]; output
    [1,3,128,128] = half the target + half a 16x16 pattern from the source.
    The 512x512 ``emap`` is the last initializer (INSwapper reads it there)."""
    g = _Graph("swap")
    # The graph uses emap too (an unused initializer makes ONNX Runtime log a
    # warning on every load and drop it); ~orthonormal, so norms stay ~1.
    mapped = g.op("MatMul", ["source", "emap"])
    w = _f32(rng.normal(0.0, 1.5, size=(512, 3 * 16 * 16)))
    proj = g.op("Gemm", [mapped, g.const("w", w), g.const("b", _f32(np.zeros(3 * 16 * 16)))])
    grid = g.op("Reshape", [proj, g.const("grid", np.array([1, 3, 16, 16], dtype=np.int64))])
    up = g.op("Resize", [grid, "", g.const("scales", _f32([1, 1, 8, 8]))], mode="nearest")
    pattern = g.op("Sigmoid", [up])
    keep = g.op("Mul", ["target", g.const("keep", _f32(0.5))])
    g.op("Add", [keep, g.op("Mul", [pattern, g.const("mix", _f32(0.5))])], outputs=["output"])
    emap = (rng.normal(0.0, 1.0, size=(512, 512)) / np.sqrt(512.0) + np.eye(512)) / np.sqrt(2.0)
    from onnx import numpy_helper

    g.initializers.append(numpy_helper.from_array(_f32(emap), "emap"))  # must stay LAST
    return g.model(
        [_tensor("target", [1, 3, 128, 128]), _tensor("source", [1, 512])],
        [_tensor("output", [1, 3, 128, 128])],
        "tiny random inswapper",
    )


def build_models(seed: int = 0) -> dict[str, object]:
    """Relative path -> ``onnx.ModelProto``, deterministic given ``seed``."""
    rng = np.random.default_rng(seed)
    pack = f"models/{PACK_NAME}"
    return {
        f"{pack}/det_10g.onnx": _detector(),
        f"{pack}/w600k_r50.onnx": _pooled_dense("rec", rng, 112, 8, 512, "input.1", "683"),
        f"{pack}/genderage.onnx": _pooled_dense("ga", rng, 96, 96, 3, "data", "fc1", bias=[0.0, 0.0, 0.3]),
        f"{pack}/2d106det.onnx": _pooled_dense("lmk2d", rng, 192, 32, 212, "data", "fc1", tanh=True),
        f"{pack}/1k3d68.onnx": _pooled_dense("lmk3d", rng, 192, 32, 3309, "data", "fc1", tanh=True),
        f"models/{SWAPPER_FILE}": _swapper(rng),
    }


def build_into(folder: Path, seed: int) -> None:
    """Write the whole pack into ``folder`` (an insightface ``root``)."""
    import onnx

    folder = Path(folder)
    for rel, model in build_models(seed).items():
        onnx.checker.check_model(model)
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(model.SerializeToString())


def face_test_pattern(width: int = 640, height: int = 480, squares=None) -> np.ndarray:
    """A BGR uint8 image, grey (:data:`GREY`), with white squares as faces.

    ``squares`` is a sequence of ``(x, y, size)`` (top-left corner and side,
    in image pixels). Default: one :data:`TUNED_SQUARE` px square in the middle.
    The detector wants squares of :data:`SQUARE_RANGE` px *in its frame*
    (the image scaled by ``min(det_w / width, det_h / height)``) and gaps of
    at least :data:`MIN_GAP` px between squares.
    """
    if squares is None:
        s = TUNED_SQUARE
        squares = ((width // 2 - s // 2, height // 2 - s // 2, s),)
    img = np.full((height, width, 3), GREY, dtype=np.uint8)
    for x, y, size in squares:
        img[int(y) : int(y) + int(size), int(x) : int(x) + int(size)] = 255
    return img
