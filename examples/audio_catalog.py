"""A small audio catalog from ../shared/data/audio: each clip an item whose title is the first line of
its licence file and whose ``licence`` field keeps that file's whole text (stored with the item).

    .venv/bin/python examples/audio_catalog.py /tmp/audio-demo
    .venv/bin/llmrec ingest --catalog /tmp/audio-demo/items.jsonl --audio
    .venv/bin/llmrec recommend --data-dir ~/.cache/llmrec/data/items --history 198-209-0000 -k 3 --json

The ingest embeds each clip with Whisper's encoder and stores its transcript (speech clips get their
words, music and animal sounds an empty transcript); `recommend --json` then says
``"modalities": {"audio": "transcript"}`` for the items whose transcript the LLM read.
"""

import argparse
import json
from pathlib import Path

AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "audio"


def build(out: str | Path, audio_dir: str | Path = AUDIO) -> Path:
    """Write ``out/items.jsonl`` (one row per ``*.ogg`` with its ``.txt``) and return its path.
    Raises FileNotFoundError when the folder holds no clips."""
    clips = sorted(Path(audio_dir).glob("*.ogg"))
    if not clips:
        raise FileNotFoundError(f"no .ogg clips in {audio_dir}")
    rows = []
    for clip in clips:
        lic = clip.with_suffix(".txt")
        text = lic.read_text(encoding="utf-8").strip() if lic.exists() else ""
        title = text.splitlines()[0].strip() if text else clip.stem.replace("_", " ")
        rows.append({"id": clip.stem, "title": title, "audio": str(clip.resolve()), "licence": text})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "items.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="folder for items.jsonl")
    ap.add_argument("--audio-dir", default=str(AUDIO), help="folder of .ogg clips with .txt licences")
    args = ap.parse_args(argv)
    print(build(args.out, args.audio_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
