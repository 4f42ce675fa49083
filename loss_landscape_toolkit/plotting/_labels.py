"""Contour labels that can be read: each on a stretch of its own line with room around it.

matplotlib's ``clabel`` picks each label's spot on its own (where the line is straightest), so
the labels of close rings sit on top of each other and of their neighbours' lines. Here every
candidate spot along a level's line is scored by its clearance: how far the label's rotated box
stays from every other level's line and from the labels already placed. The best spot is kept
when the box clears them all; then ``clabel`` draws the labels there, cutting their own lines.
"""
from __future__ import annotations

import numpy as np

CANDIDATES = 48  # spots tried along each level's line
PAD = 2.0  # pixels kept free around a label
ROOM_CAP = 40.0  # pixels: more room than this counts the same (spots are then picked in order)


def place_labels(ax, lines, wanted, *, texts: dict[float, str], fontsize: float,
                 avoid: np.ndarray | None = None) -> list[float]:
    """Label the contour set ``lines`` (drawn on ``ax``): the levels ``wanted`` first, then any
    other level neither of whose neighbours got a label; at most one label per level, none
    overlapping another label, another level's line or the polyline ``avoid`` ((n, 2) data
    coordinates), none outside the axes.

    Returns:
        The levels labelled.
    """
    levels = [float(v) for v in lines.levels]
    ax.figure.draw_without_rendering()  # final limits and layout: display coordinates hold
    pieces = [_pieces(ax, path) for path in lines.get_paths()]  # per level: (n, 2) pixel arrays
    dense = [[_densify(p) for p in ps] for ps in pieces]  # so no line slips between two points
    extra = [] if avoid is None or len(avoid) < 2 else [_densify(ax.transData.transform(avoid))]
    frame = ax.get_window_extent()
    size = {lv: _text_size(ax, texts[lv], fontsize) for lv in levels}
    placed: list[tuple[int, np.ndarray, tuple[float, float]]] = []  # (level index, corners, data spot)

    def try_level(i: int) -> None:
        others = [p for j, ps in enumerate(dense) if j != i for p in ps] + extra
        obstacles = np.concatenate(others) if others else np.empty((0, 2))
        spot = _best_spot(pieces[i], size[levels[i]], obstacles, [c for _, c, _ in placed], frame)
        if spot is not None:
            centre, corners = spot
            placed.append((i, corners, tuple(ax.transData.inverted().transform(centre))))

    wanted = {float(v) for v in wanted}
    for i, lv in enumerate(levels):
        if lv in wanted:
            try_level(i)
    for i, lv in enumerate(levels):  # fill gaps left by wanted labels with no room
        if lv not in wanted and not {i - 1, i, i + 1} & {j for j, _, _ in placed}:
            try_level(i)
    if placed:
        placed.sort()
        lines.clabel([levels[i] for i, _, _ in placed], inline=True, inline_spacing=2, fmt=texts,
                     fontsize=fontsize, manual=[spot for _, _, spot in placed])
    return [levels[i] for i, _, _ in placed]


def _pieces(ax, path) -> list[np.ndarray]:
    """The connected stretches of a level's line, in pixels."""
    return [ax.transData.transform(p) for p in path.to_polygons(closed_only=False) if len(p) >= 3]


def _densify(piece: np.ndarray, step: float = 1.5) -> np.ndarray:
    """Points along the polyline ``piece`` at most ``step`` pixels apart."""
    along = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(piece, axis=0), axis=1))]
    at = np.linspace(0.0, along[-1], max(2, int(along[-1] / step) + 1))
    return np.column_stack([np.interp(at, along, piece[:, 0]), np.interp(at, along, piece[:, 1])])


def _text_size(ax, text: str, fontsize: float) -> tuple[float, float]:
    probe = ax.text(0, 0, text, fontsize=fontsize)
    box = probe.get_window_extent()
    probe.remove()
    return box.width, box.height


def _best_spot(pieces, size, obstacles, placed_corners, frame):
    """The spot on ``pieces`` where the label's box has the most room, or None if none has
    ``PAD`` pixels: (centre in pixels, box corners in pixels)."""
    width, height = size
    half = np.array([width / 2 + PAD, height / 2 + PAD])
    best, best_room = None, 0.0
    for centre, angle in _candidates(pieces, width):
        corners = _corners(centre, angle, width, height)
        if not (frame.contains(*corners.min(0)) and frame.contains(*corners.max(0))):
            continue
        if any(_boxes_meet(corners, other) for other in placed_corners):
            continue
        room = _room(centre, angle, half, obstacles)
        if room > best_room:
            best, best_room = (centre, corners), room
    return best


def _candidates(pieces, width: float):
    """Up to CANDIDATES (centre, angle) spots spread by length over the stretches of a line
    that are longer than the label (a noisy surface has many short islands: they are skipped)."""
    long = [p for p in pieces if np.linalg.norm(np.diff(p, axis=0), axis=1).sum() >= width]
    if not long:
        return []
    total = sum(len(p) for p in long)
    spots = []
    for piece in long:
        count = max(1, round(CANDIDATES * len(piece) / total))
        for k in np.unique(np.linspace(1, len(piece) - 2, count).astype(int)):
            tangent = piece[min(k + 2, len(piece) - 1)] - piece[max(k - 2, 0)]
            spots.append((piece[k], float(np.arctan2(tangent[1], tangent[0]))))
    return spots


def _corners(centre, angle, width, height) -> np.ndarray:
    along = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-along[1], along[0]])
    signs = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]])
    w, h = width / 2 + PAD, height / 2 + PAD
    return centre + signs[:, :1] * w * along + signs[:, 1:] * h * across


def _room(centre, angle, half, obstacles) -> float:
    """How far (pixels) the nearest obstacle point lies outside the label's padded box."""
    if not len(obstacles):
        return ROOM_CAP
    reach = float(np.hypot(*half)) + ROOM_CAP  # farther points cannot lower the room below the cap
    rel = obstacles - centre
    rel = rel[(np.abs(rel[:, 0]) < reach) & (np.abs(rel[:, 1]) < reach)]
    if not len(rel):
        return ROOM_CAP
    c, s = np.cos(angle), np.sin(angle)
    local = np.abs(np.column_stack([rel @ [c, s], rel @ [-s, c]]))  # in the label's frame
    outside = np.max(local - half, axis=1)
    return min(float(outside.min()), ROOM_CAP)


def _boxes_meet(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two rotated boxes (4 corners each) overlap: no separating axis among their edges."""
    for box in (a, b):
        for k in range(4):
            edge = box[(k + 1) % 4] - box[k]
            normal = np.array([-edge[1], edge[0]])
            pa, pb = a @ normal, b @ normal
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True
