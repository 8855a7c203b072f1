# Two images from this file, both from the package's own install (pyproject.toml pins):
#
#   docker build --target web -t REGISTRY/dfdetect-web:0.1.0 .         # the thin client + the web page
#   docker build -t REGISTRY/dfdetect:0.1.0 .                          # every stage: batch jobs, locust
#   docker build --build-arg GPU=1 -t REGISTRY/dfdetect:0.1.0-gpu .    # + CUDA libraries: training
#
# dfdetect-web (`dfdetect web`, k8s/base/web) is the base install, which is the client without
# TensorFlow (face detection on onnxruntime, TensorFlow Serving's wire API in dfdetect/wire), plus
# the web extra. dfdetect runs the Kubernetes batch jobs (k8s/jobs: prepare, train) and
# distributed locust workers (`locust -f /opt/dfdetect/loadtests --worker ...`). Tag both with
# the package version; the manifests pin that tag. Serving uses neither: production runs the
# official TensorFlow Serving image (k8s/overlays).

FROM python:3.11-slim-bookworm AS source
WORKDIR /src
# The package's metadata, its build step (setup.py compiles dfdetect/wire/*.proto) and every
# folder [tool.setuptools.package-dir] maps onto dfdetect.
COPY pyproject.toml setup.py README.md ./
COPY dfdetect/ dfdetect/
COPY training/ training/
COPY export/ export/
COPY serving/ serving/
COPY client/ client/
COPY web/ web/
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/dfdetect


FROM source AS build-web
# A regular (non-editable) install: the package lands in the virtual environment, the sources
# stay behind in this stage.
RUN /opt/dfdetect/bin/pip install ".[web]" \
 && /opt/dfdetect/bin/python -c "import sys, dfdetect.web.app; assert 'tensorflow' not in sys.modules" \
 && /opt/dfdetect/bin/dfdetect --version


FROM source AS build-full
# GPU=1 adds the NVIDIA CUDA and cuDNN wheels of TensorFlow's and-cuda extra, which TensorFlow
# finds at run time (the node provides only the driver); pip resolves tensorflow[and-cuda]
# against the same tensorflow pin.
ARG GPU=0
RUN if [ "$GPU" = 1 ]; then cuda="tensorflow[and-cuda]"; else cuda=""; fi \
 && /opt/dfdetect/bin/pip install ".[all]" $cuda \
 && /opt/dfdetect/bin/dfdetect --version


FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/opt/dfdetect/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# An unprivileged user, by number as well so that Kubernetes can check runAsNonRoot.
RUN groupadd --system --gid 10001 dfdetect \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/dfdetect \
      --shell /usr/sbin/nologin dfdetect
WORKDIR /home/dfdetect
ENTRYPOINT ["dfdetect"]
CMD ["--help"]


FROM runtime AS web
COPY --from=build-web /opt/dfdetect /opt/dfdetect
USER 10001:10001


FROM runtime AS full
COPY --from=build-full /opt/dfdetect /opt/dfdetect
# The locust users are not part of the package: workers load them from here
# (`-f /opt/dfdetect/loadtests`, not `-f -`: they import the `_` helpers beside them).
COPY loadtests/ /opt/dfdetect/loadtests/
USER 10001:10001
