"""TensorFlow Serving's wire API without TensorFlow: what a thin client needs to call a model server.

- ``tensor_pb2``, ``apis_pb2``: the messages (PredictRequest, TensorProto, SignatureDef, ...),
  generated at build time from the ``.proto`` files beside them (setup.py). Same field numbers
  and types as TensorFlow Serving's, in a package of our own (``dfdetect.wire``), so the bytes are
  the same and TensorFlow's own messages can live in the same process.
- :mod:`dfdetect.wire.tensors`: numpy arrays <-> TensorProto.
- :mod:`dfdetect.wire.services`: the gRPC methods by their wire paths, and the metadata's
  SignatureDefMap.
"""
