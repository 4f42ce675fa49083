"""Every file name the toolkit writes or looks for, in one place: the reference code's rules.

The reference builds each name by appending to the previous file's name (the direction file's name
after the checkpoint's, the surface file's after the direction file's, each figure's after the
surface file's), so that a file name says how the file was made. The additions of this toolkit
(``_seed=N``, ``_dataset=NAME``, ``_loss=mse``, shard files, ``.obj`` meshes) follow the same
style. Nothing here touches the disk except :func:`repeat_files`, which looks for files.
"""
from __future__ import annotations

import glob
import os

from ._options import DEFAULT_SEED
from .errors import RangeError, UsageError


# --------------------------------------------------------------------------- directions and surfaces
def random_init_base(model: str) -> str:
    """The base of the names when there is no checkpoint: ``{model}_random_init``."""
    return os.path.basename(model.replace(":", "-")) + "_random_init"


def name_direction_file(*, model_file: str, dir_type: str, xnorm: str, xignore: str,
                        model_file2: str = "", two_d: bool = False, ynorm: str = "none",
                        yignore: str = "none", model_file3: str = "", same_dir: bool = False,
                        idx: int = 0, seed: int = DEFAULT_SEED) -> str:
    """The reference code's direction-file name, next to the model, e.g.
    ``model_300.t7_weights_xignore=biasbn_xnorm=filter_yignore=biasbn_ynorm=filter.h5``.

    ``xnorm``/``xignore`` of ``none`` add nothing (the reference's empty default). Target
    directions (``model_file2``/``model_file3``) are never normalized, so their norm and ignore
    settings are not written into the name. The reference's ``model_file3`` naming produced a
    broken path; here the third model is named like the second one. A ``seed`` other than the
    reference's fixed 123 adds ``_seed=N``.
    """
    name = _pair_name(model_file, model_file2) if model_file2 else model_file
    name += f"_{dir_type}"
    if not model_file2:
        name += _norm_suffix("x", xignore, xnorm)
    if two_d:
        if model_file3:
            name += "_" + _second_model_part(model_file, model_file3)
        else:
            name += _norm_suffix("y", yignore, ynorm)
            if same_dir:
                name += "_same_dir"
    if idx > 0:
        name += f"_idx={idx}"
    if seed != DEFAULT_SEED:
        name += f"_seed={seed}"
    return name + ".h5"


def _norm_suffix(axis: str, ignore: str, norm: str) -> str:
    suffix = f"_{axis}ignore={ignore}" if ignore not in ("", "none") else ""
    return suffix + (f"_{axis}norm={norm}" if norm not in ("", "none") else "")


def _pair_name(model_file: str, model_file2: str) -> str:
    """``model_file`` joined with the second model, as the reference names it."""
    if os.path.dirname(model_file) == os.path.dirname(model_file2):
        return model_file + "_" + os.path.basename(model_file2)
    return (os.path.dirname(model_file) + "_" + os.path.basename(model_file) + "_"
            + _second_model_part(model_file, model_file2))


def _second_model_part(model_file: str, other: str) -> str:
    """How another model appears in a name: its base name, after its folder below the common
    parent when the folders differ (slashes become underscores, so the name is one file)."""
    if os.path.dirname(model_file) == os.path.dirname(other):
        return os.path.basename(other)
    parent = _common_folder(model_file, other)
    folder = os.path.dirname(other)[len(parent) + 1:] if parent else os.path.dirname(other)
    return folder.strip(os.sep).replace(os.sep, "_") + "_" + os.path.basename(other)


def _common_folder(a: str, b: str) -> str:
    prefix = os.path.commonprefix([a, b])
    return prefix[: prefix.rfind(os.sep)] if os.sep in prefix else ""


def format_range_tag(vmin: float, vmax: float, num: int) -> str:
    """``[-1.0,1.0,51]``: the reference's ``[%s,%s,%d]`` with Python float formatting."""
    return f"[{float(vmin)!s},{float(vmax)!s},{int(num)}]"


def name_surface_file(*, dir_file: str, x: tuple[float, float, int],
                      y: tuple[float, float, int] | None = None, raw_data: bool = False,
                      data_split: int = 1, split_idx: int = 0, dataset: str = "cifar10",
                      loss_name: str = "crossentropy") -> str:
    """The reference code's surface-file name.

    ``dir_file + '_[xmin,xmax,xnum]' + 'x[ymin,ymax,ynum]' + '_rawdata' +
    '_datasplit=K_splitidx=I' + '.h5'``. Two additions the reference did not need, because it
    had only CIFAR-10 and never encoded the loss: ``_dataset=NAME`` for a dataset other than
    cifar10 and ``_loss=mse`` for a loss other than cross-entropy, so surfaces of different
    data or losses never share (and resume into) one file.
    """
    name = dir_file + "_" + format_range_tag(*x)
    if y is not None:
        name += "x" + format_range_tag(*y)
    if raw_data:
        name += "_rawdata"
    if data_split > 1:
        name += f"_datasplit={data_split}_splitidx={split_idx}"
    if dataset != "cifar10":
        name += "_dataset=" + safe_tag(dataset)
    if loss_name != "crossentropy":
        name += "_loss=" + safe_tag(loss_name)
    return name + ".h5"


def safe_tag(text: str) -> str:
    """A model, dataset or loss spec (maybe ``path/to/file.py:fn``) as one file-name component."""
    base = os.path.basename(text.replace(":", "-"))
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in base)


def shard_file_name(surf_file: str, rank: int, of: int) -> str:
    """Shard ``rank`` of ``of`` of ``surf_file``: ``{surf_file}_rank={rank}_of={of}.h5``."""
    return f"{surf_file}_rank={rank}_of={of}.h5"


def repeat_files(prefix: str, idx_min: int, idx_max: int) -> tuple[list[str], list[int]]:
    """The surface files of the repeat experiment, for idx in ``[idx_min, idx_max]``.

    For each idx the reference's name ``{prefix}_{idx}.h5`` is taken if it exists; otherwise
    ours: ``prefix`` is the direction file's name without ``.h5`` and without ``_idx=N``, and
    the surface file of idx is ``{prefix}_idx={idx}.h5_<range>.h5`` (idx 0: ``{prefix}.h5_<range>.h5``),
    as plot_surface.py names it.

    Returns:
        The files found, and the idx values without a file.

    Raises:
        UsageError: nothing found, a bad idx range, or two surface files for one idx
            (e.g. two resolutions): pass the files explicitly then.
    """
    if idx_min > idx_max or idx_min < 0:
        raise RangeError(f"--idx_min {idx_min} / --idx_max {idx_max}: need 0 <= idx_min <= idx_max")
    found, missing = [], []
    for idx in range(idx_min, idx_max + 1):
        reference = f"{prefix}_{idx}.h5"
        if os.path.isfile(reference):
            found.append(reference)
            continue
        stem = prefix if idx == 0 else f"{prefix}_idx={idx}"
        matches = sorted(p for p in glob.glob(glob.escape(f"{stem}.h5_") + "*.h5") if os.path.isfile(p))
        if len(matches) > 1:
            raise UsageError(f"--prefix {prefix}: {len(matches)} surface files for idx {idx} "
                             f"({', '.join(os.path.basename(m) for m in matches[:3])}); "
                             f"pass the files to overlay with -f FILE1 FILE2 ...")
        (found if matches else missing).extend(matches or [idx])
    if not found:
        raise UsageError(f"--prefix {prefix}: no surface file for idx {idx_min}..{idx_max} (looked for "
                         f"{prefix}_<idx>.h5 and {prefix}_idx=<idx>.h5_<range>.h5)")
    return found, missing


# --------------------------------------------------------------------------- training runs and trajectories
def checkpoint_names(epoch: int) -> tuple[str, str]:
    """File names of the model and optimizer checkpoints of ``epoch``."""
    return f"model_{epoch}.t7", f"opt_state_{epoch}.t7"


def save_folder_name(*, model: str, optimizer: str, lr: float, lr_decay: float, batch_size: int,
                     weight_decay: float, momentum: float, save_epoch: int,
                     loss_name: str = "crossentropy", noaug: bool = False, raw_data: bool = False,
                     label_corrupt_prob: float = 0.0, ngpu: int = 1, idx: int = 0,
                     dataset: str = "cifar10") -> str:
    """The reference's folder name of a training run, e.g.
    ``resnet56_sgd_lr=0.1_bs=128_wd=0.0005_mom=0.9_save_epoch=10``.

    Two additions: ``_dataset=NAME`` when the data is not CIFAR-10 (so runs on other data never
    share a folder), and a model spec ``path/file.py:fn`` written as ``file.py-fn``.
    """
    name = f"{safe_tag(model)}_{optimizer}_lr={lr}"
    if lr_decay != 0.1:
        name += f"_lr_decay={lr_decay}"
    name += f"_bs={batch_size}_wd={weight_decay}_mom={momentum}_save_epoch={save_epoch}"
    if loss_name != "crossentropy":
        name += "_loss=" + safe_tag(loss_name)
    if noaug:
        name += "_noaug"
    if raw_data:
        name += "_rawdata"
    if label_corrupt_prob > 0:
        name += f"_randlabel={label_corrupt_prob}"
    if ngpu > 1:
        name += f"_ngpu={ngpu}"
    if idx:
        name += f"_idx={idx}"
    if dataset.strip().lower() != "cifar10":
        name += f"_dataset={safe_tag(dataset)}"
    return name


def checkpoint_path(model_folder: str, epoch: int, *, prefix: str, suffix: str) -> str:
    """``{model_folder}/{prefix}{epoch}{suffix}``."""
    return os.path.join(model_folder, f"{prefix}{epoch}{suffix}")


def pca_dir_file(model_folder: str, *, dir_type: str, ignore: str, save_epoch: int) -> str:
    """``{model_folder}/PCA_{dir_type}[_ignore={ignore}]_save_epoch={n}/directions.h5``."""
    folder = f"PCA_{dir_type}" + (f"_ignore={ignore}" if ignore not in ("", "none") else "")
    return os.path.join(model_folder, f"{folder}_save_epoch={save_epoch}", "directions.h5")


def proj_file_name(dir_file: str, method: str) -> str:
    """``{dir_file}_proj_{method}.h5``."""
    return f"{dir_file}_proj_{method}.h5"


# --------------------------------------------------------------------------- figures and meshes
def log_tag(log: bool) -> str:
    return "_log" if log else ""


def curve_figure(surf_file: str, kind: str, *, log: bool = False) -> str:
    """A 1D figure (without its format suffix): ``{surf_file}_1d_{kind}[_log]``, kind
    ``loss_acc``, ``train_loss``, ``train_err``, ``eig_abs_ratio`` or ``eig_ratio``."""
    return f"{surf_file}_1d_{kind}{log_tag(log)}"


def repeat_figure(base: str, *, log: bool = False) -> str:
    """The overlay of several 1D files: ``{base}_1d_loss_err_repeat[_log]``."""
    return f"{base}_1d_loss_err_repeat{log_tag(log)}"


def map_figure(surf_file: str, surf_name: str, kind: str) -> str:
    """A 2D figure of one array: ``{surf_file}_{surf_name}_{kind}``, kind ``2dcontour``,
    ``2dcontourf``, ``2dheat`` or ``3dsurface``."""
    return f"{surf_file}_{surf_name}_{kind}"


def trajectory_contour_figure(proj_file: str, surf_name: str) -> str:
    """Contours with the trajectory: ``{proj_file}_{surf_name}_2dcontour_proj``."""
    return f"{proj_file}_{surf_name}_2dcontour_proj"


def eig_ratio_figure(surf_file: str, tag: str, *, two_d: bool) -> str:
    """The Hessian ratio maps, ``tag`` ``abs_ratio`` or ``ratio``: the reference's
    ``{surf_file}_min_eig_max_eig_{tag}_heat_sns`` in 2D, ``{surf_file}_1d_eig_{tag}`` in 1D."""
    return f"{surf_file}_min_eig_max_eig_{tag}_heat_sns" if two_d else curve_figure(surf_file, f"eig_{tag}")


def density_figure(surf_file: str) -> str:
    """The Hessian's spectral density at the centre: ``{surf_file}_hessian_density``."""
    return f"{surf_file}_hessian_density"


def mesh_name(surf_file: str, surf_name: str, *, zmax: float | None, log: bool, suffix: str = ".vtp") -> str:
    """The reference's name: ``surf + '_' + surf_name + ['_zmax=' + str(zmax)] + ['_log'] + '.vtp'``."""
    name = f"{surf_file}_{surf_name}"
    if zmax is not None:
        name += f"_zmax={float(zmax)}"
    return name + log_tag(log) + suffix
