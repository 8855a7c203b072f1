"""What the model server says about the model, checked against the dfdetect contract: the crop
size S, the signatures and the version that answered; and the scores it answers with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfdetect.client.errors import ClientError
from dfdetect.contract import INPUT_BYTES, INPUT_PIXELS, OUTPUT_SCORE, SIGNATURE_BYTES, SIGNATURE_PIXELS


@dataclass(frozen=True)
class ModelMetadata:
    """What GetModelMetadata says of a dfdetect model."""

    name: str
    version: int  # the version that answered
    crop_size: int  # S: the side of the uint8 crops ``serving_default`` takes
    signatures: tuple[str, ...]  # all signature names, sorted
    accepts_bytes: bool  # serve_image_bytes is there and takes encoded crops


def _dims(tensor: dict) -> list[int]:
    shape = tensor.get("tensor_shape", {})
    if shape.get("unknown_rank"):
        return []
    return [int(d.get("size", 0)) for d in shape.get("dim", [])]


def parse_metadata(name: str, version: int, signature_defs: dict) -> ModelMetadata:
    """Check a model's signatures against the dfdetect contract and read S from them.

    ``signature_defs`` is the SignatureDefMap as JSON with proto field names, as the REST API
    returns it and as ``json_format.MessageToDict`` renders the gRPC answer.
    """
    where = f"model {name} version {version}"
    expected = (f"a dfdetect model has {SIGNATURE_PIXELS} (input {INPUT_PIXELS}: uint8 [-1, S, S, 3], output "
                f"{OUTPUT_SCORE}) and {SIGNATURE_BYTES} (input {INPUT_BYTES}: string [-1])")
    names = tuple(sorted(signature_defs))
    pixels = signature_defs.get(SIGNATURE_PIXELS)
    if pixels is None:
        raise ClientError("FAILED_PRECONDITION", f"{where} has no {SIGNATURE_PIXELS} signature "
                                                 f"(signatures: {', '.join(names) or 'none'}); {expected}")
    tensor = pixels.get("inputs", {}).get(INPUT_PIXELS)
    if tensor is None:
        raise ClientError("FAILED_PRECONDITION", f"{where}: {SIGNATURE_PIXELS} has no input {INPUT_PIXELS} "
                                                 f"(inputs: {', '.join(sorted(pixels.get('inputs', {}))) or 'none'}); "
                                                 f"{expected}")
    dims = _dims(tensor)
    dtype = tensor.get("dtype", "DT_INVALID")
    if dtype != "DT_UINT8" or len(dims) != 4 or dims[3] != 3 or dims[1] != dims[2] or dims[1] <= 0:
        raise ClientError("FAILED_PRECONDITION", f"{where}: input {INPUT_PIXELS} of {SIGNATURE_PIXELS} is {dtype} "
                                                 f"{dims or 'of unknown shape'}; {expected}")
    if OUTPUT_SCORE not in pixels.get("outputs", {}):
        raise ClientError("FAILED_PRECONDITION", f"{where}: {SIGNATURE_PIXELS} has no output {OUTPUT_SCORE}; "
                                                 f"{expected}")
    raw = signature_defs.get(SIGNATURE_BYTES, {})
    accepts_bytes = (raw.get("inputs", {}).get(INPUT_BYTES, {}).get("dtype") == "DT_STRING"
                     and OUTPUT_SCORE in raw.get("outputs", {}))
    return ModelMetadata(name=name, version=int(version), crop_size=dims[1], signatures=names,
                         accepts_bytes=accepts_bytes)


def metadata_from_grpc(response, model_name: str, what: str) -> ModelMetadata:
    """A GetModelMetadata answer (``dfdetect.wire`` messages) read as the client's ModelMetadata."""
    from google.protobuf import json_format

    from dfdetect.wire.services import signature_def_map

    signatures = signature_def_map(response)
    if signatures is None:
        raise ClientError("FAILED_PRECONDITION", f"{what}: the answer carries no signature_def")
    as_json = json_format.MessageToDict(signatures, preserving_proto_field_name=True)
    return parse_metadata(response.model_spec.name or model_name, response.model_spec.version.value,
                          as_json.get("signature_def", {}))


def checked_scores(values, count: int, where: str) -> np.ndarray:
    """The answered scores as float32 [count]; INTERNAL when the server answered another count."""
    scores = np.asarray(values, dtype=np.float32).reshape(-1)
    if scores.size != count:
        raise ClientError("INTERNAL", f"{where}: the server answered {scores.size} scores for {count} crops")
    return scores
