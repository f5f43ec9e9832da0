"""A trained modality projector's checkpoint, and the identities it must match to be used.

Folder layout (written to a temporary folder, then renamed into place)::

    manifest.json   format, modality, the encoder's id, the base LLM's identity, the prompt's hash,
                    the training report (params, per-epoch losses, title top-1 untrained / trained)
    projector.pt    the projector's spec and weights, and the standardisation (mean, std [d_mod])

A checkpoint is refused (:class:`ProjectorMismatchError`, naming each difference) when the encoder
its vectors came from, the base LLM or the prompt is not the one in use.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import torch

from llmrec.errors import ModelError
from llmrec.rank import checkpoint as rank_checkpoint

FORMAT = 1


class ProjectorMismatchError(ModelError):
    """A projector checkpoint was trained for another encoder, base LLM or prompt."""


def identity(cfg, modality: str, encoder: str) -> dict:
    """What a ``modality`` projector trained under ``cfg`` on ``encoder``'s vectors must match."""
    from llmrec.projector.prompt import template_hash
    from llmrec.rank.checkpoint import base_identity

    return {"modality": modality, "encoder": encoder, "base_model": base_identity(cfg), "template": template_hash()}


def save(folder: str | Path, model, ident: dict, report: dict) -> Path:
    """Write ``model`` (an :class:`~llmrec.projector.train.AlignedProjector`) with its identity and report.
    Replaces an existing checkpoint only once the new one is complete. Returns the folder."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({**model.projector.state(), "mean": model.norm.mean.cpu(), "std": model.norm.std.cpu()},
               tmp / "projector.pt")
    (tmp / "manifest.json").write_text(json.dumps({"format": FORMAT, **ident, "report": report}, indent=1))
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(folder)
    return folder


def read_manifest(folder: str | Path) -> dict:
    """The checkpoint's manifest. Raises ModelError when missing or unreadable."""
    return rank_checkpoint.read_manifest(folder, "projector", "train-projector")


def check(manifest: dict, expected: dict, folder: str | Path) -> None:
    """Raise ProjectorMismatchError naming every key of ``expected`` whose value differs, or a format
    this llmrec cannot read."""
    rank_checkpoint.check(manifest, expected, folder, ProjectorMismatchError, "projector", "train-projector", FORMAT)


def load(folder: str | Path, expected: dict):
    """The :class:`~llmrec.projector.train.AlignedProjector` of a checkpoint, in eval mode, on the CPU.

    Args:
        expected: :func:`identity` of what is in use.

    Raises:
        ModelError: missing or damaged files.
        ProjectorMismatchError: the encoder, base LLM, prompt or modality differs.
    """
    from llmrec.llm.projector import Projector
    from llmrec.projector.train import AlignedProjector, Standardise

    folder = Path(folder)
    man = read_manifest(folder)
    check(man, expected, folder)
    try:
        state = torch.load(folder / "projector.pt", weights_only=False)
        model = AlignedProjector(Standardise(state["mean"].numpy(), state["std"].numpy()), Projector.from_state(state))
    except (OSError, KeyError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise ModelError(f"projector checkpoint {folder} is damaged: {e}") from e
    model.manifest = man
    return model.eval()
