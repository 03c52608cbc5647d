"""ReWeight weights, ReSample probabilities and the logit-adjusted loss against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from rfmml.trainer.ce_losses import (
    balanced_sampling_probabilities,
    inverse_frequency_weights,
    log_prior,
    logit_adjusted_loss,
)


def test_inverse_frequency_weights() -> None:
    # 1/n = (0.01, 0.1), scaled so 100 w0 + 10 w1 = 110 -> (0.55, 5.5)
    weights = inverse_frequency_weights(torch.tensor([100, 10]))
    assert weights.tolist() == pytest.approx([0.55, 5.5])


def test_balanced_sampling_probabilities() -> None:
    probabilities = balanced_sampling_probabilities(torch.tensor([0, 0, 0, 1]), 2)
    assert probabilities.tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2])
    # a class absent from the labels gets no share of the mass
    probabilities = balanced_sampling_probabilities(torch.tensor([0, 2, 2]), 3)
    assert probabilities.tolist() == pytest.approx([0.5, 0.25, 0.25])


def test_logit_adjusted_loss_formula() -> None:
    counts = torch.tensor([3, 1])
    assert log_prior(counts).tolist() == pytest.approx([math.log(0.75), math.log(0.25)])
    # z = (1, 2), y = 0: -log softmax(z + log pi)_0 = log(1 + exp(1 + log .25 - log .75)) = log(1 + e/3)
    loss = logit_adjusted_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([0]), log_prior(counts), tau=1.0)
    assert loss.item() == pytest.approx(0.6450561, abs=1e-6)
    # tau = 0 is plain cross-entropy: log(1 + e)
    loss = logit_adjusted_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([0]), log_prior(counts), tau=0.0)
    assert loss.item() == pytest.approx(1.3132617, abs=1e-6)
