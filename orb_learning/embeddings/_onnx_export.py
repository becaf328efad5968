"""Export of a local model to ONNX, its 8-bit quantisation, and the cache that keeps both.

Done once per model and recipe, from the local files only, at the first use of an ONNX
backend (a few seconds, under a file lock so that concurrent processes export once), then
reused: ``$ORB_LEARNING_EMBEDDING_CACHE``, else ``$XDG_CACHE_HOME/orb-learning/onnx``, else
``~/.cache/orb-learning/onnx``. The cache key is a hash of the model's files and of the
recipe below. Next to the graphs, the reference embeddings of a few probe sentences,
computed by sentence-transformers (torch, float32), let every load check that the graph
still reproduces the reference.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import logging
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orb_learning.errors import EmbeddingModelError

logger = logging.getLogger(__name__)
"""Says when the one-time export starts and ends (INFO): the command line shows it, since the
first run otherwise sits silent for the 10-15 s it takes."""
CACHE_ENV_VAR = "ORB_LEARNING_EMBEDDING_CACHE"
RECIPE = "torchscript-opset17-eager-attention;ort-bert-fusion;matmulnbits-8bit-block32-int8"
QUANT_BLOCK_SIZE = 32
QUALITY_FLOOR = 0.99  # least cosine to the reference, per probe sentence
PROBES = (
    "Ok",
    "Fix the login bug",
    "Optimize slow queries in the database layer",
    "Add retries with exponential backoff to the HTTP client and log every failed attempt",
    "feat(auth): add passkey support",
    "Traceback (most recent call last): KeyError: 'user_id' in app.py line 42",
    "Corrige el error de inicio de sesión en la página principal",
    "修复登录页面的错误",
    "Split the 40-minute end-to-end test suite into shards that run in parallel on four "
    "runners, make the slowest shard finish under 12 minutes, and report the timings of "
    "every shard in the pull request so that regressions are visible before they merge",
    "",
)


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV_VAR, "").strip()
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "orb-learning" / "onnx"


def fingerprint(directory: Path) -> str:
    """A hash of the recipe and of every file of the model (names and contents)."""
    digest = hashlib.sha256(RECIPE.encode())
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory)
        if relative.parts[0].startswith(".") or path.suffix == ".md":
            continue
        digest.update(f"\0{relative.as_posix()}\0".encode())
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:20]


def model_directory(directory: Path, name: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name or name).strip("_") or "model"
    return cache_root() / f"{slug}-{fingerprint(directory)}"


def ensure_model(directory: Path, name: str, variant: str) -> Path:
    """The path of the ``variant`` ("fp32" or "int8") graph, made first if missing."""
    target_dir = model_directory(directory, name)
    target = target_dir / f"{variant}.onnx"
    if target.is_file() and (target_dir / "reference.npy").is_file():
        return target
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddingModelError(
            f"cannot create the ONNX cache {target_dir} ({exc}): set {CACHE_ENV_VAR} to a "
            "writable directory, or use the torch backend"
        ) from exc
    with _locked(target_dir / ".lock"):
        for stale in target_dir.glob(".*.tmp.*"):  # left by a writer that died holding the lock
            stale.unlink(missing_ok=True)
        fp32 = target_dir / "fp32.onnx"
        reference = target_dir / "reference.npy"
        exporting = not fp32.is_file() or not reference.is_file()
        quantising = variant == "int8" and not target.is_file()
        started = time.perf_counter()
        if exporting or quantising:
            logger.info(
                "Exporting the embedding model to ONNX %s, once (about 10-15 s; cached in %s)...",
                variant,
                target_dir,
            )
        if exporting:
            _atomically(reference, lambda tmp: _save_reference(directory, name, tmp))
            _atomically(fp32, lambda tmp: _export(directory, name, tmp))
        if quantising:
            _atomically(target, lambda tmp: _quantize(fp32, tmp))
        if exporting or quantising:
            logger.info("Exported the embedding model in %.1f s.", time.perf_counter() - started)
    return target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (POSIX); elsewhere, atomic renames suffice."""
    with path.open("a") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: two exports may race, each result is whole
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary name, then rename: readers never see half a file."""
    temporary = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _quiet_hf() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    hf_logging = importlib.import_module("transformers.utils.logging")
    hf_logging.disable_progress_bar()
    return hf_logging


def _save_reference(directory: Path, name: str, target: Path) -> None:
    """The probes embedded by the reference: sentence-transformers, torch, float32."""
    import numpy as np

    from ._model_files import load_sentence_transformer

    model = load_sentence_transformer(str(directory), name, "cpu")
    rows = model.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True)
    with target.open("wb") as stream:
        np.save(stream, np.asarray(rows, dtype=np.float32))


def _export(directory: Path, name: str, target: Path) -> None:
    """Trace the transformer to ONNX (dynamic batch and length), then fuse its operators."""
    try:
        import torch
        from onnxruntime.transformers import optimizer
        from tokenizers import Tokenizer
        from transformers import AutoConfig, AutoModel
    except ImportError as exc:
        raise EmbeddingModelError(f"cannot export {name} to ONNX: {exc}") from exc
    _quiet_hf()
    try:
        model = AutoModel.from_pretrained(
            str(directory), local_files_only=True, attn_implementation="eager"
        ).eval()
    except Exception as exc:
        raise EmbeddingModelError(f"cannot load {name} from {directory} for export: {exc}") from exc
    names = ["input_ids", "attention_mask", "token_type_ids"]
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        names.pop()
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    pad_id = tokenizer.token_to_id("[PAD]") or tokenizer.token_to_id("<pad>") or 0
    tokenizer.enable_padding(pad_id=pad_id)  # texts of different lengths: masks get traced
    tokenizer.enable_truncation(max_length=64)
    samples = tokenizer.encode_batch(["Fix the login bug", "Optimize slow queries now please"])
    columns = {
        "input_ids": [s.ids for s in samples],
        "attention_mask": [s.attention_mask for s in samples],
        "token_type_ids": [s.type_ids for s in samples],
    }
    inputs = tuple(torch.tensor(columns[n], dtype=torch.int64) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    raw = target.with_name(target.stem + ".raw.onnx")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _last_hidden_state(model, names),
                inputs,
                str(raw),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                do_constant_folding=True,
                dynamo=False,
            )
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
        fused = optimizer.optimize_model(
            str(raw),
            model_type="bert",
            num_heads=int(getattr(config, "num_attention_heads", 0)),
            hidden_size=int(getattr(config, "hidden_size", 0)),
            opt_level=1,
        )
        fused.save_model_to_file(str(target))
    except EmbeddingModelError:
        raise
    except Exception as exc:
        raise EmbeddingModelError(f"cannot export {name} to ONNX: {exc}") from exc
    finally:
        raw.unlink(missing_ok=True)


def _last_hidden_state(model: Any, names: list[str]) -> Any:
    """The transformer with positional inputs and one output (defined here: torch is lazy)."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(**dict(zip(names, tensors, strict=True)))[0]

    return LastHiddenState()


def _quantize(source: Path, target: Path) -> None:
    """8-bit weights in blocks of 32 along the inner dimension, products in int8.

    The activations are quantised per row and per block at run time, so a token with
    outlier values ([CLS], [SEP]) does not crush the precision of the others: per-tensor
    dynamic int8 (``quantize_dynamic``) lost up to 0.16 of cosine on short sentences.
    The fused attention keeps its float32 projection weights. Blocks of 32, not 128:
    with 128 a text encoded alone and in a batch got vectors up to 0.003 apart (ONNX
    Runtime takes another kernel path); with 32 they are the same, bit for bit.
    """
    try:
        import onnx

        with _root_logging_kept():  # the module calls logging.basicConfig(level=INFO)
            quantization = importlib.import_module(
                "onnxruntime.quantization.matmul_nbits_quantizer"
            )
    except ImportError as exc:
        raise EmbeddingModelError(f"cannot quantise the ONNX export: {exc}") from exc
    chatty = logging.getLogger(quantization.__name__)
    level = chatty.level
    chatty.setLevel(logging.WARNING)  # one INFO line per node otherwise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantizer = quantization.MatMulNBitsQuantizer(
            onnx.load(str(source)),
            bits=8,
            block_size=QUANT_BLOCK_SIZE,
            is_symmetric=True,
            accuracy_level=4,
        )
        try:
            quantizer.process()
        finally:
            chatty.setLevel(level)
        quantizer.model.save_model_to_file(str(target), False)


@contextlib.contextmanager
def _root_logging_kept() -> Iterator[None]:
    """Undo what an import does to the root logger: the host application configures it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
