"""The fast nucleus sampler keeps exactly the tokens transformers' warpers keep."""

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from server.sampling import TemperatureTopP


@pytest.mark.parametrize("temperature, top_p", [(0.8, 0.95), (1.0, 0.5), (0.3, 0.99),
                                                (2.0, 0.9), (0.8, 1.0)])
def test_the_kept_tokens_and_their_scores_are_the_warpers(temperature, top_p):
    torch.manual_seed(0)
    # peaked rows (a model's usual case) and flat rows (the nucleus past the top k)
    scores = torch.cat([torch.randn(64, 5000) * 6, torch.randn(16, 5000) * 0.1])
    ids = torch.zeros(80, 1, dtype=torch.long)
    theirs = TopPLogitsWarper(top_p)(ids, TemperatureLogitsWarper(temperature)(ids, scores))
    ours = TemperatureTopP(temperature, top_p, k=64)(ids, scores)
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    assert torch.equal(ours[~torch.isinf(ours)], theirs[~torch.isinf(theirs)])
    assert (~torch.isinf(ours)).sum(dim=-1).min() >= 1


def test_generation_with_it_writes_what_transformers_writes():
    from models import load_model

    m = load_model("tiny-random-1")
    enc = m.tokenizer(["a first prompt", "and a second, longer one"], return_tensors="pt",
                      padding=True)
    common = dict(max_new_tokens=12, do_sample=True, pad_token_id=m.tokenizer.pad_token_id)
    torch.manual_seed(5)
    theirs = m.model.generate(**enc, temperature=0.8, top_p=0.9, top_k=None, **common)
    torch.manual_seed(5)
    ours = m.model.generate(**enc, temperature=1.0, top_p=1.0, top_k=None,
                            logits_processor=[TemperatureTopP(0.8, 0.9)], **common)
    assert torch.equal(ours, theirs)


def test_the_nucleus_sampler_draws_the_nucleus_distribution_from_its_own_seed():
    from server.sampling import NucleusSampler

    torch.manual_seed(1)
    logits = torch.randn(1, 3000) * 5
    ids = torch.zeros(1, 1, dtype=torch.long)
    kept = TemperatureTopP(0.8, 0.9)(ids, logits)
    want = kept.softmax(-1)[0]
    sampler = NucleusSampler(0.8, 0.9, seed=7)
    draws = 20_000
    counts = torch.zeros(3000)
    for _ in range(draws // 100):
        out = sampler(ids.repeat(100, 1), logits.repeat(100, 1))
        assert torch.equal(torch.isfinite(out).sum(-1), torch.ones(100, dtype=torch.long))
        counts += torch.bincount(out.argmax(-1), minlength=3000).float()
    assert counts[want == 0].sum() == 0  # never a token outside the nucleus
    top = torch.argsort(want, descending=True)[:5]  # the likeliest tokens, at their rates
    assert torch.allclose(counts[top] / draws, want[top], atol=0.015)
    again = NucleusSampler(0.8, 0.9, seed=7)
    first = NucleusSampler(0.8, 0.9, seed=7)(ids.repeat(4, 1), logits.repeat(4, 1))
    assert torch.equal(again(ids.repeat(4, 1), logits.repeat(4, 1)), first)  # seeded


def test_a_flat_row_is_drawn_from_its_whole_nucleus():
    from server.sampling import NucleusSampler

    logits = torch.zeros(2, 1000)  # uniform: the nucleus is 900 tokens, past the top k
    out = NucleusSampler(1.0, 0.9, seed=3, k=16)(torch.zeros(2, 1, dtype=torch.long), logits)
    assert torch.equal(torch.isfinite(out).sum(-1), torch.ones(2, dtype=torch.long))


def test_the_embedded_cloud_samples_with_either_sampler_seeded_per_group():
    from server.backends import EmbeddedLLM
    from server.settings import CloudSettings

    prompts = ["short", "a much longer prompt than the first one", "mid length"]
    for sampler in ("fast", "transformers"):
        llm = EmbeddedLLM(CloudSettings(model="tiny-random-1", max_new_tokens=12, batch_size=2,
                                        sampler=sampler))
        out = llm.complete(prompts, [4, 4, 9])
        assert all(isinstance(t, str) and t for t in out)
        assert out == llm.complete(prompts, [4, 4, 9])
        assert out[2:] == llm.complete(prompts[2:], [9])  # a group's own, whoever else


def test_rows_of_several_seeds_each_draw_their_own_seeds_stream():
    """Users batched together draw, row for row, what each would draw batched alone."""
    from server.sampling import NucleusSampler

    together = NucleusSampler(1.0, 0.9, seed=0)
    together.rows = [5, 7, 5]
    u = together._uniforms(3).flatten()
    five, seven = torch.Generator().manual_seed(5), torch.Generator().manual_seed(7)
    alone5, alone7 = torch.rand(2, 1, generator=five), torch.rand(1, 1, generator=seven)
    assert torch.equal(u[[0, 2]], alone5.flatten()) and torch.equal(u[1:2], alone7.flatten())
    plain = NucleusSampler(1.0, 0.9, seed=5)  # no row seeds: every row from `seed`'s
    assert torch.equal(plain._uniforms(2), torch.rand(2, 1, generator=torch.Generator()
                                                     .manual_seed(5)))
    with pytest.raises(ValueError, match="3 row seeds for 2 rows"):
        together._uniforms(2)


def test_the_embedded_cloud_batches_by_key_and_samples_by_seed():
    from server.backends import EmbeddedLLM
    from server.settings import CloudSettings

    llm = EmbeddedLLM(CloudSettings(model="tiny-random-1", max_new_tokens=12, batch_size=8))
    prompts = ["short", "a much longer prompt than the first one", "mid length", "x y"]
    seeds, keys = [4, 4, 9, 9], [1, 1, 1, 2]  # users 4 and 9 share batch 1
    out = llm.complete(prompts, seeds, batch=keys)
    assert all(isinstance(t, str) and t for t in out)
    assert out[:3] == llm.complete(prompts[:3], seeds[:3], batch=1)  # the group's own
    assert out[3:] == llm.complete(prompts[3:], [9], batch=[2])
    # a group of one user's rows draws what that user draws batched by its seed alone
    assert llm.complete(prompts[:2], [4, 4], batch=77) == llm.complete(prompts[:2], 4)
    with pytest.raises(ValueError, match="1 batch keys for 2 prompts"):
        llm.complete(prompts[:2], 4, batch=[1])
