"""The study's speech-emotion-recognition head around one seq2seq attention layer (PAPER.md).

    speech [B, Ts, 1024] -> LayerNorm --+
                                        +-> concat over time [B, Ts+Tt, 1024] -> seq2seq layer
    text   [B, Tt, 1024] -> LayerNorm --+      -> attention pooling [B, 1024] -> MLP -> logits [B, 8]

* speech features: frozen WavLM-Large outputs, 1024-d, 50 frames per second of audio;
* text features: frozen BERT-large outputs, 1024-d, at a configurable tokens-per-second rate;
* attention pooling: ``w = softmax_t(Linear(1024 -> 1)(h))``, ``pooled = sum_t w_t h_t``;
* classifier: 4 hidden layers of 512 with ReLU, then 8 emotion classes.

The feature extractors are not part of the head (the study used frozen, precomputed features), so
the model-level measurement starts from features. Padded batches carry no mask (as measured).
"""

from __future__ import annotations

import torch
import torch.nn as nn

N_CLASSES = 8
MLP_HIDDEN = 512
MLP_LAYERS = 4


class AttentionPooling(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.score = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.score(h).float(), dim=1).to(h.dtype)   # [B, T, 1]
        return (w * h).sum(dim=1)


class SERHead(nn.Module):
    """Layer-normalised speech and text features, concatenated, seq2seq layer, pooling, classifier."""

    def __init__(self, seq2seq: nn.Module, hidden: int = 1024, n_classes: int = N_CLASSES,
                 mlp_hidden: int = MLP_HIDDEN, mlp_layers: int = MLP_LAYERS):
        super().__init__()
        self.speech_norm = nn.LayerNorm(hidden)
        self.text_norm = nn.LayerNorm(hidden)
        self.seq2seq = seq2seq
        self.pool = AttentionPooling(hidden)
        layers: list[nn.Module] = []
        width = hidden
        for _ in range(mlp_layers):
            layers += [nn.Linear(width, mlp_hidden), nn.ReLU()]
            width = mlp_hidden
        layers.append(nn.Linear(width, n_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, speech: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.speech_norm(speech), self.text_norm(text)], dim=1)
        h = self.seq2seq(x)
        if isinstance(h, tuple):  # fla layers return (o, attentions, cache)
            h = h[0]
        return self.classifier(self.pool(h))
