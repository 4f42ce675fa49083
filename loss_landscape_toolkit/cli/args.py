"""The command-line flags of every program, with their reference-code names, aliases and defaults.

This module imports neither torch nor h5py, so ``--help`` and argument errors are instant. It also
holds the two pieces every program's ``main`` shares: :class:`ArgumentParser`, whose errors are
one line and exit code 2, and :func:`reports_usage_errors`, which turns any
:class:`~loss_landscape_toolkit.errors.UsageError` into that line.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Callable, Sequence

import numpy as np

from .._options import DATAPATH_ENV, DEFAULT_DATAPATH, DEFAULT_SEED, DIR_TYPES, DPI, FORMATS, IGNORES, LOSSES, NORMS
from ..errors import EXIT_INCOMPLETE, EXIT_USAGE, Incomplete, Interrupted, RangeError, SilentExit, UsageError

MainFn = Callable[[Sequence[str] | None], int]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except a default of None ("not given": the help says what then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


Check = Callable[[argparse.Namespace], None]


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors become :class:`UsageError` (one line, exit 2, printed once).

    A flag added with :func:`checked` also has its value checked right after parsing (before
    a program loads anything), so a nonsensical value stops the program at once.
    """

    def __init__(self, prog: str, description: str | None = None):
        super().__init__(prog=prog, description=description, formatter_class=_HelpFormatter)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        """Parse as argparse, then run the checks of the flags (see :func:`checked`)."""
        parsed, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            for check in getattr(action, "checks", ()):
                check(parsed)
        return parsed, extras


def checked(action: argparse.Action, check: Check) -> argparse.Action:
    """Attach ``check(namespace)`` to a flag: :class:`ArgumentParser` runs it after parsing.

    A check that reads several flags is attached to one of them only. Returns ``action``.
    """
    action.checks = [*getattr(action, "checks", ()), check]  # type: ignore[attr-defined]
    return action


def reports_usage_errors(prog: str) -> Callable[[MainFn], MainFn]:
    """Decorate a CLI ``main(argv) -> int`` so a :class:`UsageError` becomes one line and exit 2.

    :class:`Incomplete` becomes one line and exit 3; an interruption (:class:`Interrupted`, or
    Ctrl-C anywhere) one line and exit 128 + the signal number. Any other exception propagates
    with its traceback: it is a bug, not bad input.
    """

    def decorate(main: MainFn) -> MainFn:
        @functools.wraps(main)
        def wrapper(argv: Sequence[str] | None = None) -> int:
            try:
                return main(argv)
            except SilentExit as exc:
                return exc.code
            except UsageError as exc:
                print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
                return EXIT_USAGE
            except Incomplete as exc:
                print(f"{prog}: {exc}", file=sys.stderr, flush=True)
                return EXIT_INCOMPLETE
            except Interrupted as exc:
                print(f"{prog}: {exc}", file=sys.stderr, flush=True)
                return exc.code
            except KeyboardInterrupt:
                print(f"{prog}: stopped by SIGINT (Ctrl-C)", file=sys.stderr, flush=True)
                return 128 + 2

        return wrapper

    return decorate


# --------------------------------------------------------------------------- ranges
AUTO_NUM = 51  # points of a bare ``auto`` range (the reference's default count)


@dataclass(frozen=True)
class GridRange:
    """``min:max:num`` of one axis. ``auto`` (written ``auto`` or ``auto:num``): the ends are not
    known yet; cli/job.py finds them from the loss and replaces the range before it is used."""

    vmin: float
    vmax: float
    num: int
    auto: bool = False

    def coordinates(self) -> np.ndarray:
        """``linspace(vmin, vmax, num)``, with a point that only rounding keeps off 0 put at 0
        exactly (the centre model itself)."""
        self._check_resolved()
        coords = np.linspace(self.vmin, self.vmax, self.num)
        if self.num > 1:
            coords[np.abs(coords) <= 1e-12 * (self.vmax - self.vmin)] = 0.0
        return coords

    def as_tuple(self) -> tuple[float, float, int]:
        self._check_resolved()
        return (self.vmin, self.vmax, self.num)

    def _check_resolved(self) -> None:
        if self.auto:
            raise ValueError("an automatic range has no coordinates before its ends are found")


def parse_range(text: str | None, flag: str) -> GridRange:
    """Parse ``min:max:num`` (e.g. ``-1:1:51``). ``num`` may be written ``51.0`` (old scripts).
    ``auto`` or ``auto:num`` gives an automatic range (``GridRange.auto``; ``AUTO_NUM`` points).

    Raises:
        RangeError: anything else, with the expected form.
    """
    example = f"{flag}=-1:1:51"
    if text is None or not text.strip():
        raise RangeError(f"{flag} is empty; expected min:max:num, e.g. {example}")
    if text.strip().split(":")[0] == "auto":
        return _parse_auto(text.strip(), flag)
    parts = text.split(":")
    if len(parts) != 3:
        raise RangeError(f"{flag}={text} has {len(parts)} field(s); expected min:max:num, e.g. {example}")
    try:
        vmin, vmax, num_f = (float(p) for p in parts)
    except ValueError:
        raise RangeError(f"{flag}={text} is not three numbers min:max:num, e.g. {example}") from None
    if not all(math.isfinite(v) for v in (vmin, vmax, num_f)):
        raise RangeError(f"{flag}={text}: values must be finite numbers, e.g. {example}")
    if num_f != int(num_f) or num_f < 1:
        raise RangeError(f"{flag}={text}: the number of points must be a whole number >= 1, e.g. {example}")
    num = int(num_f)
    if num > 1 and not vmin < vmax:
        raise RangeError(f"{flag}={text}: min must be smaller than max, e.g. {example}")
    if num == 1 and vmin != vmax:
        raise RangeError(f"{flag}={text}: one point needs min == max (e.g. {flag}=0:0:1)")
    return GridRange(vmin, vmax, num)


def _parse_auto(text: str, flag: str) -> GridRange:
    """``auto`` or ``auto:num`` (num >= 2; an even num is raised to odd when the range is found)."""
    parts = text.split(":")
    num_text = parts[1] if len(parts) == 2 else str(AUTO_NUM) if len(parts) == 1 else ""
    try:
        num_f = float(num_text)
    except ValueError:
        num_f = math.nan
    if not (math.isfinite(num_f) and num_f == int(num_f) and num_f >= 2):
        raise RangeError(f"{flag}={text}: expected auto or auto:num with a whole number of points >= 2, "
                         f"e.g. {flag}=auto:51")
    return GridRange(math.nan, math.nan, int(num_f), auto=True)


# --------------------------------------------------------------------------- sizes that fit
# What one grid point of a surface run costs at least: the metric arrays (train and test loss
# and accuracy, float64) and their two done masks (uint8), held in memory when the file is read,
SURFACE_BYTES_PER_POINT = 4 * 8 + 2
# and its entry in the list of points still to compute (a Python (index, groups) tuple; measured).
WORK_LIST_BYTES_PER_POINT = 150
GRID_BYTES_PER_POINT = SURFACE_BYTES_PER_POINT + WORK_LIST_BYTES_PER_POINT
FALLBACK_MEMORY = 2**40  # the limit where the operating system does not tell the memory size


def physical_memory() -> int:
    """Bytes of memory (RAM) of this machine; ``FALLBACK_MEMORY`` where the OS does not say."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY
    return total if total > 0 else FALLBACK_MEMORY


def _digits3(value: Decimal) -> str:
    """3 significant digits without trailing zeros (``1e+12``, ``1.84e+584``): any size."""
    if value < Decimal("1e300"):
        return f"{float(value):.3g}"
    return f"{Context(prec=3).plus(value).normalize():g}"


def format_count(n: int) -> str:
    """``n`` as written, or with 3 significant digits from a million on (``1e+12``)."""
    return str(n) if n < 10**6 else _digits3(Decimal(n))


def format_bytes(n: int) -> str:
    """``n`` bytes in decimal units with 3 significant digits: ``8 TB``, ``190 MB``."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    k = 0
    while k < len(units) - 1 and n >= 1000 ** (k + 1):
        k += 1
    return f"{_digits3(Decimal(n) / Decimal(1000**k))} {units[k]}"  # Decimal: no overflow at any size


def check_memory(what: str, need: int, *, fix: str) -> None:
    """Refuse a run that needs more than this machine's memory before it starts.

    Args:
        what: what needs the memory, e.g. ``"--x=-1:1:1000000 is 1e+06 points: the surface arrays"``.
        need: the bytes it needs at least.
        fix: how to ask for less.

    Raises:
        RangeError: ``need`` is more than the machine's memory.
    """
    have = physical_memory()
    if need > have:
        raise RangeError(f"{what} would need {format_bytes(need)}, more than the {format_bytes(have)} of "
                         f"memory of this machine; {fix}")


def check_grid_fits(x: GridRange, y: GridRange | None, *, given: str) -> None:
    """Refuse a grid whose surface arrays cannot fit in this machine's memory.

    Args:
        given: the flags as the user wrote them, for the message.

    Raises:
        RangeError: saying the points, the memory they need and how many points would fit.
    """
    points = x.num * (1 if y is None else y.num)
    most = physical_memory() // GRID_BYTES_PER_POINT
    check_memory(f"{given} is {format_count(points)} points: its surface arrays and list of points to compute",
                 points * GRID_BYTES_PER_POINT,
                 fix=f"use fewer points (at most {format_count(most)} in all; the reference's 51 x 51 grid "
                     f"is --x=-1:1:51 --y=-1:1:51)")


def _check_grid_flags(args: argparse.Namespace) -> None:
    """--x and --y parse, and their grid fits in memory."""
    x = parse_range(args.x, "--x")
    y = None if args.y is None else parse_range(args.y, "--y")
    check_grid_fits(x, y, given=f"--x={args.x}" + ("" if y is None else f" x --y={args.y}"))


# --------------------------------------------------------------------------- flag groups
def choices_with_empty(values: Sequence[str]) -> list[str]:
    return list(values) + [""]  # '' is the reference's spelling of "none"


def norm_choice(value: str) -> str:
    """The reference's '' for "none" (of --xnorm, --xignore, ...), spelled ``none``."""
    return value or "none"


def add_parallel_args(parser: argparse.ArgumentParser, *, speed: bool = True) -> None:
    g = parser.add_argument_group("parallel and devices")
    g.add_argument("--mpi", "-m", action="store_true",
                   help="use MPI (detected automatically under mpirun/mpiexec/srun)")
    g.add_argument("--cuda", "-c", action="store_true",
                   help="evaluate on GPU: rank r uses GPU (node-local rank) %% (visible GPUs)")
    g.add_argument("--device", default=None,
                   help="explicit torch device, e.g. cpu, cuda, cuda:1 (default: cpu, or cuda with --cuda)")
    g.add_argument("--ngpu", type=int, default=1,
                   help="if > 1, wrap the model in DataParallel over all visible GPUs")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads per process for torch (default: SLURM_CPUS_PER_TASK under SLURM, "
                        "else the cores shared by the processes of the node)")
    if not speed:
        return
    g.add_argument("--channels_last", action="store_true", default=None,
                   help="NHWC memory format for model and data (default: on for convolutional models "
                        "whose forward accepts it; faster on CPUs and GPUs)")
    g.add_argument("--no_channels_last", dest="channels_last", action="store_false",
                   help="keep the default NCHW memory format")
    g.add_argument("--fold_bn", action="store_true", default=None,
                   help="evaluate with each BatchNorm folded into the convolution before it, refreshed "
                        "at every point (default: on where the model has such pairs)")
    g.add_argument("--no_fold_bn", dest="fold_bn", action="store_false",
                   help="evaluate the model's BatchNorm layers as they are")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the model (one-time compile cost per process; see README)")
    g.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast in the forward pass (GPUs; about 3 significant digits)")
    g.add_argument("--points_per_forward", type=int, default=1,
                   help="grid points evaluated together in one vmapped forward pass (weights directions)")


DATAPATH_HELP = (f"CIFAR-10 folder (default: ${DATAPATH_ENV} if set, else {DEFAULT_DATAPATH} in the "
                 f"working folder, or ./data when CIFAR-10 is there)")


def add_data_args(parser: argparse.ArgumentParser, *, test: bool = True) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--batch_size", type=int, default=128, help="evaluation batch size")
    g.add_argument("--dataset", default="cifar10",
                   help="cifar10 | digits | path/to/file.py:function | pkg.module:function")
    g.add_argument("--datapath", default=None, help=DATAPATH_HELP)
    g.add_argument("--raw_data", action="store_true", help="no normalization of CIFAR-10 images")
    g.add_argument("--data_split", type=int, default=1,
                   help="evaluate on one of this many disjoint random parts of the training set")
    g.add_argument("--split_idx", type=int, default=0, help="which part (0-based) with --data_split")
    g.add_argument("--trainloader", default="", help="pickled DataLoader for training data (trusted files only)")
    g.add_argument("--testloader", default="", help="pickled DataLoader for test data (trusted files only)")
    g.add_argument("--target_key", default="labels",
                   help="the key of the targets in dict items of a custom dataset (the other keys "
                        "are the model's keyword arguments)")
    if test:
        g.add_argument("--eval_test", action="store_true",
                       help="also compute test_loss/test_acc on the test set in the same run")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", default="resnet56",
                   help="zoo name (see README), path/to/file.py:factory or pkg.module:factory")
    g.add_argument("--model_folder", default="", help="accepted for compatibility; unused")
    g.add_argument("--model_file", default="", help="checkpoint of the centre model")
    g.add_argument("--model_file2", default="", help="x direction = model_file2 - model_file")
    g.add_argument("--model_file3", default="", help="y direction = model_file3 - model_file")
    add_loss_arg(g)


def add_loss_arg(group: argparse._ArgumentGroup) -> None:
    """``--loss_name`` (alias ``--loss``): a built-in loss or the user's, checked when parsed."""
    group.add_argument("--loss_name", "--loss", "-l", default="crossentropy", type=loss_choice, metavar="LOSS",
                       help=f"{' | '.join(LOSSES)} | path/to/file.py:fn | pkg.module:fn "
                            f"(fn(outputs, targets) -> per-item losses or (sum, count)); see README")


def loss_choice(text: str) -> str:
    """A --loss value, kept as given once :func:`objective.get_loss` accepts it (a user loss is
    imported to check it exists).

    Raises:
        LossError: an unknown name or a spec that cannot be imported.
    """
    from ..objective import get_loss  # torch: only for the programs that compute

    get_loss(text)
    return text


def add_direction_args(parser: argparse.ArgumentParser, *, same_dir: bool = True) -> None:
    g = parser.add_argument_group("directions and grid")
    g.add_argument("--dir_file", default="", help="use this existing direction file")
    g.add_argument("--dir_type", default="weights", choices=DIR_TYPES,
                   help="weights: parameters only; states: state_dict incl. BatchNorm statistics")
    g.add_argument("--x", default="-1:1:51",
                   help="xmin:xmax:xnum (write --x=-1:1:51), or auto:xnum: a range around the basin, "
                        "found from a few loss evaluations (see --auto_rise)")
    checked(g.add_argument("--y", default=None, help="ymin:ymax:ynum or auto:ynum; gives a 2D surface"),
            _check_grid_flags)
    g.add_argument("--auto_rise", type=float, default=None,
                   help="with auto ranges: the basin ends where the loss exceeds the centre's by this much "
                        "(default: max(1, loss at the centre))")
    norms, ignores = choices_with_empty(NORMS), choices_with_empty(IGNORES)
    g.add_argument("--xnorm", default="filter", choices=norms, help="normalization of x (default filter)")
    g.add_argument("--ynorm", default="filter", choices=norms, help="normalization of y (default filter)")
    g.add_argument("--xignore", default="biasbn", choices=ignores,
                   help="biasbn: no movement of biases and BatchNorm (default); none: move them too")
    g.add_argument("--yignore", default="biasbn", choices=ignores)
    if same_dir:
        g.add_argument("--same_dir", action="store_true", help="y direction = x direction")
    g.add_argument("--idx", type=int, default=0, help="repeat index: new random directions for each N > 0")
    g.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help="seed of the random directions (and of the model's init without --model_file)")
    g.add_argument("--surf_file", default="", help="surface file name (default: named like the reference)")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run")
    g.add_argument("--flush_secs", type=float, default=5.0,
                   help="write results to the surface file at most this often (seconds)")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")
    g.add_argument("--estimate", action="store_true",
                   help="time a few points, print the expected wall time for the number of ranks, exit")
    g.add_argument("--rank", type=int, default=None,
                   help="with --of N: compute shard I (0-based; every N-th point of the grid) into a file of "
                        "its own (default under a SLURM job array: the array task id)")
    g.add_argument("--of", type=int, default=None, help="number of shards (jobs without MPI)")
    g.add_argument("--merge", action="store_true", help="with --of N: merge the shard files into the surface file")


def add_level_args(group: argparse._ArgumentGroup) -> None:
    """``--vmin``, ``--vmax``, ``--vlevel``: None unless given. With none given, the figures take
    their levels from the data; with any, the reference's ``arange(vmin, vmax, vlevel)``."""
    from ..plotting._levels import REFERENCE_LEVELS  # plotting programs only: matplotlib is loaded anyway

    vmin, vmax, vlevel = REFERENCE_LEVELS
    unset = "if none of --vmin/--vmax/--vlevel is given, levels come from the data"
    group.add_argument("--vmax", type=float, default=None,
                       help=f"highest contour level, heat-map upper limit and 3D clip ({unset}; "
                            f"reference default {vmax:g})")
    group.add_argument("--vmin", type=float, default=None,
                       help=f"lowest contour level and heat-map lower limit ({unset}; reference default {vmin:g})")
    checked(group.add_argument(
        "--vlevel", type=float, default=None,
        help=f"contour spacing. Default: levels from the data (about 20, log-spaced in the rise over the "
             f"minimum; error/accuracy maps every 5 on 0-100). Giving any of --vmin/--vmax/--vlevel draws "
             f"the reference's arange(vmin, vmax, vlevel), with {vmin:g}, {vmax:g} and {vlevel:g} for "
             f"those left out"), check_levels)


def check_loss_max(args: argparse.Namespace) -> None:
    """--loss_max, the top of the loss axis of 1D plots, is finite and > 0.

    Raises:
        RangeError: naming the value.
    """
    if not (math.isfinite(args.loss_max) and args.loss_max > 0):
        raise RangeError(f"--loss_max (the top of the loss axis) must be a finite number > 0, got {args.loss_max}")


MAX_LEVELS = 1000  # contour levels of one figure (the defaults give 20; 1000 take seconds to draw)


def check_levels(args: argparse.Namespace) -> None:
    """None of --vmin/--vmax/--vlevel given (levels from the data), or, with the reference's
    values for those left out: --vmin < --vmax, both finite, and --vlevel > 0 spacing them into
    at most MAX_LEVELS levels.

    Raises:
        RangeError: with the flags to change.
    """
    from ..plotting._levels import flags_given, reference_limits

    if not flags_given(args.vmin, args.vmax, args.vlevel):
        return
    vmin, vmax, vlevel = reference_limits(args.vmin, args.vmax, args.vlevel)
    count = (vmax - vmin) / vlevel
    if not count <= MAX_LEVELS:
        raise RangeError(f"--vmin {vmin:g} --vmax {vmax:g} --vlevel {vlevel:g} makes {count:.3g} contour levels, "
                         f"more than {MAX_LEVELS}; raise --vlevel (--vlevel {(vmax - vmin) / 20:.3g} gives 20)")


def add_output_args(parser: argparse.ArgumentParser, *, plot: bool = False) -> None:
    """``--format``, ``--dpi`` and ``--show`` of every plotting program; ``plot`` adds ``--plot``
    (draw the figures after computing) for the programs that compute."""
    g = parser.add_argument_group("figure output")
    if plot:
        g.add_argument("--plot", action="store_true", help="plot after computing")
    g.add_argument("--format", default="pdf", choices=FORMATS,
                   help="figure format; names are the reference's with this suffix")
    dpi = g.add_argument("--dpi", type=int, default=DPI, help="resolution of png figures (and of rasters in pdf/svg)")
    checked(dpi, check_dpi)
    g.add_argument("--show", action="store_true",
                   help="also show the figures on screen (needs a display; otherwise a warning)")


MAX_DPI = 4800  # a 6.4 x 4.8 inch figure is then 30720 x 23040 pixels, 2.8 GB as RGBA


def check_dpi(args: argparse.Namespace) -> None:
    """1 <= --dpi <= MAX_DPI (a png's pixels grow with its square).

    Raises:
        RangeError: naming the allowed range.
    """
    if not 1 <= args.dpi <= MAX_DPI:
        raise RangeError(f"--dpi must be between 1 and {MAX_DPI} (the default {DPI} is print quality), got {args.dpi}")


def add_eig_arg(parser: argparse.ArgumentParser) -> None:
    """``--eig``: the re-plot path of plot_hessian_eigen.py's results, in plot_1D/plot_2D."""
    parser.add_argument("--eig", action="store_true",
                        help="plot the Hessian eigenvalue ratios of the file (from plot_hessian_eigen.py) "
                             "instead of the loss, and the spectral density at the centre if stored")
