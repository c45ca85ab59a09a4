"""UCF101 RGB frames + optical flow.

Split files ``<root>/ucfTrainTestlist/{classInd,trainlist0K,testlist0K}.txt``.
Frames come from one of two common releases, chosen with ``layout`` (or give
``templates`` with ``{video}`` and ``{index}`` fields):

* ``"two_stream"``: ``jpegs_256/<video>/frame000001.jpg``,
  ``tvl1_flow/u/<video>/frame000001.jpg`` and ``tvl1_flow/v/...`` (6 digits, 1-based);
* ``"denseflow"`` (mmaction): ``rawframes/<video>/img_00001.jpg``,
  ``flow_x_00001.jpg``, ``flow_y_00001.jpg`` (5 digits, 1-based).

``<video>`` is the file stem, e.g. ``v_ApplyEyeMakeup_g08_c01``; folders are
matched case-insensitively (the lists say ``HandstandPushups`` where the files say
``HandStandPushups``). Inputs: ``rgb`` uint8 ``[N, T, S, S, 3]`` and ``flow`` uint8
``[N, S, S, 2L]`` (channels interleaved ``u_1, v_1, ..., u_L, v_L``; 128 = no
motion, see :func:`flow_to_float`). Validation holds out whole groups (``gXX``)
of the train list.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jaxmm.data.readers import frames
from jaxmm.data.readers.validate import DataFormatError, DropLog, check_nonempty, require_path, stack_or_empty
from jaxmm.data.types import ArrayDataset, DatasetSplits

TEMPLATES = {
    "two_stream": {"rgb": "jpegs_256/{video}/frame{index:06d}.jpg",
                   "flow_u": "tvl1_flow/u/{video}/frame{index:06d}.jpg",
                   "flow_v": "tvl1_flow/v/{video}/frame{index:06d}.jpg"},
    "denseflow": {"rgb": "rawframes/{video}/img_{index:05d}.jpg",
                  "flow_u": "rawframes/{video}/flow_x_{index:05d}.jpg",
                  "flow_v": "rawframes/{video}/flow_y_{index:05d}.jpg"},
}
LAYOUT = """  <root>/ucfTrainTestlist/classInd.txt        ('1 ApplyEyeMakeup' per line)
  <root>/ucfTrainTestlist/trainlist0K.txt     ('ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1')
  <root>/ucfTrainTestlist/testlist0K.txt      ('ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi')
  frames, layout 'two_stream': jpegs_256/<video>/frame000001.jpg, tvl1_flow/{u,v}/<video>/frame000001.jpg
  frames, layout 'denseflow':  rawframes/<video>/{img,flow_x,flow_y}_00001.jpg"""
_GROUP = re.compile(r"_g(\d+)_c\d+$")


def read_class_index(path: str | os.PathLike) -> tuple[str, ...]:
    """Reads ``classInd.txt`` (``<1-based id> <ClassName>``) into class names by 0-based id."""
    path = require_path(path, "UCF101 class index", LAYOUT)
    entries = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataFormatError(f"{path}:{lineno}: expected '<id> <ClassName>', got {line!r}")
        entries[int(parts[0])] = parts[1]
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise DataFormatError(f"{path}: class ids must be 1..{len(entries)} without gaps")
    return tuple(entries[i] for i in range(1, len(entries) + 1))


def read_video_list(path: str | os.PathLike, class_names: tuple[str, ...]) -> list[tuple[str, int]]:
    """Reads a train/test list into ``(video_stem, 0-based label)`` pairs.

    Train lists carry a 1-based label, test lists only the path; the label then
    comes from the class folder (matched case-insensitively).

    Raises:
      DataFormatError: naming file and line for a malformed line, an unknown class
        folder, or a label outside the class list.
    """
    path = require_path(path, "UCF101 split list", LAYOUT)
    by_name = {name.lower(): i for i, name in enumerate(class_names)}
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{lineno}"
        if len(parts) > 2 or "/" not in parts[0]:
            raise DataFormatError(f"{where}: expected '<Class>/<video>.avi [label]', got {line!r}")
        folder, file = parts[0].split("/", 1)
        if folder.lower() not in by_name:
            raise DataFormatError(f"{where}: class folder {folder!r} is not in classInd.txt")
        label = by_name[folder.lower()]
        if len(parts) == 2:
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(class_names):
                raise DataFormatError(f"{where}: label {parts[1]!r} outside 1..{len(class_names)}")
            label = int(parts[1]) - 1
        rows.append((Path(file).stem, label))
    if not rows:
        raise DataFormatError(f"{path}: split list is empty")
    return rows


def flow_to_float(flow: np.ndarray) -> np.ndarray:
    """uint8 flow jpg values -> float32 in ``[-1, 1)`` (128 maps to 0, no motion)."""
    return (flow.astype(np.float32) - 128.0) / 128.0


class _FolderIndex:
    """Resolves ``<prefix>/<video>`` paths case-insensitively, caching directory listings."""

    def __init__(self, root: Path):
        self.root = root
        self.listings: dict[Path, dict[str, str]] = {}

    def resolve(self, relative: str) -> Path:
        """The existing path matching ``relative`` up to case, or the literal path."""
        path = self.root / relative
        if path.exists():
            return path
        current = self.root
        for part in Path(relative).parts:
            if current not in self.listings:
                self.listings[current] = {p.name.lower(): p.name for p in current.iterdir()} if current.is_dir() else {}
            current = current / self.listings[current].get(part.lower(), part)
        return current


def _count_frames(index: _FolderIndex, template: str, video: str) -> int:
    """Number of consecutive frames ``1, 2, ...`` present for ``template``."""
    folder = index.resolve(template.format(video=video, index=1)).parent
    if not folder.is_dir():
        return 0
    names = {p.name for p in folder.iterdir()}
    n = 0
    while Path(template.format(video=video, index=n + 1)).name in names:
        n += 1
    return n


def _load_video(index, templates, video, num_frames, flow_length, size, mode, rng):
    """RGB ``[T, S, S, 3]`` and flow ``[S, S, 2L]`` of one video (raises on bad media)."""
    n_rgb = _count_frames(index, templates["rgb"], video)
    n_flow = min(_count_frames(index, templates["flow_u"], video), _count_frames(index, templates["flow_v"], video))
    if n_rgb == 0:
        raise FileNotFoundError(index.resolve(templates["rgb"].format(video=video, index=1)))
    if n_flow == 0:
        raise FileNotFoundError(index.resolve(templates["flow_u"].format(video=video, index=1)))
    rgb_idx = frames.choose_frames(n_rgb, num_frames, mode, rng) + 1
    rgb = np.stack([frames.read_image(index.resolve(templates["rgb"].format(video=video, index=int(i))), size)
                    for i in rgb_idx])
    span = max(n_flow - flow_length, 0)
    start = int(rng.integers(span + 1)) if mode == "random" else span // 2
    channels = []
    for t in range(flow_length):
        i = start + min(t, n_flow - 1) + 1
        for key in ("flow_u", "flow_v"):
            channels.append(frames.read_image(index.resolve(templates[key].format(video=video, index=i)), size, "L"))
    return rgb, np.stack(channels, axis=-1)


def load_ucf101(root: str | os.PathLike, *, split: int = 1, layout: str = "two_stream",
                templates: dict[str, str] | None = None, num_frames: int = 1, flow_length: int = 10,
                image_size: int = 224, train_frames: str = "random", val_groups: int = 3, seed: int = 0,
                strict: bool = False, progress: bool = False) -> DatasetSplits:
    """Loads UCF101 RGB frames and optical-flow stacks for one official split.

    Args:
      root: folder holding ``ucfTrainTestlist/`` and the frame folders.
      split: official split 1, 2 or 3.
      layout: ``"two_stream"`` or ``"denseflow"`` naming (see module docstring).
      templates: overrides ``layout``: ``{"rgb", "flow_u", "flow_v"}`` path templates
        relative to ``root`` with ``{video}`` and ``{index}`` (1-based) fields.
      num_frames: RGB frames per video T.
      flow_length: flow frames L per stack (2L channels).
      image_size: stored frame side.
      train_frames: ``"random"`` (random RGB frames and flow start, drawn at load time)
        or ``"uniform"``; eval uses evenly spaced RGB frames and the centred flow stack.
      val_groups: number of train-list groups (``gXX``, actors/scenes) held out for validation.
      seed: seed of the validation groups and random frames.
      strict: raise on the first bad video instead of dropping it.
      progress: show tqdm bars.

    Returns:
      :class:`DatasetSplits` with ``rgb`` and ``flow`` inputs, 101 classes (labels 0-based).
    """
    if split not in (1, 2, 3):
        raise ValueError(f"split must be 1, 2 or 3, got {split}")
    if templates is None:
        if layout not in TEMPLATES:
            raise ValueError(f"layout must be one of {sorted(TEMPLATES)}, got {layout!r}")
        templates = TEMPLATES[layout]
    if set(templates) != {"rgb", "flow_u", "flow_v"}:
        raise ValueError(f"templates needs keys rgb, flow_u, flow_v; got {sorted(templates)}")
    root = require_path(root, "UCF101 root folder", LAYOUT)
    lists = root / "ucfTrainTestlist"
    class_names = read_class_index(lists / "classInd.txt")
    train = read_video_list(lists / f"trainlist0{split}.txt", class_names)
    test = read_video_list(lists / f"testlist0{split}.txt", class_names)
    groups = sorted({m.group(1) for v, _ in train if (m := _GROUP.search(v))})
    held = set(np.random.default_rng(seed).permutation(groups)[:val_groups]) if groups else set()
    in_val = [bool((m := _GROUP.search(v)) and m.group(1) in held) for v, _ in train]
    val = [r for r, v in zip(train, in_val) if v]
    train = [r for r, v in zip(train, in_val) if not v]
    index = _FolderIndex(root)
    rng = np.random.default_rng(seed)

    def load(rows, name, mode):
        log = DropLog(f"ucf101/{name}", LAYOUT, strict)
        rgbs, flows, labels = [], [], []
        for video, label in tqdm(rows, desc=log.name, disable=not progress):
            try:
                rgb, flow = _load_video(index, templates, video, num_frames, flow_length, image_size, mode, rng)
            except FileNotFoundError as e:
                log.drop("missing_frames", e.args[0] if e.args else video)
                continue
            except DataFormatError as e:
                log.drop("bad_image", video, str(e))
                continue
            rgbs.append(rgb)
            flows.append(flow)
            labels.append(label)
        dropped = log.summary()
        check_nonempty(len(labels), len(rows), log.name, LAYOUT, dropped)
        return ArrayDataset(
            inputs={"rgb": stack_or_empty(rgbs, (num_frames, image_size, image_size, 3), np.uint8),
                    "flow": stack_or_empty(flows, (image_size, image_size, 2 * flow_length), np.uint8)},
            label=np.asarray(labels, np.int32), num_classes=len(class_names), name=log.name,
            class_names=class_names, dropped=dropped)

    return DatasetSplits(train=load(train, "train", train_frames), val=load(val, "val", "uniform"),
                         test=load(test, "test", "uniform"))
