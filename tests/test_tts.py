"""Text to speech: the tiny Piper voice through piper-tts's real loader, espeak-ng, voice ids and fallbacks."""
from __future__ import annotations

import os
import shutil
import socket

import numpy as np
import pytest

from enfoads.models import voices
from enfoads.errors import InvalidInput
from enfoads.models.tiny.piper import VOICE_NAME, ensure_tiny_piper, tiny_piper_dir
from enfoads.services.tts import TTS, EdgeProbe, available_voices, clean_text, find_piper_voice, split_text

TINY_ID = f"piper:{VOICE_NAME}"
FRONTEND_IDS = ("es-CO-SalomeNeural", "es-CO-GonzaloNeural", "es-MX-DaliaNeural", "es-MX-JorgeNeural")


def need_espeak():
    if shutil.which("espeak-ng") is None:
        msg = "espeak-ng is not installed (apt-get install -y espeak-ng)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def need_piper():
    try:
        import piper  # noqa: F401
    except ImportError:
        msg = "piper-tts is not installed (pip install piper-tts)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


@pytest.fixture(scope="module")
def tiny_models(models_dir):
    need_piper()
    ensure_tiny_piper(models_dir)
    return models_dir


@pytest.fixture
def offline_probe():
    """Edge "reachable" only if a TCP connection to a closed local port succeeds: never."""
    return EdgeProbe(host=("127.0.0.1", closed_port()), timeout_s=0.5)


# --------------------------------------------------------------------------- text


def test_split_text_sentences_clauses_paragraphs():
    units = split_text("Hola Sr. García, ¿cómo está? Muy bien. Espera... y luego sigue.\n\n¡Nuevo párrafo!")
    assert [u.text for u in units] == [
        "Hola Sr. García, ¿cómo está?", "Muy bien.", "Espera... y luego sigue.", "¡Nuevo párrafo!"]
    assert [u.boundary for u in units] == ["sentence", "sentence", "paragraph", "end"]

    long = ("Esta frase es larga a propósito, tiene muchas comas y cláusulas, sigue un buen rato sin parar, "
            "y solo termina cuando ya nadie la puede leer de una vez en pantalla.")
    pieces = split_text(long, max_chars=50)
    assert len(pieces) > 2 and all(len(p.text) <= 50 for p in pieces)
    assert " ".join(p.text for p in pieces) == long
    assert [p.boundary for p in pieces][:-1] == ["clause"] * (len(pieces) - 1)

    assert split_text(" ... !!! ") == []
    assert clean_text("a\x00b\t\tc\r\n\r\n\r\nd") == "a b c\n\nd"


# --------------------------------------------------------------------------- Piper


def test_tiny_piper_voice_through_piper_loader(tiny_models):
    from piper import PiperVoice

    tts = TTS(tiny_models, edge=False)
    assert find_piper_voice(tiny_models, voices.get(TINY_ID)) is not None
    speech = tts.synthesize("Hola, ¿cómo estás? Esto es una prueba de voz.", TINY_ID)
    (loaded,) = tts._piper._loaded.values()
    assert isinstance(loaded, PiperVoice) and loaded.config.sample_rate == speech.sample_rate == 16000
    assert speech.voice.id == TINY_ID and not speech.choice.fallback
    assert [s.text for s in speech.segments] == ["Hola, ¿cómo estás?", "Esto es una prueba de voz."]
    # Segments are exact sample positions: ordered, inside the audio, sound inside, silence between.
    a, b = speech.segments
    assert 0 < a.start < a.end < b.start < b.end < speech.duration
    rate = speech.sample_rate
    assert np.abs(speech.samples[int(a.start * rate):int(a.end * rate)]).max() > 0.5
    assert np.abs(speech.samples[int(a.end * rate) + 1:int(b.start * rate) - 1]).max() == 0
    assert 0.85 <= np.abs(speech.samples).max() <= 0.9 + 1e-6
    # Deterministic, and speed reaches Piper's length_scale.
    again = tts.synthesize("Hola, ¿cómo estás? Esto es una prueba de voz.", TINY_ID)
    assert np.array_equal(again.samples, speech.samples)
    slow = tts.synthesize("Hola, ¿cómo estás? Esto es una prueba de voz.", TINY_ID, speed=0.5)
    speaking = sum(s.end - s.start for s in speech.segments)
    assert sum(s.end - s.start for s in slow.segments) == pytest.approx(2 * speaking, rel=0.15)
    wav = speech.wav_bytes()
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 2 * len(speech.samples)


def test_piper_voices_found_in_every_models_dir_layout(tiny_models, tmp_path, offline_probe):
    src = tiny_piper_dir(tiny_models) / f"{VOICE_NAME}.onnx"
    claude = voices.get("piper:es_MX-claude-high")
    davefx = voices.get("piper:es_ES-davefx-medium")
    # piper-voices layout under <models>/piper, and the Hugging Face cache layout.
    layouts = {
        claude: tmp_path / "piper" / f"{claude.repo_path}.onnx",
        davefx: tmp_path / "models--rhasspy--piper-voices" / "snapshots" / "abc123" / f"{davefx.repo_path}.onnx",
    }
    for dest in layouts.values():
        dest.parent.mkdir(parents=True)
        shutil.copy(src, dest)
        shutil.copy(f"{src}.json", f"{dest}.json")
    # A voice the catalogue does not know, dropped in flat.
    shutil.copy(src, tmp_path / "piper" / "en_US-custom-low.onnx")
    shutil.copy(f"{src}.json", tmp_path / "piper" / "en_US-custom-low.onnx.json")

    tts = TTS(tmp_path, edge_probe=offline_probe)
    listed = [v.id for v in tts.voices()]
    assert {"piper:es_MX-claude-high", "piper:es_ES-davefx-medium", "piper:en_US-custom-low"} <= set(listed)
    assert TINY_ID not in listed  # not built in this models dir
    assert tts.default().id == "piper:es_MX-claude-high"  # Piper is the default when installed
    # The frontend's female Mexican voice, edge being unreachable, goes to the closest Piper voice.
    choice = tts.resolve("es-MX-DaliaNeural")
    assert choice.voice.id == "piper:es_MX-claude-high" and choice.fallback
    assert tts.resolve("piper:en_US-custom-low").voice.engine_voice == "en_US-custom-low"
    speech = tts.synthesize("Hello there.", "es_ES-davefx-medium")  # a bare Piper name works too
    assert speech.voice.id == "piper:es_ES-davefx-medium" and speech.duration > 0.5


# --------------------------------------------------------------------------- espeak-ng


def test_espeak_backend():
    need_espeak()
    tts = TTS("/nonexistent-models", edge=False)
    speech = tts.synthesize("Buenos días. Bienvenidos a la tienda.", "espeak:es-419+f3")
    assert speech.sample_rate == 22050 and speech.voice.backend == "espeak"
    assert len(speech.segments) == 2 and 1.5 < speech.duration < 8
    a, b = speech.segments
    assert np.abs(speech.samples[int(a.start * 22050):int(a.end * 22050)]).max() > 0.3
    assert b.start - a.end == pytest.approx(0.3, abs=0.01)  # the pause after a sentence
    assert speech.segments[-1].end + 0.35 == pytest.approx(speech.duration, abs=0.01)  # the tail
    faster = tts.synthesize("Buenos días. Bienvenidos a la tienda.", "espeak:es-419+f3", speed=1.6)
    assert faster.duration < speech.duration * 0.85
    progress = []
    tts.synthesize("Uno. Dos. Tres.", "espeak:es", progress=lambda f, m: progress.append((f, m)))
    assert [m for _f, m in progress] == ["speech 1/3", "speech 2/3", "speech 3/3"] and progress[-1][0] == 1.0


# --------------------------------------------------------------------------- voice ids


def test_frontend_ids_map_to_offline_voices_when_edge_is_unreachable(tiny_models, offline_probe):
    need_espeak()
    tts = TTS(tiny_models, edge_probe=offline_probe)
    expected_gender = {"es-CO-SalomeNeural": "female", "es-CO-GonzaloNeural": "male",
                       "es-MX-DaliaNeural": "female", "es-MX-JorgeNeural": "male"}
    for vid in FRONTEND_IDS:
        choice = tts.resolve(vid)
        assert choice.fallback and choice.requested == vid
        assert choice.voice.offline and choice.voice.backend == "espeak" and not choice.voice.tiny
        assert choice.voice.language == "es-419" and choice.voice.gender == expected_gender[vid]
        assert vid in choice.note and choice.voice.id in choice.note
        assert choice.to_dict()["fallback"] is True and choice.to_dict()["used"] == choice.voice.id
        # The namespaced edge id maps the same way.
        assert tts.resolve(f"edge:{vid}").voice == choice.voice
    speech = tts.synthesize("Hola.", "es-MX-DaliaNeural")
    assert speech.choice.fallback and speech.voice.id == "espeak:es-419+f3"


def test_available_voices_lists_usable_voices_in_frontend_fields(tiny_models, offline_probe):
    need_espeak()
    tts = TTS(tiny_models, edge_probe=offline_probe)
    listed = available_voices(tts)
    for v in listed:
        assert set(v) == {"id", "name", "language", "gender", "country", "backend", "offline"}
        assert v["backend"] in ("piper", "espeak") and v["offline"] is True
    ids = [v["id"] for v in listed]
    assert TINY_ID in ids and "espeak:es-419" in ids and not any(i.startswith("edge:") for i in ids)
    assert ids.index(TINY_ID) < ids.index("espeak:es-419")  # Piper first
    assert tts.default().id == "espeak:es-419"  # the tiny voice is never the default


def test_edge_probe_connects_and_can_be_turned_off():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        probe = EdgeProbe(host=server.getsockname(), timeout_s=0.5)
        assert probe._connect() is True
    assert EdgeProbe(host=("127.0.0.1", closed_port()), timeout_s=0.5)._connect() is False
    off = EdgeProbe(enabled=False)
    assert off.reachable() is False
    tts = TTS("/nonexistent-models", edge=False)
    assert tts.probe.enabled is False and not any(v.backend == "edge" for v in tts.voices())


def test_bad_voice_ids_name_the_field(tiny_models):
    tts = TTS(tiny_models, edge=False)
    for bad, fragment in [("nope", "unknown voice"), ("edge:xx-XX-NobodyNeural", "unknown voice"),
                          ("piper:es_MX-claude-high", "not installed"), (42, "voice id")]:
        with pytest.raises(InvalidInput) as exc:
            tts.resolve(bad, field="voice_id")
        assert exc.value.fields.keys() == {"voice_id"} and fragment in exc.value.message
    with pytest.raises(InvalidInput) as exc:
        tts.synthesize("Hola.", TINY_ID, speed=3)
    assert "speed" in exc.value.fields
    with pytest.raises(InvalidInput) as exc:
        tts.synthesize("?!", TINY_ID)
    assert "script" in exc.value.fields
    assert tts.resolve(None).requested is None and tts.resolve("  ").requested is None


def test_catalogue_is_consistent():
    for voice in voices.CATALOG.values():
        assert voice.id == f"{voice.backend}:{voice.engine_voice}"
        assert voice.gender in ("female", "male", "unknown")
        if voice.backend == "piper" and not voice.tiny:
            model, config = voice.piper_files
            assert model.endswith(f"/{voice.engine_voice}.onnx") and config == f"{model}.json"
    for f in voices.FRONTEND_VOICES.values():
        assert voices.get(f.edge) is not None and voices.canonical_id(f.id) == f.edge
        assert all(voices.get(x) is not None for x in f.fallbacks)
        assert voices.get(f.fallbacks[-1]).backend == "espeak"  # always something offline
    assert voices.canonical_id("es_MX-claude-high") == "piper:es_MX-claude-high"
    assert voices.canonical_id("ESPEAK:es-419") == "espeak:es-419"
