"""The web page for people: upload an image or a video, see the verdict, the faces and the timeline.

A thin front over :mod:`dfdetect.client` and the model server's gRPC endpoint (never a second
inference path): ``dfdetect web`` serves the page at ``/`` and the JSON API it uses,
``POST /api/analyze``, documented by the OpenAPI schema at ``/openapi.json``.
"""
