"""Top-down pose demo: detect people (RTMDet), estimate their keypoints, draw and save the results.

    python topdown_demo_with_mmdet.py DET_CONFIG DET_CHECKPOINT POSE_CONFIG POSE_CHECKPOINT \
        --input IMAGE|FOLDER|VIDEO|webcam [--out-dir DIR] [--save-predictions] [--draw-bbox] ...

Same command line as MMPose 1.3.2's demo (its --output-root is --out-dir here; both work).
``DET_CONFIG none`` skips detection (the whole image is one person box). Checkpoints may be files,
model-zoo names or http(s) URLs, and configs model-zoo names (see models/checkpoints/model_zoo.py).
Outputs: the drawn image (same name) or an .mp4 named after the video, and with --save-predictions
``results_<name>.json`` (``meta_info`` with keypoint names, skeleton and colours; ``instance_info``
with keypoints, keypoint_scores, bbox, bbox_score per person, per frame for videos), each announced
as ``wrote FILE``; the output folder is created when its first file is written.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from apis import inference_detector, inference_topdown, init_detector, init_model, select_boxes
from apis.inputs import ImageReadError, as_config, read_image
from utils import cli
from utils.errors import UserError
from utils.logger import plural
from utils.output_files import atomic_output, write_image, write_text_atomic
from utils.threads import set_threads
from visualization.drawing import draw_pose

IMAGE_EXTS = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}
VIDEO_EXTS = {'.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv', '.flv'}


class DemoError(UserError, RuntimeError):
    """A problem with the demo's inputs, reported as one line without a traceback."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.ArgumentParser(description='Top-down pose estimation behind a person detector')
    p.add_argument('det_config',
                   help="detector config (or model-zoo name), or 'none': the whole image is the box")
    p.add_argument('det_checkpoint', help='detector checkpoint: a file (.pth, or .onnx run by ONNX Runtime), '
                   'a work dir, a model-zoo name (e.g. rtmdet-tiny) or an http(s) URL')
    p.add_argument('pose_config', help='pose config file (or model-zoo name)')
    p.add_argument('pose_checkpoint', help='pose checkpoint: a file (.pth, or .onnx run by ONNX Runtime), a '
                   'training run\'s work dir (best.pth, else last.pth), a model-zoo name (e.g. '
                   'rle-mbv2-0.5x-192x192) or an http(s) URL')
    p.add_argument('--input', required=True, help="image, folder of images, video file, or 'webcam'")
    cli.add_out_argument(p, cli.output_dir, folder=True, aliases=['--output-root'], required=False,
                         help='folder for drawn images / videos and predictions (created when the first is '
                         'written)')
    p.add_argument('--save-predictions', action='store_true', help='write results_<name>.json')
    cli.add_device_argument(p, default='cuda:0' if torch.cuda.is_available() else 'cpu')
    cli.add_threads_argument(p)
    p.add_argument('--det-cat-id', type=cli.non_negative_int, default=0,
                   help="detector class of people (COCO: 0), one of the detector's classes")
    p.add_argument('--bbox-thr', type=cli.unit_float, default=0.3, help='detection score threshold (0 to 1)')
    p.add_argument('--nms-thr', type=cli.unit_float, default=0.3,
                   help='IoU threshold of the box NMS (0 to 1)')
    p.add_argument('--kpt-thr', type=cli.unit_float, default=0.3,
                   help='keypoints scoring below are not drawn (0 to 1)')
    p.add_argument('--draw-bbox', action='store_true', help='draw person boxes with their scores')
    p.add_argument('--show-kpt-idx', action='store_true', help='write keypoint indices')
    p.add_argument('--radius', type=cli.non_negative_int, default=3, help='keypoint radius (px)')
    p.add_argument('--thickness', type=cli.positive_int, default=1, help='line width (px)')
    p.add_argument('--alpha', type=cli.unit_float, default=0.8, help='opacity of the drawing (0 to 1)')
    p.add_argument('--show', action='store_true', help='show results in a window (ESC stops a video)')
    p.add_argument('--det-interval', type=cli.positive_int, default=1,
                   help='video: run the detector every N frames, follow people by their keypoints between')
    p.add_argument('--max-frames', type=cli.positive_int, default=None,
                   help='video: stop after this many frames')
    cli.add_cfg_options_argument(p)
    args = p.parse_args(argv)
    if not (args.out_dir or args.show):
        p.error('nothing to do: give --out-dir and/or --show')
    if args.save_predictions and not args.out_dir:
        p.error('--save-predictions needs --out-dir')
    return args


@dataclass
class Timings:
    """Seconds spent per stage, over all frames."""

    frames: int = 0
    detector_runs: int = 0
    stages: dict[str, float] = field(default_factory=lambda: {'detection': 0.0, 'pose': 0.0, 'drawing': 0.0})

    def add(self, stage: str, start: float) -> None:
        self.stages[stage] += time.perf_counter() - start

    def report(self, wall: float) -> str:
        per = ', '.join(f'{k} {1000 * v / max(self.frames, 1):.1f} ms' for k, v in self.stages.items())
        rest = wall - sum(self.stages.values())
        fps = self.frames / max(wall, 1e-9)
        return (f'{self.frames} frames in {wall:.2f} s: {fps:.2f} frames/s; per frame '
                f'{per}, decode/write/other {1000 * rest / max(self.frames, 1):.1f} ms; '
                f'detector ran on {self.detector_runs} frames')


def boxes_from_keypoints(instances: list[dict], kpt_thr: float, shape: tuple[int, ...],
                         margin: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes for the next frame from this frame's keypoints: the extent of the keypoints scoring
    above ``kpt_thr`` (at least two), widened by ``margin`` on each side, clipped to the image."""
    boxes, scores = [], []
    h, w = shape[:2]
    for inst in instances:
        pts = inst['keypoints'][inst['keypoint_scores'] > kpt_thr]
        if len(pts) < 2:
            continue
        (x1, y1), (x2, y2) = pts.min(axis=0), pts.max(axis=0)
        dx, dy = margin * (x2 - x1), margin * (y2 - y1)
        boxes.append([max(0, x1 - dx), max(0, y1 - dy), min(w, x2 + dx), min(h, y2 + dy)])
        scores.append(inst['bbox_score'])
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32)


def check_det_cat_id(cat_id: int, detector: Any) -> None:
    """Refuse a ``--det-cat-id`` that is not one of the detector's classes (its head's ``num_classes``
    in the detector config): it would find nobody, silently."""
    head = detector.cfg.model.get('bbox_head') or {}
    num_classes = head.get('num_classes')
    if num_classes is not None and not 0 <= cat_id < num_classes:
        raise DemoError(f'--det-cat-id {cat_id} is not a class of the detector: it has {num_classes} '
                        f'classes, 0 to {num_classes - 1} (COCO person: 0)')


class TopdownDemo:
    """Detector (optional) + pose model + drawing, applied to one frame at a time."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.detector = None
        if args.det_config.lower() != 'none':
            self.detector = init_detector(args.det_config, args.det_checkpoint, device=args.device)
            check_det_cat_id(args.det_cat_id, self.detector)
        pose_cfg = as_config(args.pose_config, 'pose config', args.cfg_options)
        self.pose = init_model(pose_cfg, args.pose_checkpoint, device=args.device)
        self.timings = Timings()

    def predict(self, img: np.ndarray, detect: bool = True, previous: list[dict] | None = None) -> list[dict]:
        """Pose instances of one BGR image; ``detect=False`` follows the people of ``previous``."""
        a, t = self.args, time.perf_counter()
        boxes, scores = None, None
        if self.detector is not None and not detect and previous:
            boxes, scores = boxes_from_keypoints(previous, a.kpt_thr, img.shape)
        if self.detector is not None and (boxes is None or len(boxes) == 0):  # detect, or nobody to follow
            boxes, scores = select_boxes(inference_detector(self.detector, img), a.det_cat_id, a.bbox_thr,
                                         a.nms_thr)
            self.timings.detector_runs += 1
        self.timings.add('detection', t)
        t = time.perf_counter()
        instances = [] if boxes is not None and len(boxes) == 0 else \
            inference_topdown(self.pose, img, boxes, bbox_scores=scores)
        self.timings.add('pose', t)
        self.timings.frames += 1
        return instances

    def draw(self, img: np.ndarray, instances: list[dict]) -> np.ndarray:
        a, t = self.args, time.perf_counter()
        out = draw_pose(img, instances, self.pose.dataset_meta, a.kpt_thr, a.radius, a.thickness, a.alpha,
                        a.draw_bbox, a.show_kpt_idx)
        self.timings.add('drawing', t)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def instances_to_json(instances: list[dict]) -> list[dict]:
    """MMPose's demo layout: keypoints [[x, y], ...], keypoint_scores, bbox [[x1, y1, x2, y2]], bbox_score."""
    return [{'keypoints': inst['keypoints'].tolist(), 'keypoint_scores': inst['keypoint_scores'].tolist(),
             'bbox': [inst['bbox'].tolist()], 'bbox_score': float(inst['bbox_score'])} for inst in instances]


def show(window: str, img: np.ndarray, args: argparse.Namespace, wait_ms: int) -> bool:
    """Display ``img``; False when the user pressed ESC or no display is available."""
    try:
        cv2.imshow(window, img)
        return (cv2.waitKey(wait_ms) & 0xFF) != 27
    except cv2.error as err:
        warnings.warn(f'--show is not available here ({str(err).strip().splitlines()[-1]}); not showing',
                      stacklevel=2)
        args.show = False
        return True


def run_images(demo: TopdownDemo, paths: list[Path], out_root: Path | None, in_folder: bool) -> list:
    """Process image files; in a folder an unreadable image is skipped with a warning."""
    records = []
    for path in tqdm(paths, desc='images', disable=len(paths) < 2):
        try:
            img = read_image(path)
        except ImageReadError as err:
            if not in_folder:
                raise DemoError(str(err)) from None
            warnings.warn(f'skipping {path}: {err}', stacklevel=2)
            continue
        instances = demo.predict(img)
        drawn = demo.draw(img, instances)
        if out_root is not None:
            write_image(out_root / path.name, drawn)
        if demo.args.show:
            show('pose', drawn, demo.args, 0)
        records.append({'img_path': path.name, 'instances': instances_to_json(instances)} if in_folder
                       else instances_to_json(instances))
    return records if in_folder else (records[0] if records else [])


def run_video(demo: TopdownDemo, source: str | int, out_file: Path | None) -> list:
    """Process a video file or a camera; returns per-frame records and prints the speed. The drawn video
    is written under a temporary name and renamed to ``out_file`` once every frame is in."""
    with contextlib.ExitStack() as stack:
        tmp_file = stack.enter_context(atomic_output(out_file)) if out_file is not None else None
        return _video_frames(demo, source, tmp_file)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Discard what native code writes to file descriptor 2 meanwhile (OpenCV logs its own warning and
    error lines when a camera cannot be opened, before this script's one ``error:`` line)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'wb') as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _video_frames(demo: TopdownDemo, source: str | int, out_file: Path | None) -> list:
    args = demo.args
    if isinstance(source, int):  # a camera
        with _native_stderr_silenced():
            cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise DemoError(f'cannot open camera {source} (--input webcam): none is connected, or another '
                            'program uses it')
    else:
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise DemoError(f'cannot open video {source!r} (missing file or unsupported codec)')
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if args.max_frames is not None:
        total = min(total or args.max_frames, args.max_frames)
    writer, records, previous = None, [], None
    start = time.perf_counter()
    try:
        with tqdm(total=total, desc='frames', unit='frame') as bar:
            while args.max_frames is None or len(records) < args.max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                index = len(records)
                previous = demo.predict(frame, detect=index % args.det_interval == 0, previous=previous)
                drawn = demo.draw(frame, previous)
                if out_file is not None:
                    if writer is None:
                        writer = cv2.VideoWriter(str(out_file), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                                                 (drawn.shape[1], drawn.shape[0]))
                        if not writer.isOpened():
                            raise OSError(errno.EIO, 'OpenCV cannot write an mp4 video here', str(out_file))
                    writer.write(drawn)
                records.append({'frame_id': index + 1, 'instances': instances_to_json(previous)})
                bar.update()
                if args.show and not show('pose', drawn, args, 1):
                    break
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    wall = time.perf_counter() - start
    if not records:
        raise DemoError(f'no frame could be read from {source!r}')
    print(demo.timings.report(wall))
    return records


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    src = Path(args.input)
    if args.input != 'webcam' and not src.exists():
        raise DemoError(f'input not found: {args.input}')
    out_root = Path(args.out_dir) if args.out_dir else None
    in_folder = src.resolve() if src.is_dir() else src.resolve().parent
    if out_root is not None and out_root.resolve() == in_folder:
        raise DemoError(f'--out-dir {out_root} is the input\'s folder: drawn results would overwrite the '
                        'inputs; choose another folder')
    print(f'{set_threads(args.threads)}, device {args.device}', flush=True)
    name = 'webcam' if args.input == 'webcam' else src.stem if src.is_file() else src.name
    demo = TopdownDemo(args)
    if args.input == 'webcam':
        out_file = out_root / 'webcam.mp4' if out_root else None
        records = run_video(demo, 0, out_file)
    elif src.is_dir():
        paths = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not paths:
            raise DemoError(f'folder {src} holds no images ({", ".join(sorted(IMAGE_EXTS))})')
        out_file = out_root
        records = run_images(demo, paths, out_root, in_folder=True)
    elif src.suffix.lower() in VIDEO_EXTS:
        out_file = out_root / f'{src.stem}.mp4' if out_root else None
        records = run_video(demo, str(src), out_file)
    else:
        out_file = out_root / src.name if out_root else None
        records = run_images(demo, [src], out_root, in_folder=False)
    if out_file is not None:
        print(f'wrote {out_file}' + (f" ({plural(len(records), 'drawn image')})" if src.is_dir() else ''))
    if args.save_predictions:
        pred_file = out_root / f'results_{name}.json'
        write_text_atomic(pred_file, json.dumps({'meta_info': _jsonable(demo.pose.dataset_meta),
                                                 'instance_info': records}, indent='\t'))
        print(f'wrote {pred_file} (predictions)')
    return 0


if __name__ == '__main__':
    cli.run_main(main)
