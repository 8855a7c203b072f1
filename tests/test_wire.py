"""The client's wire API (dfdetect.wire) against TensorFlow's and TensorFlow Serving's own protos,
in one process: the same bytes for the same request, tensors byte for byte as TensorFlow builds them."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from dfdetect.wire import apis_pb2, services, tensor_pb2
from dfdetect.wire.requests import metadata_request, predict_request, status_request
from dfdetect.wire.tensors import make_ndarray, make_tensor_proto

ROOT = Path(__file__).resolve().parents[1]
NUMERIC = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
           np.uint32, np.uint64, np.bool_, np.complex64, np.complex128]
SHAPES = [(), (1,), (3,), (2, 0), (2, 3, 4)]


def test_generated_modules_match_their_proto_files(tmp_path):
    # In a process of its own: grpc_tools' protoc and TensorFlow's libraries do not share a process.
    protos = sorted((ROOT / "dfdetect" / "wire").glob("*.proto"))
    script = ("import sys, grpc_tools, pathlib; from grpc_tools import protoc; "
              "include = pathlib.Path(grpc_tools.__file__).parent / '_proto'; "
              "sys.exit(protoc.main(['protoc', f'--proto_path={include}', *sys.argv[1:]]))")
    result = subprocess.run([sys.executable, "-c", script, f"--proto_path={ROOT}", f"--python_out={tmp_path}",
                             *[str(p.relative_to(ROOT)) for p in protos]], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for proto in protos:
        generated = ROOT / "dfdetect" / "wire" / f"{proto.stem}_pb2.py"
        assert generated.is_file(), f"{generated} is missing: reinstall (make install) to compile the protos"
        fresh = tmp_path / "dfdetect" / "wire" / generated.name
        assert generated.read_bytes() == fresh.read_bytes(), \
            f"{generated.name} is older than {proto.name}: reinstall (make install) to compile it again"


def sample(dtype, shape, rng):
    values = rng.normal(size=shape) * 50
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.normal(size=shape)
    return np.asarray(values).astype(dtype)


@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
def test_numeric_tensors_are_byte_for_byte_tensorflows(dtype):
    rng = np.random.default_rng(1)
    for shape in SHAPES:
        array = sample(dtype, shape, rng)
        ours = make_tensor_proto(array).SerializeToString()
        theirs = tf.make_tensor_proto(array).SerializeToString()
        assert ours == theirs, f"{np.dtype(dtype).name} {shape}"
        # Read back, from either: the same array.
        for data in (ours, theirs):
            back = make_ndarray(tensor_pb2.TensorProto.FromString(data))
            assert back.dtype == array.dtype and back.shape == array.shape
            np.testing.assert_array_equal(back, array)


def test_string_tensors_are_byte_for_byte_tensorflows():
    images = [b"\xff\xd8jpeg", b"", b"\x00\x01\x02"]
    object_array = np.empty(3, dtype=object)
    object_array[:] = images
    for value in (object_array, images, np.array(images), b"one", ["text", "more"]):
        ours = make_tensor_proto(value).SerializeToString()
        assert ours == tf.make_tensor_proto(value).SerializeToString(), value
    back = make_ndarray(tensor_pb2.TensorProto.FromString(tf.make_tensor_proto(object_array).SerializeToString()))
    assert back.dtype == object and list(back) == images


def test_reads_typed_fields_and_repeats_the_last_value_as_tensorflow_does():
    # TensorFlow Serving answers in the typed fields, and one value stands for the whole tensor.
    cases = [
        tf.make_tensor_proto(np.float32(0.25), shape=[2, 3]),
        tf.make_tensor_proto([1, 2], dtype=tf.int64, shape=[4]),
        tf.make_tensor_proto([True], dtype=tf.bool, shape=[3]),
        tf.make_tensor_proto(np.float16(1.5), shape=[2]),
        tf.make_tensor_proto(np.zeros(0, np.float32), shape=[2, 2]),
    ]
    for proto in cases:
        ours = make_ndarray(tensor_pb2.TensorProto.FromString(proto.SerializeToString()))
        np.testing.assert_array_equal(ours, tf.make_ndarray(proto))
        assert ours.dtype == tf.make_ndarray(proto).dtype


def test_unreadable_tensors_name_what_is_wrong():
    proto = tensor_pb2.TensorProto(dtype=tensor_pb2.DT_RESOURCE)
    with pytest.raises(ValueError, match="DT_RESOURCE cannot be read"):
        make_ndarray(proto)
    proto = make_tensor_proto(np.ones((2, 2), np.float32))
    proto.tensor_content = proto.tensor_content[:-1]
    with pytest.raises(ValueError, match="tensor_content has 15 bytes; a DT_FLOAT tensor of shape \\[2, 2\\] takes 16"):
        make_ndarray(proto)
    proto = make_tensor_proto(np.float32(1))
    proto.float_val.extend([2, 3])
    with pytest.raises(ValueError, match="3 values for a tensor of shape \\[\\] \\(1 elements\\)"):
        make_ndarray(proto)
    proto.tensor_shape.unknown_rank = True
    with pytest.raises(ValueError, match="unknown rank"):
        make_ndarray(proto)
    with pytest.raises(TypeError, match="dtype datetime64"):
        make_tensor_proto(np.array(["2026-01-01"], dtype="datetime64[D]"))


def test_requests_are_the_bytes_tensorflow_serving_stubs_send():
    crops = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    ours = predict_request("deepfake", "serving_default", {"images": crops}, output_filter=["fake_probability"],
                           version=7)
    theirs = predict_pb2.PredictRequest()
    theirs.model_spec.name = "deepfake"
    theirs.model_spec.signature_name = "serving_default"
    theirs.model_spec.version.value = 7
    theirs.inputs["images"].CopyFrom(tf.make_tensor_proto(crops))
    theirs.output_filter.append("fake_probability")
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)

    labelled = predict_request("deepfake", "serve_image_bytes", {"image_bytes": [b"a", b"bc"]}, version_label="stable")
    theirs = predict_pb2.PredictRequest()
    theirs.model_spec.name, theirs.model_spec.signature_name = "deepfake", "serve_image_bytes"
    theirs.model_spec.version_label = "stable"
    theirs.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([b"a", b"bc"]))
    assert labelled.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)

    theirs = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    theirs.model_spec.name = "deepfake"
    assert metadata_request("deepfake").SerializeToString() == theirs.SerializeToString()
    theirs = get_model_status_pb2.GetModelStatusRequest()
    theirs.model_spec.name = "deepfake"
    theirs.model_spec.version.value = 3
    assert status_request("deepfake", version=3).SerializeToString() == theirs.SerializeToString()


def test_answers_of_tensorflow_serving_read_with_our_messages():
    response = predict_pb2.PredictResponse()
    response.model_spec.name = "deepfake"
    response.model_spec.version.value = 12
    response.outputs["fake_probability"].CopyFrom(tf.make_tensor_proto(np.array([0.25, 0.75], np.float32)))
    ours = apis_pb2.PredictResponse.FromString(response.SerializeToString())
    assert ours.model_spec.version.value == 12
    np.testing.assert_array_equal(make_ndarray(ours.outputs["fake_probability"]), [0.25, 0.75])

    signatures = get_model_metadata_pb2.SignatureDefMap()
    info = signatures.signature_def["serving_default"].inputs["images"]
    info.name, info.dtype = "serving_default_images:0", tf.uint8.as_datatype_enum
    for size in (-1, 224, 224, 3):
        info.tensor_shape.dim.add(size=size)
    signatures.signature_def["serving_default"].method_name = "tensorflow/serving/predict"
    metadata = get_model_metadata_pb2.GetModelMetadataResponse()
    metadata.model_spec.name = "deepfake"
    metadata.metadata["signature_def"].Pack(signatures)
    ours = services.signature_def_map(apis_pb2.GetModelMetadataResponse.FromString(metadata.SerializeToString()))
    read = ours.signature_def["serving_default"].inputs["images"]
    assert [d.size for d in read.tensor_shape.dim] == [-1, 224, 224, 3]
    assert read.dtype == tensor_pb2.DT_UINT8 and read.name == "serving_default_images:0"
    assert services.signature_def_map(apis_pb2.GetModelMetadataResponse()) is None

    status = get_model_status_pb2.GetModelStatusResponse()
    version = status.model_version_status.add(version=4, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    version.status.error_message = "fine"
    ours = apis_pb2.GetModelStatusResponse.FromString(status.SerializeToString())
    assert ours.model_version_status[0].state == apis_pb2.ModelVersionStatus.AVAILABLE
    assert ours.model_version_status[0].status.error_message == "fine"


def test_the_wire_package_imports_no_tensorflow():
    code = ("import sys; import dfdetect.wire.requests, dfdetect.wire.services, dfdetect.client; "
            "bad = sorted(m for m in ('tensorflow', 'keras', 'tensorflow_serving') if m in sys.modules); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"imported: {result.stdout} {result.stderr[-2000:]}"
