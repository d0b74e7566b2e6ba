"""Tiny random-weight Whisper in the faster-whisper (CTranslate2) folder format.

The folder matches a ``Systran/faster-whisper-*`` snapshot: ``model.bin``,
``config.json``, ``vocabulary.json``, ``tokenizer.json`` and
``preprocessor_config.json``. Only the sizes are tiny (d_model 32, 2 + 2
layers); the vocabulary, special tokens and mel front end are Whisper's real
ones, so faster-whisper runs its full pipeline on it. Outputs are noise.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

# Whisper's language tokens, in token-id order (multilingual v1/v2 vocabulary:
# 99 languages, so <|notimestamps|> lands on 50363 as in the real models).
# This is NOT faster-whisper's alphabetical _LANGUAGE_CODES order.
LANGUAGES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs "
    "ro da hu ta no th ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk "
    "br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so af oc ka be tg sd gu "
    "am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su"
).split()

VOCAB_SIZE = 51865
EMPTY_TOKEN_ID = 50256  # "" in the multilingual vocabulary (see _build_tokenizer)
EOT_ID = 50257
SOT_ID = 50258
FIRST_LANG_ID = 50259
TRANSLATE_ID = FIRST_LANG_ID + len(LANGUAGES)  # 50358
TRANSCRIBE_ID = TRANSLATE_ID + 1  # 50359
NO_TIMESTAMPS_ID = TRANSLATE_ID + 5  # 50363
N_TIMESTAMPS = VOCAB_SIZE - NO_TIMESTAMPS_ID - 1  # 1501: <|0.00|> .. <|30.00|>

SPECIAL_AFTER_LANGS = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)

# A few of Whisper's real suppressed ids: byte tokens of symbols such as
# '"', '#', '(' (all below 256, so valid here) and the task/prev tokens.
SUPPRESS_TOKENS = [1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93]
SUPPRESS_TOKENS += [SOT_ID, TRANSLATE_ID, TRANSCRIBE_ID, TRANSCRIBE_ID + 1, TRANSCRIBE_ID + 2, TRANSCRIBE_ID + 3]


def _byte_alphabet() -> list[str]:
    """The 256 byte-level characters in GPT-2 id order (so id 220 is 'Ġ', a space)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _build_tokenizer():
    """A byte-level BPE tokenizer with Whisper's exact id layout (51865 tokens)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    alphabet = _byte_alphabet()
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    # Fillers up to id 50255 are two-character byte-level strings, so every
    # token decodes to real text. The first ones get merges (" a".." z", then
    # letter pairs) so that English text encodes to multi-byte tokens too.
    letters = "abcdefghijklmnopqrstuvwxyz"
    merged = [("Ġ", c) for c in letters] + [(a, b) for a in letters for b in letters]
    fillers = ["".join(p) for p in merged]
    seen = set(fillers)
    for a in alphabet:
        for b in alphabet:
            if len(vocab) + len(fillers) >= EMPTY_TOKEN_ID:
                break
            if a + b not in seen:
                fillers.append(a + b)
                seen.add(a + b)
    for tok in fillers[: EMPTY_TOKEN_ID - len(vocab)]:
        vocab[tok] = len(vocab)
    # CTranslate2 only treats a Whisper vocabulary as multilingual (language
    # detection on) when it holds this empty token, as the real one does.
    vocab[""] = EMPTY_TOKEN_ID
    assert len(vocab) == EOT_ID

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merged))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|startoftranscript|>"]
    specials += [f"<|{code}|>" for code in LANGUAGES] + list(SPECIAL_AFTER_LANGS)
    # Ids are assigned in list order, right after the BPE vocabulary (50257).
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    # Timestamps are plain added tokens, as in the real tokenizer.json.
    tok.add_tokens([AddedToken("<|%.2f|>" % (i * 0.02), special=False, normalized=False) for i in range(N_TIMESTAMPS)])
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftranscript|> <|notimestamps|> $A <|endoftext|>",
        pair="<|startoftranscript|> <|notimestamps|> $A $B <|endoftext|>",
        special_tokens=[("<|startoftranscript|>", SOT_ID), ("<|notimestamps|>", NO_TIMESTAMPS_ID), ("<|endoftext|>", EOT_ID)],
    )
    # Guard the layout the runtime relies on; a drift here fails silently later.
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    assert tok.token_to_id("<|notimestamps|>") == NO_TIMESTAMPS_ID
    assert tok.token_to_id("<|30.00|>") == VOCAB_SIZE - 1
    assert tok.token_to_id("Ġ") == 220
    return tok


def build_into(folder: Path, seed: int, *, n_mels: int = 80, quantization: str = "int8",
               preprocessor: bool = True) -> None:
    """Write a tiny faster-whisper model folder into ``folder`` (exists, empty).

    The defaults are the tiny kit's. The replicas of real repositories
    (``enfoads.testing.replicas``) ask for large-v3-turbo's 128 mel bins, the
    published float16 conversions, and no ``preprocessor_config.json`` where
    the real repository has none (faster-whisper then computes 80 mel bins).
    """
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    folder = Path(folder)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="tiny-whisper-hf-") as tmp:
        hf_dir = Path(tmp) / "hf"
        hf_dir.mkdir()

        tok = _build_tokenizer()
        tok.save(str(hf_dir / "tokenizer.json"))
        # The converter loads the vocabulary through AutoTokenizer.
        (hf_dir / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "tokenizer_class": "WhisperTokenizer",
                    "bos_token": "<|endoftext|>",
                    "eos_token": "<|endoftext|>",
                    "unk_token": "<|endoftext|>",
                    "pad_token": "<|endoftext|>",
                    "model_max_length": 1024,
                }
            )
        )

        config = WhisperConfig(
            vocab_size=VOCAB_SIZE,
            num_mel_bins=n_mels,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            # Real context lengths: 30 s of audio = 3000 mel frames = 1500
            # encoder positions; faster-whisper always pads to 30 s.
            max_source_positions=1500,
            max_target_positions=448,
            decoder_start_token_id=SOT_ID,
            bos_token_id=EOT_ID,
            eos_token_id=EOT_ID,
            pad_token_id=EOT_ID,
            suppress_tokens=SUPPRESS_TOKENS,
            begin_suppress_tokens=[220, EOT_ID],
        )
        model = WhisperForConditionalGeneration(config).eval()
        model.generation_config = GenerationConfig(
            decoder_start_token_id=SOT_ID,
            bos_token_id=EOT_ID,
            eos_token_id=EOT_ID,
            pad_token_id=EOT_ID,
            max_length=448,
            suppress_tokens=SUPPRESS_TOKENS,
            begin_suppress_tokens=[220, EOT_ID],
            # The converter reads these: lang_to_id -> language detection ids,
            # alignment_heads -> word timestamps (cross-attention of layer 1).
            lang_to_id={f"<|{code}|>": FIRST_LANG_ID + i for i, code in enumerate(LANGUAGES)},
            task_to_id={"translate": TRANSLATE_ID, "transcribe": TRANSCRIBE_ID},
            no_timestamps_token_id=NO_TIMESTAMPS_ID,
            alignment_heads=[[1, 0], [1, 1]],
            is_multilingual=True,
            max_initial_timestamp_index=50,
        )
        model.save_pretrained(hf_dir)
        WhisperFeatureExtractor(feature_size=n_mels).save_pretrained(hf_dir)
        del model

        # Convert into a scratch folder, then move the files: the converter
        # deletes and recreates its output folder, and ``folder`` is the caller's.
        ct2_dir = Path(tmp) / "ct2"
        copy = ["tokenizer.json"] + (["preprocessor_config.json"] if preprocessor else [])
        TransformersConverter(str(hf_dir), copy_files=copy).convert(str(ct2_dir), quantization=quantization)
        for path in sorted(ct2_dir.iterdir()):
            shutil.move(str(path), str(folder / path.name))
