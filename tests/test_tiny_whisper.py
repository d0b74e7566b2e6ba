"""Tiny random-weight Whisper: built in the real faster-whisper format, loaded
by the product's loader, run end to end on real (espeak-ng) speech."""
import os
import shutil
import subprocess
import sys
import wave

import pytest

from enfoads.models.loaders.speech import load_whisper, whisper_model_bytes
from enfoads.models.tiny import ensure_tiny, folder_bytes

# Small decoding budget: library defaults (beam 5, temperature fallback) take
# seconds on random weights. without_timestamps=True because random weights
# emit timestamp tokens at random, which faster-whisper turns into segments
# past the end of the audio; in this mode segment bounds come from the audio
# window and word bounds from the alignment heads, which is what we check.
FAST = dict(beam_size=1, temperature=0, max_new_tokens=6, word_timestamps=True, without_timestamps=True)
PAUSE_S = 3


@pytest.fixture(scope="module")
def tiny_whisper(models_dir):
    return ensure_tiny(models_dir, "tiny-whisper")


@pytest.fixture(scope="module")
def model(tiny_whisper):
    return load_whisper(tiny_whisper, device="cpu", compute_type="int8")


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    """Two spoken sentences with a long pause between them, so VAD has work to do."""
    if shutil.which("espeak-ng") is None:
        msg = "espeak-ng is not installed (apt-get install -y espeak-ng)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    text = (
        "<speak>Hello world, this is a test of the speech recognizer. "
        f'<break time="{PAUSE_S * 1000}ms"/> The second sentence ends here.</speak>'
    )
    subprocess.run(["espeak-ng", "-m", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        duration = w.getnframes() / w.getframerate()
    return path, duration


def test_folder_is_a_complete_small_faster_whisper_model(tiny_whisper):
    for name in ("model.bin", "config.json", "vocabulary.json", "tokenizer.json", "preprocessor_config.json"):
        assert (tiny_whisper / name).is_file(), name
    size = whisper_model_bytes(tiny_whisper)
    assert size == folder_bytes(tiny_whisper)
    assert size < 20 * 1024 * 1024


def test_second_ensure_reuses_the_folder(models_dir, tiny_whisper):
    before = (tiny_whisper / "model.bin").stat().st_mtime_ns
    assert ensure_tiny(models_dir, "tiny-whisper") == tiny_whisper
    assert (tiny_whisper / "model.bin").stat().st_mtime_ns == before


def test_build_is_deterministic(tmp_path):
    # CTranslate2 writes model.bin byte for byte the same for the same weights,
    # so the whole folder (weights, config, vocabulary, tokenizer) is compared.
    from enfoads.models.tiny.whisper import build_into

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    build_into(a, 7)
    build_into(b, 7)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert "model.bin" in names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("vad_filter", [False, True])
def test_transcribes_real_speech(model, speech_wav, vad_filter):
    path, duration = speech_wav
    segments, info = model.transcribe(str(path), vad_filter=vad_filter, **FAST)
    segments = list(segments)

    assert info.language in model.supported_languages
    assert 0 < info.language_probability <= 1
    assert info.duration == pytest.approx(duration, abs=0.05)
    if vad_filter:
        # Silero VAD drops most of the pause; timestamps stay on the original timeline.
        assert info.duration_after_vad < duration - PAUSE_S / 2
    else:
        assert info.duration_after_vad == pytest.approx(info.duration)

    assert segments
    eps = 0.01
    last_end = 0.0
    for seg in segments:
        assert last_end - eps <= seg.start <= seg.end <= duration + eps
        last_end = seg.end
        for word in seg.words:
            assert seg.start - eps <= word.start <= word.end <= seg.end + eps
            assert isinstance(word.word, str)


def test_float16_on_cpu_is_rejected_clearly(tiny_whisper):
    with pytest.raises(ValueError, match="int8"):
        load_whisper(tiny_whisper, device="cpu", compute_type="float16")


def test_missing_folder_names_it_and_the_fix(tmp_path):
    missing = tmp_path / "faster-whisper-large-v3"
    with pytest.raises(FileNotFoundError, match="enfoads preload") as err:
        load_whisper(missing)
    assert str(missing) in str(err.value)

    missing.mkdir()  # a folder without model.bin (e.g. an interrupted download)
    with pytest.raises(FileNotFoundError, match="model.bin"):
        load_whisper(missing)


def test_importing_the_loader_stays_light():
    code = (
        "import sys, enfoads.models.loaders.speech; "
        "heavy = [m for m in ('torch', 'ctranslate2', 'faster_whisper') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
