"""_naming.py: every file name, by the reference code's rules and this toolkit's additions."""
from __future__ import annotations

import pytest

from loss_landscape_toolkit import _naming

# --------------------------------------------------------------------------- directions and surfaces
A = "cifar10/trained_nets/a/model_300.t7"


@pytest.mark.parametrize("kwargs, expected", [
    (dict(model_file=A, dir_type="weights", xnorm="filter", xignore="biasbn"),
     "cifar10/trained_nets/a/model_300.t7_weights_xignore=biasbn_xnorm=filter.h5"),
    (dict(model_file=A, dir_type="weights", xnorm="filter", xignore="biasbn", two_d=True,
          ynorm="filter", yignore="biasbn"),
     "cifar10/trained_nets/a/model_300.t7_weights_xignore=biasbn_xnorm=filter_yignore=biasbn_ynorm=filter.h5"),
    (dict(model_file=A, model_file2="cifar10/trained_nets/b/model_300.t7", dir_type="states",
          xnorm="none", xignore="none"),
     "cifar10/trained_nets/a_model_300.t7_b_model_300.t7_states.h5"),
    (dict(model_file=A, model_file2="cifar10/trained_nets/a/model_200.t7", dir_type="states",
          xnorm="", xignore=""),
     "cifar10/trained_nets/a/model_300.t7_model_200.t7_states.h5"),
    (dict(model_file=A, dir_type="weights", xnorm="filter", xignore="biasbn", two_d=True,
          ynorm="filter", yignore="biasbn", same_dir=True, idx=3),
     "cifar10/trained_nets/a/model_300.t7_weights_xignore=biasbn_xnorm=filter_yignore=biasbn_ynorm=filter_same_dir_idx=3.h5"),
    # the reference glued model_file3's whole path on without a separator; we name it like model_file2
    (dict(model_file=A, dir_type="weights", xnorm="none", xignore="none", two_d=True,
          model_file3="cifar10/trained_nets/a/model_200.t7"),
     "cifar10/trained_nets/a/model_300.t7_weights_model_200.t7.h5"),
])
def test_direction_file_names(kwargs, expected):
    assert _naming.name_direction_file(**kwargs) == expected


D1 = "cifar10/trained_nets/a/model_300.t7_weights_xignore=biasbn_xnorm=filter.h5"
D2 = "cifar10/trained_nets/a/model_300.t7_weights_xignore=biasbn_xnorm=filter_yignore=biasbn_ynorm=filter.h5"


@pytest.mark.parametrize("kwargs, expected", [
    (dict(dir_file=D1, x=(-1, 1, 51)), D1 + "_[-1.0,1.0,51].h5"),
    (dict(dir_file=D2, x=(-1, 1, 51), y=(-1, 1, 51)), D2 + "_[-1.0,1.0,51]x[-1.0,1.0,51].h5"),
    (dict(dir_file="cifar10/trained_nets/a_model_300.t7_b_model_300.t7_states.h5", x=(-0.5, 1.5, 401)),
     "cifar10/trained_nets/a_model_300.t7_b_model_300.t7_states.h5_[-0.5,1.5,401].h5"),
    (dict(dir_file="m_same_dir_idx=3.h5", x=(-1, 1, 51), y=(-1, 1, 51), raw_data=True, data_split=5, split_idx=2),
     "m_same_dir_idx=3.h5_[-1.0,1.0,51]x[-1.0,1.0,51]_rawdata_datasplit=5_splitidx=2.h5"),
    (dict(dir_file="m.h5", x=(-1, 1, 5), dataset="digits", loss_name="mse"),
     "m.h5_[-1.0,1.0,5]_dataset=digits_loss=mse.h5"),
])
def test_surface_file_names(kwargs, expected):
    assert _naming.name_surface_file(**kwargs) == expected


def test_seed_other_than_the_reference_and_random_init_bases():
    kw = dict(model_file=A, dir_type="weights", xnorm="filter", xignore="biasbn")
    assert _naming.name_direction_file(**kw, seed=123) == _naming.name_direction_file(**kw)
    assert _naming.name_direction_file(**kw, seed=7).endswith("xnorm=filter_seed=7.h5")
    assert _naming.random_init_base("nets/my.py:build") == "my.py-build_random_init"
    assert _naming.shard_file_name("s.h5", 2, 8) == "s.h5_rank=2_of=8.h5"


def test_figure_and_mesh_names_follow_the_surface_file():
    assert _naming.curve_figure("s.h5", "loss_acc", log=True) == "s.h5_1d_loss_acc_log"
    assert _naming.map_figure("s.h5", "train_loss", "2dheat") == "s.h5_train_loss_2dheat"
    assert _naming.eig_ratio_figure("s.h5", "abs_ratio", two_d=True) == "s.h5_min_eig_max_eig_abs_ratio_heat_sns"
    assert _naming.eig_ratio_figure("s.h5", "ratio", two_d=False) == "s.h5_1d_eig_ratio"
    assert _naming.trajectory_contour_figure("p.h5", "train_loss") == "p.h5_train_loss_2dcontour_proj"
    assert _naming.mesh_name("s.h5", "train_loss", zmax=10, log=True) == "s.h5_train_loss_zmax=10.0_log.vtp"


# --------------------------------------------------------------------------- training runs and trajectories
def test_save_folder_name_follows_the_reference():
    common = dict(optimizer="sgd", lr=0.1, lr_decay=0.1, batch_size=128, weight_decay=0.0005,
                  momentum=0.9, save_epoch=10)
    assert _naming.save_folder_name(model="resnet56", **common) == \
        "resnet56_sgd_lr=0.1_bs=128_wd=0.0005_mom=0.9_save_epoch=10"
    full = _naming.save_folder_name(
        model="vgg9", **{**common, "optimizer": "adam", "lr": 0.001, "lr_decay": 0.2, "weight_decay": 0.0},
        loss_name="mse", noaug=True, raw_data=True, label_corrupt_prob=0.5, ngpu=2, idx=3)
    assert full == ("vgg9_adam_lr=0.001_lr_decay=0.2_bs=128_wd=0.0_mom=0.9_save_epoch=10_loss=mse"
                    "_noaug_rawdata_randlabel=0.5_ngpu=2_idx=3")
    custom = _naming.save_folder_name(model="nets/my.py:build", dataset="data/d.py:load", **common)
    assert custom == "my.py-build_sgd_lr=0.1_bs=128_wd=0.0005_mom=0.9_save_epoch=10_dataset=d.py-load"
    assert "/" not in custom


def test_checkpoint_and_pca_names():
    assert _naming.checkpoint_names(150) == ("model_150.t7", "opt_state_150.t7")
    assert _naming.pca_dir_file("run", dir_type="states", ignore="biasbn", save_epoch=10) == \
        "run/PCA_states_ignore=biasbn_save_epoch=10/directions.h5"
    assert _naming.proj_file_name("d.h5", "cos") == "d.h5_proj_cos.h5"
