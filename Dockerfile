# The dfdetect image: the `dfdetect` command with its stages installed, for the Kubernetes batch
# jobs (k8s/jobs: prepare, train), the web front (`dfdetect web`, k8s/base/web) and distributed
# locust workers (`locust -f /opt/dfdetect/loadtests --worker ...`). Tag it with the package
# version (pyproject.toml); the manifests pin that tag.
#
#   docker build -t REGISTRY/dfdetect:0.1.0 .                          # CPU: data preparation, web front
#   docker build --build-arg GPU=1 -t REGISTRY/dfdetect:0.1.0-gpu .    # + CUDA libraries: training
#
# Serving does not use this image: production runs the official TensorFlow Serving image
# (k8s/overlays).

FROM python:3.11-slim-bookworm AS build

# GPU=1 adds the NVIDIA CUDA and cuDNN wheels of TensorFlow's and-cuda extra, which TensorFlow
# finds at run time (the node provides only the driver).
ARG GPU=0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/dfdetect
WORKDIR /src
# The package's metadata and every folder [tool.setuptools.package-dir] maps onto dfdetect.
COPY pyproject.toml README.md ./
COPY dfdetect/ dfdetect/
COPY training/ training/
COPY export/ export/
COPY serving/ serving/
COPY client/ client/
COPY web/ web/
# A regular (non-editable) install: the package lands in the virtual environment, the sources
# stay behind in this stage. Versions are the pins of pyproject.toml; with GPU=1 pip resolves
# tensorflow[and-cuda] against the same tensorflow pin. The web and loadtest extras (FastAPI,
# uvicorn; locust, gevent and their dependencies) add about 55 MB to the 2.8 GB of the others:
# one image for every use is simpler than variants.
RUN if [ "$GPU" = 1 ]; then cuda="tensorflow[and-cuda]"; else cuda=""; fi \
 && /opt/dfdetect/bin/pip install ".[train,export,serve,client,web,loadtest]" $cuda \
 && /opt/dfdetect/bin/dfdetect --version


FROM python:3.11-slim-bookworm

ENV PATH=/opt/dfdetect/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY --from=build /opt/dfdetect /opt/dfdetect
# The locust users are not part of the package: workers load them from here
# (`-f /opt/dfdetect/loadtests`, not `-f -`: they import the `_` helpers beside them).
COPY loadtests/ /opt/dfdetect/loadtests/

# An unprivileged user, by number as well so that Kubernetes can check runAsNonRoot.
RUN groupadd --system --gid 10001 dfdetect \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/dfdetect \
      --shell /usr/sbin/nologin dfdetect
USER 10001:10001
WORKDIR /home/dfdetect

ENTRYPOINT ["dfdetect"]
CMD ["--help"]
