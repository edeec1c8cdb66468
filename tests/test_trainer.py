"""Local LoRA training on a tiny model: learns, is seeded, masks the prompt, saves peft format."""

import json
import subprocess
import sys
import textwrap

import torch

from clients import device
from clients.adapter_slot import reset_adapter
from clients.settings import TrainSettings
from clients.trainer import IGNORE, encode, mean_loss, train_lora, weighted_token_loss


def test_training_lowers_the_users_training_loss(tags_data, tiny_device):
    settings, rt = tiny_device
    pairs = tags_data.train_pairs("u0")
    reset_adapter(rt.model, 1)
    before = mean_loss(rt.model, rt.tokenizer, rt.formatter, pairs)
    report = train_lora(rt.model, rt.tokenizer, rt.formatter, pairs,
                        TrainSettings(lr=1e-2, epochs=12, batch_size=3, bf16=False), seed=1)
    after = mean_loss(rt.model, rt.tokenizer, rt.formatter, pairs)
    assert report.steps == 24 and report.examples == len(pairs)
    assert after < before - 1.0, (before, after)  # ~10.8 -> below 9.8


def test_same_seed_same_adapter(tags_data, tiny_device):
    settings, rt = tiny_device
    pairs = tags_data.train_pairs("u1")
    runs = []
    for _ in range(2):
        reset_adapter(rt.model, 7)
        r = train_lora(rt.model, rt.tokenizer, rt.formatter, pairs, settings.train, seed=7)
        runs.append((r.losses, [p.detach().clone() for p in rt.model.parameters()
                                if p.requires_grad]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_loss_is_on_answer_tokens_only(tags_data, tiny_device):
    _, rt = tiny_device
    ids, labels = encode(tags_data.train_pairs("u0")[:1], rt.tokenizer, rt.formatter, 256)[0]
    answer = [t for t in labels if t != IGNORE]
    assert answer == ids[-len(answer):] and len(answer) < len(ids) / 4


def test_weighted_loss_is_token_normalised():
    logits = torch.zeros(2, 3, 4)
    logits[0, :, 1] = 5.0  # example 0 predicts token 1 confidently
    labels = torch.tensor([[IGNORE, 1, 1], [IGNORE, 2, IGNORE]])
    ce_good = torch.nn.functional.cross_entropy(logits[0, :1], torch.tensor([1]))
    ce_flat = torch.log(torch.tensor(4.0))
    w = torch.tensor([1.0, 3.0])
    expect = (2 * ce_good + 3 * ce_flat) / (2 + 3)
    assert torch.isclose(weighted_token_loss(logits, labels, w), expect)


def test_saved_adapter_reloads_in_fresh_process_with_same_predictions(tags_data, tiny_device,
                                                                      tmp_path):
    settings, rt = tiny_device
    user = tags_data.users["u2"]
    metrics = device.train_user(rt, tags_data.task, user, [], settings, "cdcda", tmp_path, 0,
                               "adapters")
    path = tmp_path / "adapters" / "u2"
    assert (path / "adapter_config.json").exists() and metrics["adapter-bytes"] > 0
    preds = json.loads((tmp_path / "predictions" / "cdcda" / "u2.json").read_text())
    script = textwrap.dedent(f"""
        import json
        from peft import PeftModel
        from clients.inference import generate
        from models import PromptFormatter, load_model
        base = load_model("tiny-random")
        model = PeftModel.from_pretrained(base.model, {str(path)!r})
        fmt = PromptFormatter(base.tokenizer, "plain")
        prompts = {json.dumps([q.prompt for q in user.queries])}
        out = generate(model, base.tokenizer, fmt, prompts, {tags_data.task.max_new_tokens})
        print(json.dumps(out.texts))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    texts = json.loads(res.stdout.strip().splitlines()[-1])
    assert texts == [p["raw"] for p in preds["predictions"]]


def test_fixed_step_budget_cycles_the_data(tags_data, tiny_device):
    _, rt = tiny_device
    pairs = tags_data.train_pairs("u3")  # 6 pairs: 2 batches of 4 per epoch
    reset_adapter(rt.model, 0)
    r = train_lora(rt.model, rt.tokenizer, rt.formatter, pairs,
                   TrainSettings(steps=5, batch_size=4, bf16=False), seed=0)
    assert r.steps == 5 and len(r.epoch_losses) == 3


def test_a_diverged_adapter_is_its_users_failure_and_is_never_saved(tags_data, tiny_device,
                                                                   tmp_path):
    import dataclasses

    from clients.device import NonFiniteAdapter

    settings, rt = tiny_device
    wild = dataclasses.replace(settings, train=dataclasses.replace(settings.train, lr=1e30))
    users = [tags_data.users["u0"], tags_data.users["u1"]]
    got = device.train_users(rt, tags_data.task, users, {}, wild, "local_real", tmp_path, 0)
    assert all(isinstance(got[u.user_id], NonFiniteAdapter) for u in users)
    assert "lower device.train.lr" in str(got["u0"])
    assert not (tmp_path / "adapters-local_real").exists()
    fine = device.train_users(rt, tags_data.task, users, {}, settings, "local_real", tmp_path, 0)
    assert all(isinstance(m, dict) and m["adapter-bytes"] > 0 for m in fine.values())
