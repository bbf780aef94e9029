"""Downstream classifier evaluation (SynAlign sec. 4.2, tables 1 and 4; appendix A.2.2, table 7).

A variant is judged by the accuracy and macro-F1, on the real test set, of a classifier trained on the real
training set (Gold) or on the real training set plus the variant's synthetic samples.

Two classifiers:

- :func:`evaluate_downstream` (default, fast on a CPU): scikit-learn ``LogisticRegression`` on frozen sentence
  embeddings. Logistic regression with lbfgs is deterministic, so "several seeds" are made meaningful by
  **bootstrap resampling of the training set**: for seed s, the real part and the synthetic part are each
  resampled with replacement to their own size (two independent streams derived from s). The real part's
  draw depends only on (s, number of real rows), so for a given seed every variant sees the same real
  bootstrap (paired comparison); the spread over seeds measures how much the score depends on the particular
  training sample. ``resample="none"`` trains on the sets as given (every seed then gives the same score).
- :func:`finetune_downstream` (option, GPU when present): fine-tunes the sentence-transformer with a linear
  classification head in torch, with the paper's table 7 settings (lr 5e-5, batch 32, 6 epochs, weight decay
  1e-4, warm-up 6 %); seeds change the head initialisation, dropout and data order.

Both return ``{"accuracy", "accuracy_std", "macro_f1", "macro_f1_std", ...}``: means over seeds and sample
standard deviations (ddof=1; 0 for a single seed), and the per-seed scores ``accuracy_per_seed`` /
``macro_f1_per_seed`` in the order of the seeds (the run report pairs them with gold's, seed by seed).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from .arrays import finite_matrix, require_columns

logger = logging.getLogger(__name__)

RESAMPLE_MODES = ("bootstrap", "none")


def _labels_array(name: str, labels: Sequence, size: int) -> np.ndarray:
    values = np.asarray(list(labels), dtype=object).astype(str)
    if values.shape[0] != size:
        raise ValueError(f"{name} has {values.shape[0]} labels but its embeddings/texts have {size} rows")
    return values


def _embeddings_array(name: str, embeddings: np.ndarray | None, dim: int | None = None) -> np.ndarray:
    if embeddings is None or np.size(embeddings) == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    values = finite_matrix(name, embeddings, np.float32)
    if dim is not None and values.shape[1] != dim:
        raise ValueError(f"{name} has dimension {values.shape[1]}, expected {dim}")
    return values


def _summarise(scores: list[tuple[float, float]], extra: dict) -> dict:
    accuracies = np.array([accuracy for accuracy, _ in scores], dtype=np.float64)
    macro_f1s = np.array([macro_f1 for _, macro_f1 in scores], dtype=np.float64)
    ddof = 1 if len(scores) > 1 else 0
    return {
        "accuracy": float(accuracies.mean()),
        "accuracy_std": float(accuracies.std(ddof=ddof)),
        "macro_f1": float(macro_f1s.mean()),
        "macro_f1_std": float(macro_f1s.std(ddof=ddof)),
        "n_seeds": len(scores),
        "accuracy_per_seed": accuracies.tolist(),  # in the order of the seeds: paired across variants
        "macro_f1_per_seed": macro_f1s.tolist(),
        **extra,
    }


def _score(test_labels: np.ndarray, predictions: np.ndarray, label_set: list[str]) -> tuple[float, float]:
    accuracy = accuracy_score(test_labels, predictions)
    # labels=label_set: a class never predicted (or missing from one bootstrap) counts as F1 0, not skipped.
    macro_f1 = f1_score(test_labels, predictions, labels=label_set, average="macro", zero_division=0)
    return float(accuracy), float(macro_f1)


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seed_list = [int(seed) for seed in seeds]
    if not seed_list:
        raise ValueError("seeds is empty; give at least one seed")
    return seed_list


def bootstrap_indices(seed: int, size: int, stream: int) -> np.ndarray:
    """Indices of a bootstrap resample (with replacement) of ``size`` rows, from the independent random
    stream (seed, stream): stream 0 = real part, stream 1 = synthetic part."""
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.random.default_rng([seed, stream]).integers(0, size, size=size)


def fit_predict_logistic(
    train_embeddings: np.ndarray,
    train_labels: Sequence,
    test_embeddings: np.ndarray,
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Predicted test labels of ``LogisticRegression(C, max_iter, random_state=seed)`` fitted on frozen
    embeddings: the downstream classifier of :func:`evaluate_downstream` (paper sec. 4.2), also used by the
    offline A/B estimate, which needs per-row predictions for its paired tests."""
    train = np.asarray(train_embeddings, dtype=np.float64)
    labels = np.asarray([str(label) for label in train_labels], dtype=object)
    if train.ndim != 2 or train.shape[0] != labels.shape[0]:
        raise ValueError(
            f"train_embeddings has shape {train.shape} but there are {labels.shape[0]} labels; they must be row-aligned"
        )
    if np.unique(labels).size < 2:
        raise ValueError("the training set holds a single label; a classifier needs two or more")
    model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    model.fit(train, labels)
    return model.predict(np.asarray(test_embeddings, dtype=np.float64))


def evaluate_downstream(
    train_emb: np.ndarray,
    train_labels: Sequence,
    test_emb: np.ndarray,
    test_labels: Sequence,
    seeds: Sequence[int],
    synthetic_emb: np.ndarray | None = None,
    synthetic_labels: Sequence | None = None,
    resample: str = "bootstrap",
    C: float = 1.0,
    max_iter: int = 1000,
) -> dict:
    """Logistic regression on frozen embeddings, trained on real train (+ synthetic), tested on real test.

    For each seed: resample the training parts (see the module docstring), fit
    ``LogisticRegression(C=C, max_iter=max_iter, random_state=seed)`` and score accuracy and macro-F1 (macro
    over the labels of real train and real test) on the test set. Returns the mean and the sample standard
    deviation over seeds, plus ``n_seeds``, ``n_train_real`` and ``n_train_synthetic``.

    Synthetic labels must already be in the real label set (the evaluation node drops the others).
    """
    if resample not in RESAMPLE_MODES:
        raise ValueError(f"resample must be one of {RESAMPLE_MODES}; got {resample!r}")
    seed_list = _check_seeds(seeds)
    real = _embeddings_array("train_emb", train_emb)
    if real.shape[0] == 0:
        raise ValueError("train_emb is empty: the real training set has no rows")
    dim = real.shape[1]
    test = _embeddings_array("test_emb", test_emb, dim)
    if test.shape[0] == 0:
        raise ValueError("test_emb is empty: the real test set has no rows")
    synthetic = _embeddings_array("synthetic_emb", synthetic_emb, dim)
    real_labels = _labels_array("train_labels", train_labels, real.shape[0])
    test_label_array = _labels_array("test_labels", test_labels, test.shape[0])
    synthetic_label_array = _labels_array(
        "synthetic_labels", [] if synthetic_labels is None else synthetic_labels, synthetic.shape[0]
    )
    unknown = sorted(set(synthetic_label_array) - set(real_labels))
    if unknown:
        raise ValueError(f"synthetic labels {unknown} are not in the real training labels; drop them first")
    label_set = sorted(set(real_labels) | set(test_label_array))

    scores = []
    for seed in seed_list:
        if resample == "bootstrap":
            real_index = bootstrap_indices(seed, real.shape[0], stream=0)
            synthetic_index = bootstrap_indices(seed, synthetic.shape[0], stream=1)
        else:
            real_index = np.arange(real.shape[0])
            synthetic_index = np.arange(synthetic.shape[0])
        features = np.concatenate([real[real_index], synthetic[synthetic_index]], axis=0)
        targets = np.concatenate([real_labels[real_index], synthetic_label_array[synthetic_index]])
        predictions = fit_predict_logistic(features, targets, test, C=C, max_iter=max_iter, seed=seed)
        scores.append(_score(test_label_array, predictions, label_set))
    return _summarise(
        scores, {"n_train_real": int(real.shape[0]), "n_train_synthetic": int(synthetic.shape[0])}
    )


def finetune_downstream(
    train_texts: Sequence[str],
    train_labels: Sequence,
    test_texts: Sequence[str],
    test_labels: Sequence,
    seeds: Sequence[int],
    synthetic_texts: Sequence[str] | None = None,
    synthetic_labels: Sequence | None = None,
    model: str = "all-MiniLM-L6-v2",
    device: str = "auto",
    epochs: int = 6,
    learning_rate: float = 5e-5,
    head_learning_rate: float = 1e-3,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    warmup_ratio: float = 0.06,
    max_steps: int | None = None,
    max_seq_length: int = 128,
) -> dict:
    """Fine-tune the sentence-transformer ``model`` with a linear head on real train (+ synthetic); score on
    real test. Defaults follow the paper's table 7 (lr 5e-5, batch 32, 6 epochs, weight decay 1e-4,
    warm-up 6 % then linear decay). The head gets its own ``head_learning_rate`` because the encoder's output
    is unit-normalised, so a freshly initialised head barely moves at 5e-5 in a few epochs.

    ``max_steps`` caps the number of optimiser steps (for tests and quick runs). Each seed starts from a fresh
    copy of the pretrained encoder. Runs on ``device`` ("auto" = CUDA when available).
    """
    import torch
    from sentence_transformers import SentenceTransformer

    from .device import resolve_device
    from .models import resolve_embedder

    seed_list = _check_seeds(seeds)
    real_texts = [str(text) for text in train_texts]
    if not real_texts:
        raise ValueError("train_texts is empty: the real training set has no rows")
    test_text_list = [str(text) for text in test_texts]
    if not test_text_list:
        raise ValueError("test_texts is empty: the real test set has no rows")
    synthetic_text_list = [str(text) for text in (synthetic_texts or [])]
    real_labels = _labels_array("train_labels", train_labels, len(real_texts))
    test_label_array = _labels_array("test_labels", test_labels, len(test_text_list))
    synthetic_label_array = _labels_array(
        "synthetic_labels", [] if synthetic_labels is None else synthetic_labels, len(synthetic_text_list)
    )
    unknown = sorted(set(synthetic_label_array) - set(real_labels))
    if unknown:
        raise ValueError(f"synthetic labels {unknown} are not in the real training labels; drop them first")
    label_set = sorted(set(real_labels) | set(test_label_array))
    label_index = {label: index for index, label in enumerate(label_set)}
    texts = real_texts + synthetic_text_list
    targets = torch.tensor(
        [label_index[label] for label in np.concatenate([real_labels, synthetic_label_array])]
    )
    torch_device = resolve_device(device)
    source = resolve_embedder(model)

    def encode(encoder, batch: list[str]) -> torch.Tensor:
        # sentence-transformers >= 6 renamed tokenize() to preprocess(); non-tensor entries stay as they are.
        prepare = getattr(encoder, "preprocess", None) or encoder.tokenize
        features = {
            key: value.to(torch_device) if isinstance(value, torch.Tensor) else value
            for key, value in prepare(batch).items()
        }
        return encoder(features)["sentence_embedding"]

    scores = []
    for seed in seed_list:
        torch.manual_seed(seed)
        encoder = SentenceTransformer(source, device=str(torch_device))
        encoder.max_seq_length = max_seq_length
        dimension = (
            encoder.get_embedding_dimension()
            if hasattr(encoder, "get_embedding_dimension")
            else encoder.get_sentence_embedding_dimension()
        )
        head = torch.nn.Linear(dimension, len(label_set)).to(torch_device)
        optimiser = torch.optim.AdamW(
            [
                {"params": encoder.parameters(), "lr": learning_rate},
                {"params": head.parameters(), "lr": head_learning_rate},
            ],
            weight_decay=weight_decay,
        )
        steps_per_epoch = math.ceil(len(texts) / batch_size)
        total_steps = (
            epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
        )
        warmup_steps = int(round(warmup_ratio * total_steps))

        def schedule(step: int, total: int = total_steps, warmup: int = warmup_steps) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
        generator = torch.Generator().manual_seed(seed)
        encoder.train()
        head.train()
        step = 0
        while step < total_steps:
            order = torch.randperm(len(texts), generator=generator)
            for start in range(0, len(texts), batch_size):
                if step >= total_steps:
                    break
                batch_index = order[start : start + batch_size]
                logits = head(encode(encoder, [texts[i] for i in batch_index.tolist()]))
                loss = torch.nn.functional.cross_entropy(logits, targets[batch_index].to(torch_device))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                scheduler.step()
                step += 1
        encoder.eval()
        head.eval()
        predictions = []
        with torch.no_grad():
            for start in range(0, len(test_text_list), 128):
                logits = head(encode(encoder, test_text_list[start : start + 128]))
                predictions.extend(label_set[index] for index in logits.argmax(dim=1).tolist())
        scores.append(_score(test_label_array, np.asarray(predictions), label_set))
        logger.info("fine-tune seed %d: %d steps, accuracy %.4f, macro-F1 %.4f", seed, step, *scores[-1])
    return _summarise(
        scores, {"n_train_real": len(real_texts), "n_train_synthetic": len(synthetic_text_list)}
    )


def filter_synthetic_samples(synthetic, real_labels: Sequence, variant: str = "synthetic"):
    """Rows of the synthetic DataFrame ``synthetic`` (columns ``text``, ``label``; others kept) usable for
    evaluation: non-empty text and a label that occurs in ``real_labels``. Dropped rows are reported with a
    warning (a weak LLM may invent labels or return nothing). ``None`` is treated as an empty set.
    Returns a new DataFrame with a fresh index.
    """
    import warnings

    import pandas as pd

    if synthetic is None:
        return pd.DataFrame({"text": pd.Series(dtype=str), "label": pd.Series(dtype=str)})
    require_columns(synthetic, ["text", "label"], f"{variant}: the synthetic samples")
    frame = synthetic.copy()
    frame["text"] = frame["text"].fillna("").astype(str)
    frame["label"] = frame["label"].astype(str)
    empty = frame["text"].str.strip() == ""
    known = set(str(label) for label in real_labels)
    unknown = ~frame["label"].isin(known)
    if empty.any():
        warnings.warn(f"{variant}: dropping {int(empty.sum())} synthetic rows with empty text", stacklevel=2)
    if (unknown & ~empty).any():
        counts = frame.loc[unknown & ~empty, "label"].value_counts().head(10).to_dict()
        warnings.warn(
            f"{variant}: dropping {int((unknown & ~empty).sum())} synthetic rows whose label is not a real label "
            f"{sorted(known)}: {counts}",
            stacklevel=2,
        )
    kept = frame.loc[~empty & ~unknown].reset_index(drop=True)
    if kept.empty:
        warnings.warn(
            f"{variant}: no usable synthetic rows; its distribution metrics will be nan", stacklevel=2
        )
    return kept
