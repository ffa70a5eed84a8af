"""Install path 2C's engines: a model loaded into the benchmark's own process.

Two loaders. ``transformers`` is the real Hugging Face loading path (``AutoModel.from_pretrained``
on a local directory, ``torch.inference_mode``), for text-to-waveform models such as VITS.
``espeak-ng`` loads libespeak-ng with ctypes: a small engine that really speaks, so that the
path can pass on a machine without weights. Neither streams: callers time the whole synthesis.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bench_py.audio import Pcm

if TYPE_CHECKING:  # transformers is imported when a model is loaded (the inprocess extra)
    from transformers import PreTrainedTokenizerBase


class LoadError(RuntimeError):
    """The engine could not be loaded; ``status`` says whether the host or the software stopped it."""

    def __init__(self, message: str, status: str = "blocked") -> None:
        super().__init__(message)
        self.status = status


class InProcessEngine(Protocol):
    name: str
    versions: dict[str, str]

    def synthesize(self, text: str, voice: str | None) -> Pcm: ...


class EspeakLibrary:
    """libespeak-ng in synchronous mode: ``espeak_Synth`` returns once the callback has had every sample."""

    name = "espeak-ng"
    _lock = threading.Lock()  # the library keeps global state: one synthesis at a time

    def __init__(self) -> None:
        found = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            lib = ctypes.CDLL(found)
        except OSError as error:
            raise LoadError(f"libespeak-ng cannot be loaded: {error} (apt install libespeak-ng1)") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint]
        lib.espeak_Synth.argtypes += [ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        self.rate = lib.espeak_Initialize(2, 0, None, 0)  # 2: AUDIO_OUTPUT_SYNCHRONOUS
        if self.rate <= 0:
            raise LoadError(f"espeak_Initialize failed ({self.rate}): no espeak-ng data on this host")
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._callback = callback_type(self._collect)  # kept referenced: the library calls it later
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self.versions = {"libespeak-ng": lib.espeak_Info(None).decode(), "library": found}

    def _collect(self, wav: Any, count: int, _events: Any) -> int:
        if wav and count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def synthesize(self, text: str, voice: str | None) -> Pcm:
        data = text.encode() + b"\0"
        with self._lock:
            self._chunks = []
            if voice and self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            status = self._lib.espeak_Synth(data, len(data), 0, 1, 0, 1, None, None)  # POS_CHARACTER, CHARS_UTF8
            self._lib.espeak_Synchronize()
            if status != 0:
                raise RuntimeError(f"espeak_Synth failed ({status})")
            samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return Pcm(samples.astype(np.int16), self.rate)


@contextlib.contextmanager
def _plain_sys_intern() -> Iterator[None]:
    """Ansible modules replace ``sys.intern`` with a callable object (ansible-core's str-subclass
    patch); ``torch._dynamo`` registers ``sys.intern`` and refuses anything but a function.
    Importing with the original in place lets the real loader run inside a module."""
    patched = sys.intern
    original = getattr(patched, "unpatched_implementation", None)
    if original is None:
        yield
        return
    sys.intern = original
    try:
        yield
    finally:
        sys.intern = patched


class TransformersSpeech:
    """A Hugging Face text-to-waveform model (``outputs.waveform``) loaded from a local directory."""

    name = "transformers"
    tokenizer: PreTrainedTokenizerBase | None

    def __init__(self, model_path: str | Path, seed: int = 0) -> None:
        try:
            with _plain_sys_intern():
                import torch
                import torch._dynamo  # registers sys.intern now, while it is the original
                import transformers
        except ImportError as error:
            hint = "pip install 'voxbench[inprocess]'"
            raise LoadError(f"transformers is not installed here: {error} ({hint})") from None
        path = Path(model_path).expanduser()
        try:
            self.model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        except (ValueError, OSError) as error:  # transformers' own word that it cannot load this checkpoint
            raise LoadError(f"transformers cannot load {path}: {error}", status="unsupported") from None
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError, TypeError):
            self.tokenizer = None  # a model shipped without one: characters map to ids below
        self.rate = int(getattr(self.model.config, "sampling_rate", 16000))
        self.vocab = int(getattr(self.model.config, "vocab_size", 256))
        self._torch, self._seed = torch, seed
        self.versions = {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "architecture": type(self.model).__name__,
        }

    def synthesize(self, text: str, voice: str | None) -> Pcm:
        torch = self._torch
        if self.tokenizer is not None:
            ids = self.tokenizer(text, return_tensors="pt")["input_ids"]
        else:
            ids = torch.tensor([[1 + (ord(ch) % (self.vocab - 1)) for ch in text]])
        torch.manual_seed(self._seed)  # VITS samples noise: the same text gives the same audio
        with torch.inference_mode():
            waveform = self.model(input_ids=ids).waveform[0].float().numpy()
        return Pcm((np.clip(waveform, -1.0, 1.0) * 32767).astype(np.int16), self.rate)


def cached_snapshot(model: str, cache_dir: str | None) -> Path:
    """The model's files in the host's Hugging Face cache; never a download (that would happen under
    the gate): a model that is not there is this host's problem, with the command that fixes it."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as error:
        raise LoadError(f"huggingface_hub is not installed here: {error} (pip install 'voxbench[inprocess]')") from None
    folder = str(Path(cache_dir).expanduser() / "hub") if cache_dir else None
    try:
        return Path(snapshot_download(model, cache_dir=folder, local_files_only=True))
    except LocalEntryNotFoundError:
        where = folder or "the default Hugging Face cache"
        raise LoadError(f"{model} is not in {where}: run `voxbench prefetch` (or setup.yml with prefetch on)") from None


def load(
    loader: str, model_path: str | None, model: str | None = None, cache_dir: str | None = None
) -> InProcessEngine:
    """``espeak-ng``, or ``transformers`` from ``model_path`` — or, without one, ``model`` from the
    host's Hugging Face cache."""
    if loader == "espeak-ng":
        return EspeakLibrary()
    if loader == "transformers":
        if not model_path and not model:
            raise LoadError(
                "candidate.in_process.model_path (or candidate.model) is required for the transformers loader"
            )
        return TransformersSpeech(model_path or cached_snapshot(str(model), cache_dir))
    raise LoadError(f"unknown in-process loader {loader!r}")
