"""Text classification with Hugging Face transformers, from a tiny config: no download at all.

The data is generated (short reviews made of positive and negative words), the tokenizer is
a word-level one built from that vocabulary with the ``tokenizers`` library, and the model is
a 1-layer BERT built from a ``BertConfig``: no pretrained weights, no hub access
(``HF_HUB_OFFLINE`` is set). Runs unchanged under `chiml train`, `chiml tune` and plain python:

    chiml train examples/transformers_text/train.py --param epochs=3
    chiml tune  examples/transformers_text/train.py --trials 6 --workers 2

The model is logged in MLflow's transformers flavor as a text-classification pipeline; the
pyfunc runtime serves it (strings in; a label and a score per string out).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built here: never ask the hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast, pipeline

from chiml import tracking as ct

POSITIVE = ["good", "great", "excellent", "lovely", "fine", "superb", "happy", "wonderful"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "sad", "boring", "ugly", "horrible"]
NEUTRAL = ["the", "movie", "was", "plot", "a", "really", "and", "actors", "film", "story"]
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}


def make_data(n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    texts, labels = [], rng.integers(0, 2, size=n)
    for label in labels:
        words = list(rng.choice(NEUTRAL, size=5)) + list(rng.choice(POSITIVE if label else NEGATIVE, size=2))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, labels


def make_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *POSITIVE, *NEGATIVE, *NEUTRAL])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def main() -> float:
    ct.objective("val_accuracy", "maximize")
    p = ct.params(
        epochs=3,
        batch_size=32,
        seed=0,
        hidden=ct.choice([16, 32, 64], default=32),
        lr=ct.float_range(1e-3, 1e-2, log=True, default=5e-3),
    )
    torch.manual_seed(p["seed"])
    rng = np.random.default_rng(p["seed"])
    train_texts, train_labels = make_data(512, rng)
    val_texts, val_labels = make_data(128, rng)
    tokenizer = make_tokenizer()
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=p["hidden"], num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=2 * p["hidden"], max_position_embeddings=32, num_labels=2, id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )  # fmt: skip
    model = BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=p["lr"])
    encode = lambda texts: tokenizer(texts, padding=True, return_tensors="pt")  # noqa: E731
    x_val, y_val = encode(val_texts), torch.as_tensor(val_labels)
    accuracy = 0.0
    for epoch in range(p["epochs"]):
        model.train()
        order = rng.permutation(len(train_texts))
        total = 0.0
        for start in range(0, len(order), p["batch_size"]):
            batch = order[start : start + p["batch_size"]]
            inputs = encode([train_texts[i] for i in batch])
            out = model(**inputs, labels=torch.as_tensor(train_labels[batch]))
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            total += out.loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            out = model(**x_val, labels=y_val)
        accuracy = float((out.logits.argmax(dim=1) == y_val).float().mean())
        ct.log_metrics(step=epoch, train_loss=total / len(order), val_loss=out.loss.item(), val_accuracy=accuracy)
        print(f"epoch {epoch}: val_loss={out.loss.item():.4f} val_accuracy={accuracy:.4f}")
        if ct.should_prune():
            raise ct.Pruned()
    classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    # A named "text" column: the pyfunc runtime passes a DataFrame with the signature's column
    # names, and a text-classification pipeline takes "text" (and "text_pair") only. A batch of
    # strings of different lengths needs padding, which the pipeline applies when told.
    ct.log_model(classifier, input_example=pd.DataFrame({"text": val_texts[:3]}),
                 model_config={"padding": True, "truncation": True})  # fmt: skip
    return accuracy


if __name__ == "__main__":
    main()
