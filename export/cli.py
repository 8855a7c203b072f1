"""``dfdetect export``: publish a trained run as a model version; ``dfdetect export label``."""

from __future__ import annotations

import logging

from dfdetect.cliformat import HelpFormatter
from dfdetect.contract import DEFAULT_MODEL_NAME
from dfdetect.errors import BadInputError
from dfdetect.modelsconfig import DEFAULT_MODELS_CONFIG  # a path: no TensorFlow Serving protos imported

log = logging.getLogger(__name__)


def add_export_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="publish a trained run as the next SavedModel version (+ verified ONNX twin)",
        description="Export the best checkpoint of a run (default: the latest) with its calibration as a numbered "
                    "SavedModel version under MODEL_REPOSITORY/MODEL_NAME/, with warm-up requests and a model card, "
                    "after checking the reloaded model against the trained one; convert it to ONNX and publish that "
                    "under MODEL_NAME-onnx/ only if onnxruntime matches TensorFlow.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--run", help="run folder (default: the latest run)")
    p.add_argument("--runs-dir", default="runs", help="where the latest run is looked up")
    p.add_argument("--model-repository", default="model_repository", help="repository root (local path or gs://...)")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="model folder name in the repository")
    p.add_argument("--version", type=int, help="version number (default: the largest existing + 1)")
    p.add_argument("--keep", type=int, default=5, help="keep the newest K versions (labelled ones always stay)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX twin")
    p.add_argument("--models-config", default=str(DEFAULT_MODELS_CONFIG),
                   help="TensorFlow Serving model config whose version labels protect versions from retention")
    p.set_defaults(handler=run_export_command)

    actions = p.add_subparsers(title="actions", metavar="ACTION", required=False)
    label = actions.add_parser(
        "label", help="point version labels (stable, canary, ...) at existing versions",
        description="Write TensorFlow Serving version_labels for MODEL_NAME into the model config file, pinning "
                    "the labelled versions; a label for a version missing from the repository is refused.",
        formatter_class=HelpFormatter,
    )
    label.add_argument("assignments", nargs="+", metavar="LABEL=VERSION", help="e.g. stable=3 canary=4")
    label.add_argument("--model-repository", default="model_repository", help="repository root")
    label.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="model name")
    label.add_argument("--models-config", default=str(DEFAULT_MODELS_CONFIG), help="model config file to update")
    label.set_defaults(handler=run_label_command)


def run_export_command(args) -> int:
    from dfdetect.export.exporter import export_run
    from dfdetect.runs import latest_run

    run = args.run or latest_run(args.runs_dir)
    result = export_run(run, args.model_repository, args.model_name, args.version, args.keep,
                        onnx=not args.no_onnx, models_config=args.models_config)
    card = result.card
    print(f"published {args.model_name} version {result.version}: {result.path}")
    print(f"  crop size {card['crop_size']}, threshold {card['threshold']:.4f}, temperature {card['temperature']:.3f}")
    print(f"  validation: max abs diff {card['validation']['max_abs_diff_in_memory']:.2e} vs the trained model, "
          f"{card['validation']['max_abs_diff_signatures']:.2e} between signatures")
    if result.onnx_path:
        print(f"  ONNX twin: {result.onnx_path} (max abs diff {card['onnx']['max_abs_diff']:.2e})")
    elif not args.no_onnx:
        print(f"  ONNX twin NOT published: {card['onnx'].get('reason')}")
    if result.removed:
        print(f"  retention removed versions {result.removed}")
    return 0


def parse_assignments(items: list[str]) -> dict[str, int]:
    labels = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name or not value.isdigit() or int(value) < 1:
            raise BadInputError(f"labels are LABEL=VERSION with a positive version, e.g. stable=3; got {item!r}")
        labels[name] = int(value)
    return labels


def run_label_command(args) -> int:
    from dfdetect.export.repository import ModelRepository
    from dfdetect.modelsconfig import set_version_labels

    labels = parse_assignments(args.assignments)
    versions = ModelRepository(args.model_repository, args.model_name).versions()
    result = set_version_labels(args.models_config, args.model_name, labels, versions)
    print(f"{args.models_config}: {args.model_name} labels " + ", ".join(f"{k}={v}" for k, v in sorted(result.items())))
    return 0
