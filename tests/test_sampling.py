"""Sampling paths: FastDecoder against transformers' forward, the stock generate() call, lower precisions."""
from __future__ import annotations

import pytest
import torch

from model.delay import IGNORE_INDEX, training_pair
from model.fast_decoder import FastDecoder, supports
from model.features import VideoFeatures
from model.guidance import with_null_branch
from model.sampling import TransformersSteps, sample_codes, stock_generate, stepper_for
from model.v2m import VideoToMusic


def _features(seconds: float) -> VideoFeatures:
    g = torch.Generator().manual_seed(1)
    tf = torch.arange(1, int(seconds * 10)) / 10
    return VideoFeatures(torch.randn(int(seconds * 2), 32, generator=g), torch.arange(0, seconds, 0.5),
                         torch.randn(len(tf), 30, generator=g), tf, seconds)


@pytest.fixture(scope="module")
def trained_like():
    """The tiny model with a loud condition and non-zero LoRA (fresh LoRA B is zero and would hide mistakes)."""
    model = VideoToMusic.from_config("tiny").eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.fusion.project.weight.mul_(200.0)
        for name, p in model.decoder.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    hidden, mask = model.condition(model.collate([_features(1.0), _features(2.0)]))  # padded batch
    return model, hidden, mask


def test_fast_decoder_logits_equal_transformers_forward(trained_like):
    model, hidden, mask = trained_like
    hidden, mask = with_null_branch(hidden, mask)
    fast, reference = FastDecoder(model.decoder), TransformersSteps(model.decoder)
    fast.start(hidden, mask, 12), reference.start(hidden, mask, 12)
    tokens = torch.full((4, 4), model.start_token)
    for _ in range(12):
        expected = reference.step(tokens)
        assert torch.allclose(fast.step(tokens), expected, atol=1e-5, rtol=1e-5)
        tokens = expected.argmax(-1)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_stock_generate_gives_our_greedy_tokens(trained_like, scale):
    model, hidden, mask = trained_like
    ours = sample_codes(model.decoder, hidden, mask, 40, 4, model.start_token, scale, greedy=True)
    stock = stock_generate(model.decoder, hidden, mask, 40, 4, model.start_token, scale, greedy=True)
    assert torch.equal(ours, stock)
    inputs, labels = training_pair(stock[:1], model.start_token, model.start_token)
    if scale == 1.0:  # and both are the argmax of a teacher-forced pass
        with torch.no_grad():
            logits = model.decoder(input_ids=inputs.reshape(4, -1), encoder_hidden_states=hidden[:1],
                                   encoder_attention_mask=mask[:1]).logits
        real = labels != IGNORE_INDEX
        assert torch.equal(logits.reshape(1, 4, inputs.shape[-1], -1).argmax(-1)[real], labels[real])


@pytest.mark.parametrize("precision,mean_cosine", [("bfloat16", 0.999), ("int8", 0.98)])
def test_lower_precisions_stay_close(trained_like, precision, mean_cosine):
    """Logit cosine with fp32 over the same steps (a wiring mistake gives ~0; rounding at width 32 gives ~0.99)."""
    model, hidden, mask = trained_like
    hidden, mask = with_null_branch(hidden, mask)
    exact, rounded = FastDecoder(model.decoder), FastDecoder(model.decoder, precision)
    exact.start(hidden, mask, 30), rounded.start(hidden, mask, 30)
    tokens, cosines = torch.full((4, 4), model.start_token), []
    for _ in range(30):
        a, b = exact.step(tokens), rounded.step(tokens)
        cosines.append(torch.nn.functional.cosine_similarity(a, b, dim=-1))
        tokens = a.argmax(-1)
    assert torch.stack(cosines).mean() > mean_cosine


def test_rounded_stepper_is_kept_until_weights_change(trained_like):
    model, _, _ = trained_like
    first = model.decoder_stepper("int8")
    assert model.decoder_stepper("int8") is first
    lora_b = next(p for n, p in model.decoder.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        lora_b.add_(0.0)  # an in-place update, as an optimizer step makes
    assert model.decoder_stepper("int8") is not first


def test_hooks_send_sampling_through_transformers(trained_like):
    """A forward hook (e.g. an additive condition on the embeddings) must not be skipped silently."""
    model, hidden, mask = trained_like
    int8 = model.decoder_stepper("int8")
    embedding = model.decoder.get_base_model().model.decoder.embed_tokens[0]
    handle = embedding.register_forward_hook(lambda module, inputs, output: output + 1.0)
    try:
        assert not supports(model.decoder) and isinstance(stepper_for(model.decoder), TransformersSteps)
        with pytest.raises(RuntimeError, match="forward hooks"):
            sample_codes(int8, hidden, mask, 4, 4, model.start_token, greedy=True)
    finally:
        handle.remove()
