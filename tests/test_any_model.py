"""Any model, data and loss (issue 11): sequence models, dict batches, regression, user losses.

Every number is checked against an independent computation written here with plain torch: the
mean token cross-entropy of a language model in float64, the mean squared error of a regression
net at each grid point, a dense float64 Hessian of a small transformer.
"""
from __future__ import annotations

import importlib.util
import math
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loss_landscape_toolkit import h5io
from loss_landscape_toolkit.cli import plot_surface
from loss_landscape_toolkit.directions import create_random_direction
from loss_landscape_toolkit.evaluation import evaluate, make_batches
from loss_landscape_toolkit.hessian import HessianOperator, cast_model_and_batches, extreme_eigenvalues
from loss_landscape_toolkit.objective import LossError, get_loss
from loss_landscape_toolkit.surface import compute_surface

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LM = f"{EXAMPLES / 'tiny_lm.py'}"
REG = f"{EXAMPLES / 'regression.py'}"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lm():
    return load_example("tiny_lm")


@pytest.fixture(scope="module")
def reg():
    return load_example("regression")


pytestmark = pytest.mark.usefixtures("one_thread")


def small_lm_data(lm, n: int = 48):
    """The first n training sequences: (tokens, next tokens with -100 at padding)."""
    x, y = lm.dataset()[0].tensors
    return x[:n], y[:n]


def token_mean_ce_float64(net, x, y) -> float:
    """The mean cross-entropy over all non-ignored target tokens, in float64, in one batch."""
    net = net.double().eval()
    with torch.no_grad():
        logits = net(x)
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum",
                                ignore_index=-100)
    net.float()
    return float(total) / int((y != -100).sum())


# --------------------------------------------------------------------------- losses, exactly aggregated
def test_crossentropy_over_token_positions_is_the_mean_over_counted_tokens_not_of_batch_means(lm):
    torch.manual_seed(0)
    net = lm.model().eval()
    x, y = small_lm_data(lm, 40)
    assert (y == -100).any()  # padding positions are skipped
    loss, acc = evaluate(net, make_batches(x, y, 7), loss_name="crossentropy")  # uneven batches
    assert loss == pytest.approx(token_mean_ce_float64(net, x, y), rel=1e-5)
    with torch.no_grad():
        logits = net(x)
    counted = y != -100
    token_acc = 100.0 * float(((logits.argmax(-1) == y) & counted).sum()) / int(counted.sum())
    assert acc == pytest.approx(token_acc, abs=1e-9)
    # a mean of batch means would differ: the batches count different numbers of tokens
    batch_means = [float(F.cross_entropy(logits[i:i + 7].reshape(-1, logits.shape[-1]), y[i:i + 7].reshape(-1)))
                   for i in range(0, 40, 7)]
    assert abs(np.mean(batch_means) - loss) > 1e-4


def test_regression_mse_has_no_accuracy_and_softmax_mse_keeps_the_reference_meaning():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1).eval()
    x, t = torch.randn(30, 3), torch.randn(30, 1)
    loss, acc = evaluate(net, make_batches(x, t, 8), loss_name="mse")
    with torch.no_grad():
        assert loss == pytest.approx(float(F.mse_loss(net(x).double(), t.double())), rel=1e-9)
    assert acc is None
    # (N,) targets for (N, 1) outputs are the same values
    assert evaluate(net, make_batches(x, t[:, 0], 8), loss_name="mse")[0] == pytest.approx(loss, rel=1e-12)
    # on class labels "mse" is the reference's softmax vs one-hot, as "softmax_mse"
    classifier = torch.nn.Linear(3, 4).eval()
    labels = torch.randint(0, 4, (30,))
    batches = make_batches(x, labels, 8)
    with torch.no_grad():
        expected = float(F.mse_loss(F.softmax(classifier(x), 1), F.one_hot(labels, 4).float()))
    for name in ("mse", "softmax_mse"):
        value, accuracy = evaluate(classifier, batches, loss_name=name, num_classes=4)
        assert value == pytest.approx(expected, rel=1e-6) and accuracy is not None


def test_user_loss_as_sum_and_count_or_per_item_equals_the_builtin(lm, reg):
    torch.manual_seed(1)
    net = lm.model().eval()
    batches = make_batches(*small_lm_data(lm, 30), 8)
    builtin = evaluate(net, batches, loss_name="crossentropy")[0]
    mine, acc = evaluate(net, batches, loss_name=f"{LM}:token_cross_entropy")
    assert mine == pytest.approx(builtin, rel=1e-6) and acc is None
    regression = reg.model().eval()
    x, t = reg.dataset()[0].tensors
    batches = make_batches(x[:50], t[:50], 16)
    assert evaluate(regression, batches, loss_name=f"{REG}:mse_per_item")[0] == pytest.approx(
        evaluate(regression, batches, loss_name="mse")[0], rel=1e-6)  # (its squares are float32)


@pytest.mark.parametrize("result, fragment", [
    (lambda o, t: F.cross_entropy(o.flatten(0, 1), t.flatten()), "a single number: a batch mean cannot be"),
    (lambda o, t: "nope", "returned str; expected fn(outputs, targets) -> per-item losses"),
])
def test_user_loss_that_cannot_be_aggregated_is_refused_with_one_line(lm, result, fragment):
    torch.manual_seed(0)
    batches = make_batches(*small_lm_data(lm, 4), 4)
    with pytest.raises(LossError) as info:
        evaluate(lm.model().eval(), batches, loss_name=result)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_unknown_loss_names_the_choices():
    with pytest.raises(LossError, match="unknown loss 'hinge'; expected one of crossentropy, mse, softmax_mse"):
        get_loss("hinge")


# --------------------------------------------------------------------------- the API
def test_lm_given_as_pairs_and_hf_style_dicts_gives_the_same_surface_centred_on_the_token_loss(lm, tmp_path):
    torch.manual_seed(2)
    net = lm.model().eval()
    hf = lm.hf_model().eval()
    hf.load_state_dict(net.state_dict())
    x, y = small_lm_data(lm, 24)
    direction = create_random_direction(list(net.parameters()), norm="filter", ignore="biasbn",
                                        generator=torch.Generator().manual_seed(3))
    grid = dict(x=[-0.5, 0.0, 0.5], directions=[direction], batch_size=10)
    pairs = compute_surface(net, (x, y), **grid)
    items = [{"input_ids": a, "labels": b} for a, b in zip(x, y)]
    dicts = compute_surface(hf, items, **grid)
    np.testing.assert_allclose(dicts.values["train_loss"], pairs.values["train_loss"], rtol=1e-6)
    np.testing.assert_allclose(dicts.values["train_acc"], pairs.values["train_acc"], atol=1e-9)
    assert pairs.values["train_loss"][1] == pytest.approx(token_mean_ce_float64(net, x, y), rel=1e-5)
    assert pairs.values["train_loss"][0] > pairs.values["train_loss"][1] * 0.5  # the points differ
    assert not np.allclose(pairs.values["train_loss"][0], pairs.values["train_loss"][2])


def independent_mse_along(model, direction, alphas, x, t) -> list[float]:
    """MSE at w + a d, with the weights moved by hand in float64."""
    base = {k: v.detach().double() for k, v in model.named_parameters()}
    names = list(base)
    out = []
    for a in alphas:
        params = {k: base[k] + a * d.double() for k, d in zip(names, direction)}
        with torch.no_grad():
            pred = torch.func.functional_call(model.double(), params, (x.double(),))
        model.float()
        out.append(float(((pred - t.double().view_as(pred)) ** 2).mean()))
    return out


def test_regression_surface_equals_an_independent_mse_and_has_no_accuracy(reg):
    torch.manual_seed(4)
    net = reg.model().eval()
    x, t = reg.dataset()[0].tensors
    x, t = x[:64], t[:64]
    direction = create_random_direction(list(net.parameters()), norm="filter", ignore="biasbn",
                                        generator=torch.Generator().manual_seed(5))
    alphas = [-1.0, -0.25, 0.0, 0.5]
    surface = compute_surface(net, (x, t), x=alphas, directions=[direction], loss_name="mse", batch_size=20)
    assert sorted(surface.values) == ["train_loss"]
    np.testing.assert_allclose(surface.values["train_loss"], independent_mse_along(net, direction, alphas, x, t),
                               rtol=1e-5)


# --------------------------------------------------------------------------- the command line
def run_cli(tmp_path, monkeypatch, capsys, *args):
    monkeypatch.chdir(tmp_path)
    code = plot_surface.main(["--threads", "1", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def lm_checkpoint(lm, tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "lm.pt"
    torch.manual_seed(0)
    torch.save(lm.model().state_dict(), path)
    return path


LM_CLI = ["--data_split", "32", "--batch_size", "16"]  # 32 of the 1,024 training sequences


def test_cli_user_loss_from_a_file_gives_the_builtin_numbers_without_accuracy(tmp_path, monkeypatch, capsys,
                                                                               lm_checkpoint):
    common = ["--model", f"{LM}:model", "--model_file", str(lm_checkpoint), "--dataset", f"{LM}:dataset",
              *LM_CLI, "--x=-1:1:3"]
    code, out, err = run_cli(tmp_path, monkeypatch, capsys, *common, "--surf_file", "builtin.h5")
    assert code == 0, err
    code, out, err = run_cli(tmp_path, monkeypatch, capsys, *common, "--surf_file", "mine.h5",
                             "--loss", f"{LM}:token_cross_entropy")
    assert code == 0, err
    builtin = h5io.read_surface_file(str(tmp_path / "builtin.h5")).arrays
    mine = h5io.read_surface_file(str(tmp_path / "mine.h5")).arrays
    np.testing.assert_allclose(mine["train_loss"], builtin["train_loss"], rtol=1e-6)
    assert "train_acc" in builtin and "train_acc" not in mine
    assert 0 < builtin["train_acc"][1] < 100  # token accuracy in percent
    # resuming the user-loss file with the built-in loss is refused
    code, out, err = run_cli(tmp_path, monkeypatch, capsys, *common, "--surf_file", "mine.h5")
    assert code == 2 and "--loss_name" in err and "cannot be resumed" in err, err


def test_cli_regression_surface_equals_an_independent_mse(tmp_path, monkeypatch, capsys, reg):
    torch.manual_seed(7)
    net = reg.model()
    torch.save(net.state_dict(), tmp_path / "reg.pt")
    code, out, err = run_cli(tmp_path, monkeypatch, capsys, "--model", f"{REG}:model", "--model_file", "reg.pt",
                             "--dataset", f"{REG}:dataset", "--loss_name", "mse", "--x=-1:1:5",
                             "--surf_file", "reg.h5")
    assert code == 0, err
    surface = h5io.read_surface_file(str(tmp_path / "reg.h5"))
    assert "train_acc" not in surface.arrays
    with h5py.File(tmp_path / surface.dir_file) as f:
        direction = [torch.from_numpy(f["xdirection"][str(k)][()]) for k in range(len(f["xdirection"]))]
    x, t = reg.dataset()[0].tensors
    expected = independent_mse_along(net.eval(), direction, surface.xcoordinates, x, t)
    np.testing.assert_allclose(surface.arrays["train_loss"], expected, rtol=1e-5)
    assert "accuracy" not in out


def test_cli_outputs_that_do_not_fit_the_targets_name_both_shapes(tmp_path, monkeypatch, capsys, lm_checkpoint):
    source = tmp_path / "last_token.py"  # sequence logits against one label per sequence
    source.write_text(
        "import torch\n"
        "def data():\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    x = torch.randint(0, 45, (20, 24), generator=g)\n"
        "    return torch.utils.data.TensorDataset(x, x[:, -1]), None\n")
    code, out, err = run_cli(tmp_path, monkeypatch, capsys, "--model", f"{LM}:model", "--model_file",
                             str(lm_checkpoint), "--dataset", f"{source}:data", "--x=-1:1:3")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "returned a tensor of shape (4, 24, 45)" in err and "for targets of shape (4,)" in err, err
    assert not list(tmp_path.glob("*.h5"))


def test_cli_lm_2d_hf_style_surface_and_figures(tmp_path, monkeypatch, capsys, lm_checkpoint):
    code, out, err = run_cli(tmp_path, monkeypatch, capsys, "--model", f"{LM}:hf_model", "--model_file",
                             str(lm_checkpoint), "--dataset", f"{LM}:hf_dataset", *LM_CLI,
                             "--x=-1:1:3", "--y=-1:1:3", "--surf_file", "hf.h5", "--plot", "--format", "png",
                             "--dpi", "50")
    assert code == 0, err
    surface = h5io.read_surface_file(str(tmp_path / "hf.h5"))
    assert surface.arrays["train_loss"].shape == (3, 3) and np.isfinite(surface.arrays["train_loss"]).all()
    assert "keywords input_ids" in out or "data:" in out
    assert (tmp_path / "hf.h5_train_loss_2dcontour.png").stat().st_size > 1000


# --------------------------------------------------------------------------- directions and the Hessian
def test_filter_normalization_of_embeddings_and_linear_layers_is_by_rows_and_ignores_layernorm(lm):
    torch.manual_seed(0)
    net = lm.model()
    params = dict(net.named_parameters())
    direction = dict(zip(params, create_random_direction(list(params.values()), norm="filter", ignore="biasbn",
                                                         generator=torch.Generator().manual_seed(1))))
    for name in ("tok_emb.weight", "blocks.0.attn.qkv.weight", "head.weight"):
        np.testing.assert_allclose(direction[name].norm(dim=1), params[name].detach().norm(dim=1), rtol=1e-5)
    for name in ("blocks.0.ln1.weight", "ln_f.bias", "head.bias"):
        assert not direction[name].any()  # biasbn: 1-D parameters stay


def test_hessian_extremes_of_a_small_transformer_match_a_dense_eigendecomposition(lm):
    torch.manual_seed(0)
    net = lm.model(d_model=8, layers=1, heads=2).eval()
    x, y = small_lm_data(lm, 12)
    batches = cast_model_and_batches(net, make_batches(x, y, 5), dtype=torch.float64)
    op = HessianOperator(net, batches, loss_name="crossentropy", mode="auto")
    result = extreme_eigenvalues(op, tol=1e-8, maxiter=600)
    # torch's forward-mode AD of layer_norm is wrong under grad-of-jvp: the auto mode notices
    assert op.mode == "double_backward" and "layer_norm" in op.fallback_reason
    named = [(k, p.detach()) for k, p in net.named_parameters() if p.dim() > 1]
    names, shapes = [k for k, _ in named], [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    assert sum(sizes) < 2500

    def mean_loss(theta):
        tensors = dict(zip(names, [t.view(s) for t, s in zip(theta.split(sizes), shapes)]))
        logits = torch.func.functional_call(net, tensors, (x,), strict=False)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        dense = torch.autograd.functional.hessian(mean_loss, torch.cat([p.reshape(-1) for _, p in named]))
    exact = torch.linalg.eigvalsh(dense)
    scale = float(exact.abs().max())
    assert result.converged
    assert abs(result.lambda_max - float(exact[-1])) <= 1e-6 * scale
    assert abs(result.lambda_min - float(exact[0])) <= 1e-6 * scale
    assert math.isfinite(result.lambda_min / result.lambda_max)


def test_cli_hessian_map_of_the_lm_runs(tmp_path, monkeypatch, capsys, lm_checkpoint):
    from loss_landscape_toolkit.cli import plot_hessian_eigen

    monkeypatch.chdir(tmp_path)
    code = plot_hessian_eigen.main(["--threads", "1", "--model", f"{LM}:model", "--model_file", str(lm_checkpoint),
                                    "--dataset", f"{LM}:dataset", "--data_split", "64", "--x=-0.5:0.5:2",
                                    "--surf_file", "eig.h5", "--tol", "1e-2"])
    err = capsys.readouterr().err
    assert code == 0, err
    arrays = h5io.read_surface_file(str(tmp_path / "eig.h5")).arrays
    assert np.isfinite(arrays["max_eig"]).all() and (arrays["max_eig"] > 0).all()
    assert (arrays["min_eig"] <= arrays["max_eig"]).all()


def test_training_cli_trains_the_lm_from_files(tmp_path, monkeypatch, capsys):
    from loss_landscape_toolkit.cli import train

    monkeypatch.chdir(tmp_path)
    code = train.main(["--model", f"{LM}:model", "--dataset", f"{LM}:dataset", "--epochs", "1",
                       "--optimizer", "adam", "--lr", "0.01", "--batch_size", "64", "--save", "runs"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "no augmentation added" in out and "test accuracy" in out
    (folder,) = (tmp_path / "runs").iterdir()
    log = (folder / "log.out").read_text().splitlines()
    first, last = (float(line.split("loss: ")[1].split()[0]) for line in (log[0], log[-1]))
    assert last < first - 0.5  # one epoch of Adam lowers the mean token loss clearly
    assert os.path.exists(folder / "model_1.t7")


@pytest.mark.mpi
def test_mpirun_and_shards_of_an_hf_style_loss_only_surface_equal_one_process(tmp_path):
    """Dict items, a user loss (no accuracy arrays), 2 ranks, and 2 shards merged: one surface."""
    from conftest import run_script

    torch.manual_seed(0)
    torch.save(load_example("tiny_lm").model(d_model=8, layers=1, heads=2).state_dict(), tmp_path / "lm.pt")
    (tmp_path / "small_lm.py").write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('tiny_lm', {LM!r})\n"
        "lm = importlib.util.module_from_spec(spec); spec.loader.exec_module(lm)\n"
        "def model():\n    return lm.hf_model(d_model=8, layers=1, heads=2)\n")
    common = ["--model", "small_lm.py:model", "--model_file", "lm.pt", "--dataset", f"{LM}:hf_dataset",
              "--data_split", "16", "--loss", f"{LM}:token_cross_entropy", "--x=-1:1:3", "--y=-1:1:2",
              "--threads", "1", "--no_progress"]  # one direction file, named after lm.pt
    serial = run_script("plot_surface.py", *common, "--surf_file", "serial.h5", cwd=tmp_path, timeout=300)
    assert serial.returncode == 0, serial.stderr
    mpi = run_script("plot_surface.py", *common, "--surf_file", "mpi.h5", cwd=tmp_path, nproc=2, timeout=300)
    assert mpi.returncode == 0 and "2 process(es)" in mpi.stdout, mpi.stderr
    for rank in ("0", "1"):
        shard = run_script("plot_surface.py", *common, "--surf_file", "shards.h5", "--of", "2", "--rank", rank,
                           cwd=tmp_path, timeout=300)
        assert shard.returncode == 0, shard.stderr
    merged = run_script("plot_surface.py", *common, "--surf_file", "shards.h5", "--of", "2", "--merge",
                        cwd=tmp_path, timeout=300)
    assert merged.returncode == 0, merged.stderr
    arrays = {name: h5io.read_surface_file(str(tmp_path / f"{name}.h5")).arrays for name in ("serial", "mpi", "shards")}
    assert "train_acc" not in arrays["serial"] and arrays["serial"]["train_loss"].shape == (2, 3)
    for name in ("mpi", "shards"):
        np.testing.assert_array_equal(arrays[name]["train_loss"], arrays["serial"]["train_loss"])


def test_a_fused_attention_kernel_without_second_derivatives_is_one_clear_error(lm):
    from loss_landscape_toolkit.errors import ModelError

    class FusedAttention(lm.CausalSelfAttention):
        def forward(self, h):  # the default kernel choice: fused on CPU, no second derivatives
            B, T, C = h.shape
            q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in self.qkv(h).split(C, dim=2))
            return self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C))

    torch.manual_seed(0)
    net = lm.model(d_model=8, layers=1, heads=2).eval()
    fused = FusedAttention(8, 2, 0.0)
    fused.load_state_dict(net.blocks[0].attn.state_dict())
    net.blocks[0].attn = fused.eval()
    op = HessianOperator(net, make_batches(*small_lm_data(lm, 4), 4))
    with pytest.raises(ModelError) as info:
        op.matvec(torch.ones(op.size))
    message = str(info.value)
    assert "no second derivatives" in message and "sdpa_kernel(SDPBackend.MATH)" in message and "\n" not in message
