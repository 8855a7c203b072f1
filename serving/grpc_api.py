"""The gRPC API: TensorFlow Serving's PredictionService and ModelService, plus grpc.health.v1.

Thin: requests become core calls, ServingErrors become status codes, results become protos.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (classification_pb2, inference_pb2, model_management_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc, regression_pb2)

from dfdetect.serving import inference, protos
from dfdetect.serving.core import ServingCore
from dfdetect.serving.errors import ServingError, invalid, unimplemented

log = logging.getLogger(__name__)

# A batch of 64 uint8 224 x 224 crops is 9.6 MB; TensorFlow Serving itself accepts up to 2 GB.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def _abort(context, error: ServingError):
    context.abort(error.code, error.message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TensorFlow Serving's PredictionService over the core (``tensor_content``: outputs as raw bytes)."""

    def __init__(self, core: ServingCore, tensor_content: bool = False):
        self.core = core
        self.tensor_content = tensor_content

    def Predict(self, request, context):
        """PredictionService.Predict: run a signature on the request's tensors."""
        try:
            spec = protos.spec_from_proto(request.model_spec, request.HasField("model_spec"))
            result = self.core.predict(spec, dict(request.inputs), list(request.output_filter), api="grpc")
        except ServingError as e:
            _abort(context, e)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = result.name
        response.model_spec.version.value = result.version
        response.model_spec.signature_name = result.signature
        for name, value in result.outputs.items():
            response.outputs[name].CopyFrom(protos.array_to_tensor(value, self.tensor_content))
        return response

    def GetModelMetadata(self, request, context):
        """PredictionService.GetModelMetadata: the version's SignatureDefs (``signature_def`` only)."""
        try:
            fields = list(request.metadata_field)
            if not fields:
                raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
            for field in fields:
                if field != "signature_def":
                    raise invalid(f"Metadata field {field} is not supported")
            spec = protos.spec_from_proto(request.model_spec, request.HasField("model_spec"))
            name, version, signature_defs = self.core.metadata(spec)
        except ServingError as e:
            _abort(context, e)
        return protos.metadata_response(name, version, signature_defs)

    @staticmethod
    def _examples(request_input) -> list[bytes]:
        kind = request_input.WhichOneof("kind")
        if kind == "example_list":
            return inference.serialized_examples(list(request_input.example_list.examples))
        if kind == "example_list_with_context":
            with_context = request_input.example_list_with_context
            return inference.serialized_examples(list(with_context.examples), with_context.context)
        raise invalid("Input is empty")

    @staticmethod
    def _fill(model_spec, target, result) -> None:
        """The model spec that answered, and the result into its ClassificationResult or RegressionResult."""
        model_spec.name, model_spec.signature_name, model_spec.version.value = (result.name, result.signature,
                                                                                 result.version)
        if isinstance(result, inference.Classification):
            for row in result.rows():
                entry = target.classifications.add()
                for label, score in row:
                    entry.classes.add(label=label, score=0.0 if score is None else score)
        else:
            target.regressions.extend(regression_pb2.Regression(value=float(v)) for v in result.values)

    def _infer(self, request, context, run, response):
        try:
            spec = protos.spec_from_proto(request.model_spec, request.HasField("model_spec"))
            result = run(self.core, spec, self._examples(request.input))
        except ServingError as e:
            _abort(context, e)
        self._fill(response.model_spec, response.result, result)
        return response

    def Classify(self, request, context):
        """PredictionService.Classify: tf.Examples through a classification signature."""
        return self._infer(request, context, inference.classify, classification_pb2.ClassificationResponse())

    def Regress(self, request, context):
        """PredictionService.Regress: tf.Examples through a regression signature."""
        return self._infer(request, context, inference.regress, regression_pb2.RegressionResponse())

    def MultiInference(self, request, context):
        """PredictionService.MultiInference: Classify and Regress tasks of one model on the same examples."""
        try:
            if not request.tasks:
                raise invalid("Inference request must have at least one task")
            names = {task.model_spec.name for task in request.tasks}
            if len(names) > 1:
                raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name")
            signatures = [task.model_spec.signature_name for task in request.tasks]
            if len(set(signatures)) != len(signatures):
                raise invalid("Duplicate evaluation of signature: " +
                              next(s for s in signatures if signatures.count(s) > 1))
            examples = self._examples(request.input)
            response = inference_pb2.MultiInferenceResponse()
            for task in request.tasks:
                spec = protos.spec_from_proto(task.model_spec, True)
                entry = response.results.add()
                if task.method_name == inference.CLASSIFY:
                    result, target = inference.classify(self.core, spec, examples), entry.classification_result
                elif task.method_name == inference.REGRESS:
                    result, target = inference.regress(self.core, spec, examples), entry.regression_result
                else:
                    raise unimplemented(f"Unsupported signature method_name: {task.method_name}")
                self._fill(entry.model_spec, target, result)
        except ServingError as e:
            _abort(context, e)
        return response



class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """TensorFlow Serving's ModelService over the core: version status and config reload."""

    def __init__(self, core: ServingCore):
        self.core = core

    def GetModelStatus(self, request, context):
        """ModelService.GetModelStatus: the states of the model's versions."""
        try:
            spec = protos.spec_from_proto(request.model_spec, request.HasField("model_spec"))
            states = self.core.status(spec.name, spec.version, spec.label)
        except ServingError as e:
            _abort(context, e)
        return protos.status_response(states)

    def HandleReloadConfigRequest(self, request, context):
        """ModelService.HandleReloadConfigRequest: serve a new ModelServerConfig; a failure is
        answered in the response's status and as the call's status."""
        response = model_management_pb2.ReloadConfigResponse()
        try:
            self.core.reload_config(request.config)
        except ServingError as e:  # answered in the response's status and as the call's status
            log.error("ReloadConfig failed: %s", e.message)
            response.status.error_code, response.status.error_message = e.code.value[0], e.message
            context.set_code(e.code)
            context.set_details(e.message)
        return response


class GrpcServer:
    """The gRPC server on its port, with the health service."""

    def __init__(self, core: ServingCore, port: int, host: str = "0.0.0.0", workers: int = 32, *,
                 socket_path: str = "", arguments: list[tuple[str, object]] = (), tensor_content: bool = False):
        # --grpc_channel_arguments come last: where they name the same key, they win.
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.so_reuseport", 0), *arguments]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
                                  options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(core, tensor_content), self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind the gRPC port {host}:{port}")
        if socket_path:
            if self.server.add_insecure_port(f"unix:{socket_path}") == 0:
                raise OSError(f"cannot listen on the gRPC socket {socket_path}")

    def start(self) -> None:
        self.server.start()

    def set_serving(self, serving: bool) -> None:
        """Set the health status (SERVING or NOT_SERVING) of the server and both TensorFlow Serving services."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
            self.health.set(service, status)

    def stop(self, grace: float) -> None:
        """Refuse new calls; let calls in flight finish within ``grace`` seconds."""
        self.set_serving(False)
        self.server.stop(grace).wait()

