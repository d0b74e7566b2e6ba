"""A tiny synthetic Piper voice: Piper's real ONNX interface, a few kilobytes, no training.

The graph has the inputs and output of a voice exported by ``piper.train.export_onnx``
(single speaker, so no ``sid``)::

    input          int64   [1, N]      phoneme ids
    input_lengths  int64   [1]         N
    scales         float32 [3]         noise_scale, length_scale, noise_w
    output         float32 [1, 1, 1, T] audio in [-1, 1]

and is laid out like VITS inference: each phoneme id gets a duration in frames
(a table lookup instead of the duration predictor), scaled by ``length_scale``
and rounded up by a ``Ceil`` node (the ``w_ceil`` tensor that
``piper.patch_voice_with_alignment`` exposes, so alignments work too), then
every frame becomes ``hop_length`` samples of a tone whose pitch depends on
the phoneme (a table lookup instead of the decoder). Padding ids beyond
``input_lengths`` are masked like VITS' ``x_mask``. Deterministic: the noise
scales are accepted and ignored.

The JSON config is a real Piper config (espeak phonemes, Piper's default
phoneme id map), so ``piper.PiperVoice.load`` phonemizes text with its
bundled espeak-ng and runs the graph: the real loading and synthesis path.

``build_into(folder, seed)`` follows the tiny-kit recipe convention
(``enfoads.models.tiny``); ``ensure_tiny_piper(models_dir)`` builds it once into
``<models_dir>/enfoads-tiny/tiny-piper/`` with the same marker file, so adding
``TinyRecipe("tiny-piper", "enfoads.models.tiny.piper", ...)`` to ``enfoads.models.tiny.RECIPES``
reuses a folder built here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = [
    "NAME",
    "VOICE_NAME",
    "SAMPLE_RATE",
    "HOP_LENGTH",
    "build_into",
    "ensure_tiny_piper",
    "tiny_piper_dir",
    "tiny_piper_model",
]

NAME = "tiny-piper"
#: Piper-style voice name ``<locale>-<speaker>-<quality>``.
VOICE_NAME = "es_MX-enfoads_tiny-x_low"
SAMPLE_RATE = 16000
HOP_LENGTH = 256
# Frames per phoneme id: ~16 ms each at 16 kHz; Piper puts a pad id after
# every phoneme, so a phoneme lasts ~80-110 ms, close to real speech.
_PAD_FRAMES = 1.0
_PHONEME_FRAMES = (3.0, 5.0)
_PUNCT_FRAMES = 8.0  # a short pause at commas and full stops
_SPACE_FRAMES = 2.0


def _id_map() -> dict[str, list[int]]:
    try:
        from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP
    except ImportError:  # pragma: no cover - piper-tts is what reads this voice anyway
        symbols = ["_", "^", "$", " ", "!", "'", "(", ")", ",", "-", ".", ":", ";", "?"]
        symbols += list("abcdefhijklmnopqrstuvwxyzæçðøħŋœɐɑɒɔəɛɜɡɪʃʊʌʒθɾʎɲβ")
        symbols += ["ˈ", "ˌ", "ː", "\u0303"]
        return {s: [i] for i, s in enumerate(symbols)}
    return {k: list(v) for k, v in DEFAULT_PHONEME_ID_MAP.items()}


def _config(id_map: dict[str, list[int]], num_symbols: int) -> dict:
    return {
        "audio": {"sample_rate": SAMPLE_RATE, "quality": "x_low"},
        "espeak": {"voice": "es-419"},
        "language": {"code": "es_MX", "family": "es", "region": "MX",
                     "name_native": "Español", "name_english": "Spanish", "country_english": "Mexico"},
        "inference": {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8},
        "phoneme_type": "espeak",
        "phoneme_map": {},
        "phoneme_id_map": id_map,
        "num_symbols": num_symbols,
        "num_speakers": 1,
        "speaker_id_map": {},
        "hop_length": HOP_LENGTH,
        "piper_version": "1.0.0",
        "dataset": "enfoads-tiny",
        "enfoads_tiny": True,
    }


def _graph(num_symbols: int, id_map: dict[str, list[int]], seed: int):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    frames = rng.uniform(*_PHONEME_FRAMES, size=num_symbols).astype(np.float32)
    freqs = rng.uniform(110.0, 320.0, size=num_symbols).astype(np.float32)
    amps = np.full(num_symbols, 0.5, dtype=np.float32)
    for sym, ids in id_map.items():
        for i in ids:
            if sym == "_":
                frames[i], amps[i] = _PAD_FRAMES, 0.25
            elif sym in ("^", "$"):
                frames[i], amps[i] = _PAD_FRAMES, 0.0
            elif sym == " ":
                frames[i], amps[i] = _SPACE_FRAMES, 0.0
            elif sym in ",.;:!?":
                frames[i], amps[i] = _PUNCT_FRAMES, 0.0

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    inits = [
        const("dur_table", frames),
        const("freq_table", freqs),
        const("amp_table", amps),
        const("one_1", np.array([1], dtype=np.int64)),
        const("axis1", np.array([1], dtype=np.int64)),
        const("idx_length", np.array(1, dtype=np.int64)),
        const("i0", np.array(0, dtype=np.int64)),
        const("i1", np.array(1, dtype=np.int64)),
        const("hop", np.array(HOP_LENGTH, dtype=np.int64)),
        const("two_pi_over_sr", np.array(2.0 * np.pi / SAMPLE_RATE, dtype=np.float32)),
        const("out_prefix", np.array([1, 1, 1], dtype=np.int64)),
        const("minus1", np.array([-1], dtype=np.int64)),
        const("ax0", np.array([0], dtype=np.int64)),
        const("ax_last", np.array([-1], dtype=np.int64)),
        const("frame_col", np.array([-1, 1], dtype=np.int64)),
    ]
    n = helper.make_node
    nodes = [
        # x_mask: positions < input_lengths (VITS' sequence mask).
        n("Shape", ["input"], ["in_shape"]),
        n("Gather", ["in_shape", "idx_length"], ["n_ids"], axis=0),
        n("Range", ["i0", "n_ids", "i1"], ["positions"]),
        n("Unsqueeze", ["positions", "ax0"], ["positions_2d"]),
        n("Unsqueeze", ["input_lengths", "ax_last"], ["lengths_col"]),
        n("Less", ["positions_2d", "lengths_col"], ["mask_b"]),
        n("Cast", ["mask_b"], ["mask"], to=TensorProto.FLOAT),
        # Durations: w = table[id] * mask * length_scale; w_ceil = ceil(w)  [1, N]
        n("Gather", ["scales", "i1"], ["length_scale"], axis=0),
        n("Gather", ["dur_table", "input"], ["w_raw"], axis=0),
        n("Mul", ["w_raw", "mask"], ["w_masked"]),
        n("Mul", ["w_masked", "length_scale"], ["w"]),
        n("Ceil", ["w"], ["w_ceil"]),
        # Frame -> phoneme index: how many phoneme ends are <= the frame (generate_path).
        n("CumSum", ["w_ceil", "i1"], ["ends"]),
        n("ReduceSum", ["w_ceil"], ["total_frames_f"], keepdims=0),
        n("Cast", ["total_frames_f"], ["total_frames"], to=TensorProto.INT64),
        n("Range", ["i0", "total_frames", "i1"], ["frame_idx"]),
        n("Cast", ["frame_idx"], ["frame_f"], to=TensorProto.FLOAT),
        n("Reshape", ["frame_f", "frame_col"], ["frame_col_f"]),  # [F, 1]
        n("Reshape", ["ends", "minus1"], ["ends_flat"]),  # [N]
        n("GreaterOrEqual", ["frame_col_f", "ends_flat"], ["passed_b"]),  # [F, N]
        n("Cast", ["passed_b"], ["passed"], to=TensorProto.INT64),
        n("ReduceSum", ["passed", "one_1"], ["phoneme_of_frame"], keepdims=0),  # [F]
        n("Reshape", ["input", "minus1"], ["ids_flat"]),
        n("Gather", ["ids_flat", "phoneme_of_frame"], ["id_of_frame"], axis=0),
        n("Gather", ["freq_table", "id_of_frame"], ["freq_of_frame"], axis=0),
        n("Gather", ["amp_table", "id_of_frame"], ["amp_of_frame"], axis=0),
        # Samples: amp * sin(2 pi f t), t the global sample time; [F, hop] -> [T].
        n("Mul", ["total_frames", "hop"], ["total_samples"]),
        n("Range", ["i0", "total_samples", "i1"], ["sample_idx"]),
        n("Cast", ["sample_idx"], ["sample_f"], to=TensorProto.FLOAT),
        n("Mul", ["sample_f", "two_pi_over_sr"], ["omega_t"]),
        n("Reshape", ["hop", "one_1"], ["hop_1"]),
        n("Concat", ["minus1", "hop_1"], ["frame_shape"], axis=0),
        n("Reshape", ["omega_t", "frame_shape"], ["omega_t_frames"]),  # [F, hop]
        n("Unsqueeze", ["freq_of_frame", "axis1"], ["freq_col"]),
        n("Unsqueeze", ["amp_of_frame", "axis1"], ["amp_col"]),
        n("Mul", ["omega_t_frames", "freq_col"], ["phase"]),
        n("Sin", ["phase"], ["wave"]),
        n("Mul", ["wave", "amp_col"], ["audio_frames"]),
        n("Reshape", ["total_samples", "one_1"], ["t_1"]),
        n("Concat", ["out_prefix", "t_1"], ["out_shape"], axis=0),
        n("Reshape", ["audio_frames", "out_shape"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "enfoads_tiny_piper",
        [
            helper.make_tensor_value_info("input", TensorProto.INT64, [1, "phonemes"]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 1, "time"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="enfoads-tiny")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_into(folder: Path, seed: int = 0) -> None:
    """Write ``<VOICE_NAME>.onnx`` and ``<VOICE_NAME>.onnx.json`` into ``folder``."""
    import onnx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    id_map = _id_map()
    num_symbols = max(i for ids in id_map.values() for i in ids) + 1
    onnx.save(_graph(num_symbols, id_map, seed), os.fspath(folder / f"{VOICE_NAME}.onnx"))
    (folder / f"{VOICE_NAME}.onnx.json").write_text(
        json.dumps(_config(id_map, num_symbols), ensure_ascii=False, indent=1), encoding="utf-8"
    )


def tiny_piper_dir(models_dir: Path) -> Path:
    from enfoads.models.tiny import tiny_root

    return tiny_root(Path(models_dir)) / NAME


def tiny_piper_model(models_dir: Path) -> Path:
    """Where the tiny voice's ONNX file is (built or not)."""
    return tiny_piper_dir(models_dir) / f"{VOICE_NAME}.onnx"


def ensure_tiny_piper(models_dir: Path, seed: int = 0) -> Path:
    """The tiny voice's folder, built first if needed (the kit's ``tiny-piper`` recipe)."""
    from enfoads.models.tiny import ensure_tiny

    return ensure_tiny(models_dir, NAME, seed)
