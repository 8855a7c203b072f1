"""``dfdetect predict``: verdicts on images and videos (files and folders) from the served model.

    dfdetect predict uploads/ clip.mp4 face.jpg             # table, local deployment (localhost:8500)
    dfdetect predict uploads/ --json --server serving:8500   # JSON, another server

One input that fails (missing, corrupt, unknown type) is reported and the others are still
processed; the exit status is 1 when any input failed, 2 when the server cannot be used at all.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from dfdetect.client.transport import LOAD_BALANCING
from dfdetect.cliformat import HelpFormatter
from dfdetect.contract import DEFAULT_MODEL_NAME, GRPC_PORT, REST_PORT
from dfdetect.faces.aggregate import DEFAULT_MIN_EVIDENCE, STRATEGIES
from dfdetect.faces.detection import BACKENDS, DEFAULT_BACKEND, DEFAULT_ENHANCE, ENHANCEMENTS
from dfdetect.faces.frames import DEFAULT_FRAMES, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

DEFAULT_MODEL_REPOSITORY = "model_repository"
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS


def add_predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="verdicts (fake / real / no_face) on images and videos from the served model",
        description="Sample frames, find and crop faces as training did, score the crops on the model server "
                    "(gRPC, or REST with --rest) and print a verdict per input: fake, real, or no_face when no "
                    "face is found. PATHs are files or folders (searched recursively), images and videos mixed. "
                    "The decision threshold is --threshold, else the calibrated threshold of the model card "
                    "(--model-card; against the local deployment the card of the answering version is found "
                    f"in {DEFAULT_MODEL_REPOSITORY}/), else 0.5. Exit status 1 when any input failed.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image or video files, or folders of them")
    p.add_argument("--server", metavar="HOST:PORT",
                   help=f"model server (default: the local deployment, localhost:{GRPC_PORT}, or "
                        f"localhost:{REST_PORT} with --rest)")
    p.add_argument("--rest", action="store_true", help="use the REST API instead of gRPC")
    p.add_argument("--load-balancing", choices=LOAD_BALANCING, default="pick_first",
                   help="gRPC: round_robin spreads requests over every address the server name resolves to "
                        "(e.g. dns:///NAME:8500 of a headless Service: every model-server pod)")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="served model name")
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--model-version", type=int, help="ask for this version (default: the server's choice)")
    pin.add_argument("--version-label", metavar="LABEL",
                     help="ask for the version the server's config labels so, e.g. stable or canary")
    p.add_argument("--json", action="store_true", help="print JSON (per input, frame and face) instead of a table")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames sampled per video, evenly spaced")
    p.add_argument("--per-second", action="store_true", help="sample one frame per second instead of --frames")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the model card's, else 0.5)")
    p.add_argument("--model-card", metavar="PATH",
                   help="model card JSON, its version folder, or the model's folder of versions")
    p.add_argument("--model-repository", default=DEFAULT_MODEL_REPOSITORY,
                   help="where the local deployment's model cards are looked up (without --server/--model-card)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="video score from frame scores (default: the model card's, else confident)")
    p.add_argument("--pixels", action="store_true",
                   help="send uint8 crops through serving_default instead of JPEG through serve_image_bytes")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds each server call may take, retries included")
    p.add_argument("--retries", type=int, default=3, help="retries when the server is unavailable or overloaded")
    p.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --root-certs)")
    p.add_argument("--root-certs", metavar="PEM", help="CA certificates to trust (implies --tls)")
    p.add_argument("--client-cert", metavar="PEM", help="client certificate chain, for mutual TLS")
    p.add_argument("--client-key", metavar="PEM", help="client private key, for mutual TLS")
    p.add_argument("--min-evidence", type=float, default=DEFAULT_MIN_EVIDENCE,
                   help="mark a verdict resting on fewer than this share of the sampled frames as low evidence")
    p.add_argument("--detector", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help="MTCNN on onnxruntime (onnx), or the mtcnn package on TensorFlow (mtcnn, for comparison)")
    p.add_argument("--enhance", choices=ENHANCEMENTS, default=DEFAULT_ENHANCE,
                   help="detect faces on a contrast-normalised copy of each frame (clahe) or on the frame (none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_predict_command)


def collect_inputs(paths) -> list[tuple[str, object]]:
    """The inputs named on the command line, in order: files as given, folders expanded
    recursively to their images and videos (hidden files skipped). Each entry is
    ``(path, None)``, or ``(path, ClientError)`` for a folder holding no media."""
    from dfdetect.client.errors import ClientError

    out: list[tuple[str, object]] = []
    seen: set[str] = set()

    def add(path: str, error=None):
        if path not in seen:
            seen.add(path)
            out.append((path, error))

    for raw in paths:
        path = str(raw)
        if not os.path.isdir(path):
            add(path)
            continue
        found = []
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(os.path.join(folder, f) for f in sorted(files)
                         if not f.startswith(".") and Path(f).suffix.lower() in MEDIA_EXTENSIONS)
        if not found:
            add(path, ClientError("NOT_FOUND", "no images or videos in this folder (looked for "
                                               f"{', '.join(sorted(MEDIA_EXTENSIONS))})", path))
        for f in found:
            add(f)
    return out


def _detector(args):
    """The face detector the flags ask for (None: the client's default)."""
    from dfdetect.client.errors import ClientError
    from dfdetect.faces.detection import FaceDetector

    if (args.detector, args.enhance) == (DEFAULT_BACKEND, DEFAULT_ENHANCE):
        return None
    try:
        return FaceDetector(backend=args.detector, enhance=args.enhance)
    except RuntimeError as e:
        raise ClientError("FAILED_PRECONDITION", str(e)) from None


def _client(args):
    from dfdetect.client.client import DeepfakeClient
    from dfdetect.client.errors import ClientError
    from dfdetect.client.retries import RetryPolicy
    from dfdetect.client.transport import connect

    try:
        transport = connect(
            args.server, args.model_name, transport="rest" if args.rest else "grpc", version=args.model_version,
            version_label=args.version_label, timeout=args.timeout, retry=RetryPolicy(retries=args.retries),
            tls=args.tls, root_certificates=args.root_certs, private_key=args.client_key,
            certificate_chain=args.client_cert, load_balancing=args.load_balancing)
        return DeepfakeClient(
            transport, model_card=args.model_card, threshold=args.threshold, strategy=args.strategy,
            frames=args.frames, per_second=args.per_second, input_format="pixels" if args.pixels else "jpeg",
            min_evidence=args.min_evidence, detector=_detector(args))
    except ClientError as e:
        if e.status == "UNAVAILABLE" and args.server is None:
            raise ClientError(e.status, f"{e.message}. Is the local deployment running? Start it with `make deploy`, "
                                        "or name a server with --server HOST:PORT") from None
        raise


def _local_model_card(args, client) -> None:
    """Against the local deployment, the card of the answering version, from the local repository."""
    if args.model_card is None and args.server is None:
        client.use_repository_card(args.model_repository, args.model_name)


def run_predict_command(args) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from dfdetect.client.errors import ClientError

    inputs = collect_inputs(args.paths)
    client = _client(args)
    outcomes = []  # MediaResult or ClientError, per input
    with client:
        _local_model_card(args, client)
        if client.threshold_source.startswith("default"):
            log.warning("no model card: deciding at threshold %.2f; pass --model-card or --threshold", client.threshold)
        show = not args.no_progress and sys.stderr.isatty() and len(inputs) > 1
        with logging_redirect_tqdm(), tqdm(total=len(inputs), unit="input", disable=not show, file=sys.stderr,
                                           dynamic_ncols=True) as bar:
            for path, error in inputs:
                bar.set_postfix_str(os.path.basename(path), refresh=False)
                outcome = error
                if outcome is None:
                    try:
                        outcome = client.analyze(path)
                    except ClientError as e:
                        outcome = e.for_source(path)
                    except Exception as e:  # a bug or an unexpected decoder failure: reported, the run goes on
                        log.exception("unexpected failure on %s", path)
                        outcome = ClientError("INTERNAL", f"unexpected {type(e).__name__}: {e}", path)
                if isinstance(outcome, ClientError):
                    log.error("%s", outcome)
                outcomes.append(outcome)
                bar.update(1)
    if args.json:
        print(json.dumps([render_json(o) for o in outcomes], indent=2))
    else:
        print(render_table(outcomes))
        print(summary(outcomes, client))
    return 1 if any(isinstance(o, ClientError) for o in outcomes) else 0


def render_json(outcome) -> dict:
    """One input as ``--json`` prints it: the result, or ``{"source", "error": {status, message}}``."""
    from dfdetect.client.errors import ClientError

    if isinstance(outcome, ClientError):
        return {"source": outcome.source, "error": outcome.to_dict()}
    return outcome.to_dict()


def render_table(outcomes) -> str:
    """One line per input: verdict (marked when it rests on few frames), score, faces, frames with a
    face / sampled, model, source; with several people, a line per person below it."""
    from dfdetect.client.errors import ClientError

    rows = [("VERDICT", "P(FAKE)", "FACES", "FRAMES", "MODEL", "SOURCE")]
    for o in outcomes:
        if isinstance(o, ClientError):
            rows.append(("error", "-", "-", "-", "-", f"{o.source}: {o.status}: {o.message}"))
            continue
        model = f"{o.model_name}:{o.model_version}" if o.model_version is not None else o.model_name
        score = "-" if o.fake_probability is None else f"{o.fake_probability:.4f}"
        verdict = f"{o.verdict} (low evidence)" if o.low_evidence else o.verdict
        rows.append((verdict, score, str(o.faces), f"{o.frames_with_face}/{o.frames_sampled}", model, o.source))
        if len(o.tracks) > 1:  # which person is fake
            for t in o.tracks:
                rows.append((f"  person {t.id + 1}: {t.verdict}", f"{t.fake_probability:.4f}", str(t.frames),
                             f"{t.frames}/{o.frames_sampled}", "", f"frames {t.first_frame}-{t.last_frame}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    right = {1, 2, 3}  # numbers align right
    lines = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join([*cells, r[-1]]))
    return "\n".join(lines)


def summary(outcomes, client) -> str:
    from dfdetect.client.errors import ClientError

    counts = {"fake": 0, "real": 0, "no_face": 0}
    failed = 0
    for o in outcomes:
        if isinstance(o, ClientError):
            failed += 1
        else:
            counts[o.verdict] += 1
    parts = [f"{n} {name}" for name, n in counts.items()] + [f"{failed} failed"]
    return (f"{len(outcomes)} input{'s' if len(outcomes) != 1 else ''}: {', '.join(parts)}; threshold "
            f"{client.threshold:.4f} ({client.threshold_source}), strategy {client.strategy}")
