"""The example files of examples/: models, data, losses and training, imported by path."""
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(stem: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{stem}_under_test", EXAMPLES / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LM = _load("tiny_lm")
REG = _load("regression")


pytestmark = pytest.mark.usefixtures("one_thread")


def _all_items(data) -> object:
    """Every item of a dataset, collated like the toolkit reads it."""
    return next(iter(DataLoader(data, batch_size=len(data))))


def _lm_batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = LM.dataset()[0].tensors
    return x[:n], y[:n]


def test_lm_model_and_hf_model_share_state_dict_and_logits():
    torch.manual_seed(0)
    net = LM.model().eval()
    hf = LM.hf_model().eval()
    assert set(net.state_dict()) == set(hf.state_dict())
    hf.load_state_dict(net.state_dict())
    x, _ = _lm_batch()
    logits = net(x)
    assert logits.shape == (8, LM.CONTEXT, len(LM.VOCAB))
    assert torch.equal(hf(input_ids=x, attention_mask=None).logits, logits)
    assert torch.equal(hf(input_ids=x, attention_mask=torch.ones_like(x)).logits, logits)


def test_hf_model_refuses_an_attention_mask_with_zeros():
    x, _ = _lm_batch()
    mask = torch.ones_like(x)
    mask[:, :3] = 0
    with pytest.raises(ValueError, match="pad on the right"):
        LM.hf_model()(input_ids=x, attention_mask=mask)


def test_lm_model_refuses_sequences_longer_than_its_context():
    with pytest.raises(ValueError, match="context=30"):
        LM.model()(torch.zeros(2, 30, dtype=torch.int64))


@pytest.mark.parametrize("split", [0, 1])
def test_lm_dataset_and_hf_dataset_hold_the_same_tensors(split):
    x, y = _all_items(LM.dataset()[split])
    items = _all_items(LM.hf_dataset()[split])
    assert set(items) == {"input_ids", "labels"}
    assert torch.equal(items["input_ids"], x)
    assert torch.equal(items["labels"], y)


def test_lm_corpus_is_deterministic_and_the_targets_are_the_next_tokens():
    (train, test), (again, _) = LM.dataset(), LM.dataset()
    x, y = train.tensors
    assert x.dtype == y.dtype == torch.int64
    assert x.shape == y.shape == (LM.NUM_TRAIN, LM.CONTEXT)
    assert torch.equal(x, again.tensors[0]) and torch.equal(y, again.tensors[1])
    assert not torch.equal(x[:LM.NUM_TEST], test.tensors[0])  # two seeds, two samples
    kept = y[:, :-1] != LM.IGNORE
    assert torch.equal(y[:, :-1][kept], x[:, 1:][kept])  # targets[t] is inputs[t + 1]
    assert torch.equal(~kept, x[:, 1:] == LM.PAD)  # ignored exactly where padding follows
    assert 0.05 < (y == LM.IGNORE).float().mean() < 0.5


def test_lm_sequences_are_bos_sentences_eos_then_padding():
    sequences = LM.corpus(64, seed=0)  # (N, SEQUENCE_LENGTH)
    assert torch.equal(sequences[:, :-1], LM.dataset()[0].tensors[0][:64])  # the training inputs
    assert (sequences[:, 0] == LM.BOS).all()
    assert ((sequences == LM.EOS).sum(dim=1) == 1).all()
    end = (sequences == LM.EOS).int().argmax(dim=1)
    after = torch.arange(LM.SEQUENCE_LENGTH) > end[:, None]
    assert torch.equal(sequences == LM.PAD, after)
    assert (sequences.gather(1, (end - 1)[:, None]) == LM.TOKEN_ID["."]).all()


def test_token_cross_entropy_equals_torch_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 11, (3, 7), generator=generator)
    targets[0, 4:] = LM.IGNORE
    targets[2, 1] = LM.IGNORE
    loss_sum, count = LM.token_cross_entropy(logits, targets)
    assert count.item() == 21 - 4
    expected = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), ignore_index=-100, reduction="sum")
    torch.testing.assert_close(loss_sum, expected)
    torch.testing.assert_close(loss_sum / count, F.cross_entropy(logits.transpose(1, 2), targets))


def test_mse_per_item_equals_torch_mse():
    generator = torch.Generator().manual_seed(0)
    outputs, targets = torch.randn(2, 10, 1, generator=generator, dtype=torch.float64)
    losses = REG.mse_per_item(outputs, targets)
    assert losses.shape == (10, 1)
    torch.testing.assert_close(losses.mean(), F.mse_loss(outputs, targets))


def test_regression_dataset_is_deterministic_with_targets_shaped_like_the_output():
    (train, test), (again, _) = REG.dataset(), REG.dataset()
    x, y = train.tensors
    assert x.shape == (REG.NUM_TRAIN, 2) and y.shape == (REG.NUM_TRAIN, 1)
    assert torch.equal(x, again.tensors[0]) and torch.equal(y, again.tensors[1])
    assert REG.model()(x).shape == y.shape
    noise = y - REG.target_function(x)
    assert 0.8 * REG.NOISE < noise.std() < 1.2 * REG.NOISE
    assert len(test) == REG.NUM_TEST


def test_lm_train_lowers_the_loss_and_saves_a_loadable_state_dict(tmp_path):
    path = tmp_path / "lm.pt"
    start, end = LM.train(str(path), epochs=1)
    assert start > 3.5  # about log(45) at init
    assert end < start - 1.0
    net = LM.model()
    net.load_state_dict(torch.load(path))
    assert LM.mean_token_loss(net, *LM.dataset()[0].tensors) == pytest.approx(end)


def test_regression_train_lowers_the_loss_and_saves_a_loadable_state_dict(tmp_path):
    path = tmp_path / "reg.pt"
    start, end = REG.train(str(path), epochs=20)
    assert end < start / 4
    net = REG.model()
    net.load_state_dict(torch.load(path))
    assert REG.mean_squared_error(net, *REG.dataset()[0].tensors) == pytest.approx(end)


@pytest.mark.parametrize("example", [LM, REG], ids=["tiny_lm", "regression"])
def test_main_trains_and_prints_the_start_and_end_loss(example, tmp_path, capsys):
    path = tmp_path / "out.pt"
    assert example.main(["train", str(path), "--epochs", "0"]) == 0
    line = capsys.readouterr().out
    start, end = map(float, re.search(r"(\d+\.\d+) at init, (\d+\.\d+) after 0 epochs", line).groups())
    assert start == end > 0
    assert path.exists()


@pytest.mark.parametrize("example", [LM, REG], ids=["tiny_lm", "regression"])
def test_main_refuses_a_missing_folder_before_training(example, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        example.main(["train", str(tmp_path / "missing" / "out.pt")])
    assert exit_info.value.code == 2
    assert "does not exist; create it first" in capsys.readouterr().err


def test_lm_attention_is_causal():
    torch.manual_seed(0)
    net = LM.model().eval()
    x, _ = _lm_batch()
    changed = x.clone()
    changed[:, 10] = (changed[:, 10] + 1) % len(LM.VOCAB)
    before, after = net(x), net(changed)  # (B, T, V)
    torch.testing.assert_close(after[:, :10], before[:, :10], rtol=0, atol=1e-6)
    assert (after[:, 10:] - before[:, 10:]).abs().amax(dim=(0, 2)).min() > 1e-4


def test_small_lm_variant_fits_a_dense_hessian():
    net = LM.model(d_model=8, layers=1)
    assert sum(p.numel() for p in net.parameters()) < 2000
    x, _ = _lm_batch()
    assert net(x).shape == (8, LM.CONTEXT, len(LM.VOCAB))


def test_lm_hessian_vector_products_match_finite_differences():
    """Forward-over-reverse (torch.func) and double backward (autograd), as the toolkit's
    Hessian operator uses them; the fused attention kernels support neither."""
    torch.manual_seed(0)
    net = LM.model(d_model=8, layers=1).double().eval()
    x, y = _lm_batch(4)
    names = [name for name, _ in net.named_parameters()]
    point = tuple(p.detach() for p in net.parameters())
    tangent = tuple(torch.randn_like(p) for p in point)

    def loss(*params):
        loss_sum, count = LM.token_cross_entropy(torch.func.functional_call(net, dict(zip(names, params)), (x,)), y)
        return loss_sum / count

    gradient = torch.func.grad(loss, argnums=tuple(range(len(point))))
    _, forward_over_reverse = torch.func.jvp(gradient, point, tangent)
    leaves = tuple(p.clone().requires_grad_() for p in point)
    grads = torch.autograd.grad(loss(*leaves), leaves, create_graph=True)
    double_backward = torch.autograd.grad(grads, leaves, grad_outputs=tangent)
    eps = 1e-5
    plus = gradient(*(p + eps * t for p, t in zip(point, tangent)))
    minus = gradient(*(p - eps * t for p, t in zip(point, tangent)))
    finite_difference = torch.cat([(a - b).flatten() / (2 * eps) for a, b in zip(plus, minus)])
    assert finite_difference.norm() > 1e-3
    for products in (forward_over_reverse, double_backward):
        torch.testing.assert_close(torch.cat([p.flatten() for p in products]), finite_difference,
                                   rtol=1e-5, atol=1e-7)
