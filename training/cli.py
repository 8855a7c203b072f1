"""Command-line entry points of the training stage: ``dfdetect prepare`` (and later train/evaluate)."""

from __future__ import annotations

import logging
from pathlib import Path

from dfdetect.cliformat import HelpFormatter
from dfdetect.contract import DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE
from dfdetect.faces.detection import (BACKENDS, DEFAULT_BACKEND, DEFAULT_CANDIDATE_CONFIDENCE, DEFAULT_ENHANCE,
                                     DEFAULT_MIN_CONFIDENCE, DEFAULT_MIN_FACE_SIZE, ENHANCEMENTS)
from dfdetect.faces.frames import DEFAULT_FRAMES

log = logging.getLogger(__name__)

DEFAULT_DEMO_DIR = "data/demo"
DEFAULT_PREPARED_DIR = "data/prepared"


def add_prepare_parser(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="videos/images -> sampled frames -> MTCNN face crops -> leak-free TFRecord splits",
        description="Turn a dataset of videos or images into face-crop TFRecords split by video and "
                    "source group (train/val/test). With no --data, a small demo dataset is generated "
                    f"first (in {DEFAULT_DEMO_DIR}) and prepared the same way.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--data", help="dataset folder (DFDC, Celeb-DF v2, or real/ + fake/); "
                                  "omitted: the generated demo dataset")
    p.add_argument("--layout", default="auto", choices=["auto", "dfdc", "celebdf", "folder"],
                   help="dataset layout")
    p.add_argument("--out", help=f"output folder (default {DEFAULT_PREPARED_DIR}/<dataset name>)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames sampled per video, evenly spaced")
    p.add_argument("--per-second", action="store_true", help="sample one frame per second instead of --frames")
    p.add_argument("--crop-size", type=int, default=DEFAULT_CROP_SIZE, help="side of the square face crops, pixels")
    p.add_argument("--margin", type=float, default=DEFAULT_CROP_MARGIN, help="margin around a face, fraction per side")
    p.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE, help="MTCNN confidence threshold")
    p.add_argument("--candidate-confidence", type=float, default=DEFAULT_CANDIDATE_CONFIDENCE,
                   help="faces down to this confidence are kept where a confident face of the same track "
                        "comes before and after them (a face dim for a frame)")
    p.add_argument("--detector", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help="MTCNN on onnxruntime (onnx), or the mtcnn package on TensorFlow (mtcnn, for comparison)")
    p.add_argument("--enhance", choices=ENHANCEMENTS, default=DEFAULT_ENHANCE,
                   help="detect on a contrast-normalised copy of each frame (clahe), or on the frame (none); "
                        "crops are cut from the original pixels either way")
    p.add_argument("--min-face-size", type=int, default=DEFAULT_MIN_FACE_SIZE, help="smallest face to detect, pixels")
    p.add_argument("--largest-only", action="store_true", help="keep only the largest face of each frame")
    p.add_argument("--split", default="8:1:1", help="train:val:test ratio, by video")
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.add_argument("--workers", type=int, default=0, help="worker processes (0 = one per core)")
    p.add_argument("--shard", type=int, default=0, help="process only this share of the videos ...")
    p.add_argument("--num-shards", type=int, default=1, help="... out of this many (Kubernetes Indexed Job)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_prepare_command)


def run_prepare_command(args) -> int:
    from dfdetect.training.prepare import PrepareConfig, run_prepare, summarize

    data = args.data
    if data is None:
        from dfdetect.training.demo import make_demo_dataset

        log.info("no --data given: using the generated demo dataset in %s", DEFAULT_DEMO_DIR)
        data = str(make_demo_dataset(DEFAULT_DEMO_DIR))
    out = args.out or str(Path(DEFAULT_PREPARED_DIR) / Path(data).resolve().name)
    config = PrepareConfig(
        data=data, out=out, layout=args.layout, frames=args.frames, per_second=args.per_second,
        crop_size=args.crop_size, margin=args.margin, min_confidence=args.min_confidence,
        min_face_size=args.min_face_size, largest_only=args.largest_only, detector=args.detector,
        enhance=args.enhance, candidate_confidence=args.candidate_confidence, ratios=args.split,
        seed=args.seed, workers=args.workers, shard=args.shard, num_shards=args.num_shards,
    )
    manifest = run_prepare(config, progress=not args.no_progress)
    print(summarize(manifest))
    print(f"manifest: {Path(out) / 'manifest.json'}")
    return 0


def prepare_demo_if_missing(prepared: str) -> None:
    """`make train` on a fresh clone: the default data is the demo; make it when absent."""
    demo_out = str(Path(DEFAULT_PREPARED_DIR) / Path(DEFAULT_DEMO_DIR).name)
    if Path(prepared) != Path(demo_out) or (Path(prepared) / "manifest.json").is_file():
        return
    from dfdetect.training.demo import make_demo_dataset
    from dfdetect.training.prepare import PrepareConfig, run_prepare, summarize

    log.info("demo data not prepared yet: generating and preparing it first")
    data = make_demo_dataset(DEFAULT_DEMO_DIR)
    print(summarize(run_prepare(PrepareConfig(data=str(data), out=demo_out))))


def add_train_parser(sub) -> None:
    from dfdetect.training.config import PRESETS

    p = sub.add_parser(
        "train",
        help="train the detector on prepared face crops, then calibrate and evaluate it",
        description="Train a detector from scratch (no downloaded weights) on the output of `dfdetect prepare`. "
                    "The config starts from a preset, then --config (YAML) and --set override fields. "
                    "Writes a run folder under runs/ (config, best checkpoint, history, curves, metrics).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--preset", default="smoke", choices=sorted(PRESETS),
                   help="named preset: smoke (demo data, CPU, minutes) or GPU presets for real data")
    p.add_argument("--config", help="YAML file overriding preset fields (sections model, data, train, eval)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one field, e.g. --set model.image_size=128 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="resume an interrupted run from its last epoch")
    p.add_argument("--run-name", metavar="NAME",
                   help="name the run folder (runs_dir/NAME) instead of <preset>-<time>; if that run exists, "
                        "resume it with its own config (a restarted Kubernetes Job passes its name)")
    p.add_argument("--no-evaluate", action="store_true", help="skip calibration and evaluation after training")
    p.set_defaults(handler=run_train_command)


def run_train_command(args) -> int:
    from dfdetect.errors import BadInputError
    from dfdetect.runs import has_config, named_run_dir
    from dfdetect.training.config import load_config, load_run_config
    from dfdetect.training.distributed import cluster_from_env
    from dfdetect.training.train import train

    if args.resume and args.run_name:
        raise BadInputError("--resume and --run-name both name the run folder: give one")
    config = load_config(args.preset, args.config, args.set)
    run_dir = args.resume
    if args.run_name:
        run_dir = named_run_dir(config.runs_dir, args.run_name)
        if has_config(run_dir):
            args.resume = run_dir
    if args.resume:
        given = config
        given.data.prepared = str(Path(given.data.prepared).resolve())  # as the run saved it
        config = load_run_config(args.resume)  # a run resumes as it started
        config.validate()
        if args.run_name:
            differ = _differences(given.to_dict(), config.to_dict())
            if differ:
                log.warning("run %s exists: resuming it with its own config, not the options given "
                            "(they differ in %s)", args.run_name, ", ".join(differ))
    prepare_demo_if_missing(config.data.prepared)
    Path(config.runs_dir).mkdir(parents=True, exist_ok=True)
    run_dir = train(config, run_dir=run_dir)
    print(f"run: {run_dir}")
    if not cluster_from_env().is_chief:
        return 0  # the chief evaluates
    if not args.no_evaluate:
        _evaluate_and_print(run_dir)
    return 0


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The dotted names of the fields where two config dicts differ."""
    names = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            names += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            names.append(prefix + key)
    return names


def add_evaluate_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="calibrate a trained run on validation and report frame- and video-level metrics",
        description="Score the validation and test splits with a run's best checkpoint; fit the temperature and "
                    "the decision threshold on validation; write calibration.json, metrics.json and ROC PNGs.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--run", help="run folder (default: the latest run, runs/LATEST)")
    p.add_argument("--runs-dir", default="runs", help="where runs are looked up")
    p.set_defaults(handler=run_evaluate_command)


def _evaluate_and_print(run_dir) -> None:
    from dfdetect.training.evaluate import format_metrics, evaluate_run

    results = evaluate_run(run_dir)
    print(format_metrics(results))
    print(f"metrics: {Path(run_dir) / 'metrics.json'}")


def run_evaluate_command(args) -> int:
    from dfdetect.runs import latest_run

    _evaluate_and_print(args.run or latest_run(args.runs_dir))
    return 0
