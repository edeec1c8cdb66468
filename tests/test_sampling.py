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


def test_the_embedded_cloud_writes_the_same_with_either_sampler():
    from server.backends import EmbeddedLLM
    from server.settings import CloudSettings

    prompts = ["short", "a much longer prompt than the first one", "mid length"]
    out = {}
    for sampler in ("fast", "transformers"):
        llm = EmbeddedLLM(CloudSettings(model="tiny-random-1", max_new_tokens=12, batch_size=2,
                                        sampler=sampler))
        out[sampler] = llm.complete(prompts, [4, 4, 9])
    assert out["fast"] == out["transformers"] and all(out["fast"])
