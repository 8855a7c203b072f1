"""The face pipeline every stage shares: frames -> detection -> crops -> aggregation.

- ``frames``: sampling and decoding videos and images, and the resize rule.
- ``detection``: MTCNN with the product's settings, and the faces of some frames.
- ``crops``: the square face crop with a margin, and the JPEG encoding of crops.
- ``aggregate``: from face scores to frame and video scores.

Data preparation, evaluation, the client, the web page and the load tests all use these
modules, so a face is found, cut and scored the same way everywhere.
"""
