# dfdetect: every target works on a fresh clone; the first one run builds .venv.
#   make train export deploy    the main job, on the generated demo data by default
#   make test                   the test suite
# Run `make help` for the targets and the variables they take.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CLIENT_VENV ?= .venv-client

DATA ?=
PREPARED ?=
PREPARE_ARGS ?=
PRESET ?= smoke
CONFIG ?=
TRAIN_ARGS ?=
RUN ?=
MODEL_REPOSITORY ?= model_repository
MODEL_NAME ?= deepfake
EXPORT_ARGS ?=
TARGET ?= local
GRPC_PORT ?= 8500
REST_PORT ?= 8501
BACKEND ?= tf
SERVE_CROP ?= 224
DEPLOY_STATE ?= .run
SERVER_ARGS ?=
PYTEST_ARGS ?=
OVERLAY ?= gpu
USERS ?= 16
SPAWN_RATE ?= 8
DURATION ?= 30s
REPORTS ?= reports
LOCUST_ARGS ?=
WEB_PORT ?= 8080
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help install install-client prepare train evaluate export deploy undeploy test bench bench-prepare bench-train bench-export bench-serve bench-client bench-cold-start bench-faces bench-hostile image-sizes tfs-suite k8s-validate loadtest web browser clean

help: ## list targets and variables
	@echo "Targets:"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'
	@echo
	@echo "Variables:"
	@echo "  DATA=DIR          dataset folder (DFDC, Celeb-DF v2, or real/ + fake/); empty: generated demo data"
	@echo "  PREPARED=DIR      where prepared face crops go (default data/prepared/<dataset name>)"
	@echo "  PREPARE_ARGS=...  more 'dfdetect prepare' flags, e.g. '--frames 16 --workers 8'"
	@echo "  PRESET=smoke      training preset: smoke (demo data, CPU), dfdc_b0, celebdf_b4"
	@echo "  CONFIG=FILE       YAML file overriding preset fields"
	@echo "  TRAIN_ARGS=...    more 'dfdetect train' flags, e.g. '--set train.epochs=5'"
	@echo "  RUN=DIR           run folder for 'make evaluate' and 'make export' (default: the latest run)"
	@echo "  MODEL_REPOSITORY=model_repository   model repository root (local path or gs://...)"
	@echo "  MODEL_NAME=deepfake                 model folder name in the repository"
	@echo "  EXPORT_ARGS=...   more 'dfdetect export' flags, e.g. '--keep 3' or '--no-onnx'"
	@echo "  TARGET=local      deploy target: local (this machine) or k8s (the cluster in kubectl's context)"
	@echo "  GRPC_PORT=8500 REST_PORT=8501       ports of the local model server"
	@echo "  BACKEND=tf        local server backend: tf (SavedModel) or onnx (onnxruntime, faster on CPU)"
	@echo "  SERVE_CROP=224    crop size 'make bench-serve' measures (production's; an untrained stand-in when the"
	@echo "                    repository's model takes another size; empty: the repository's model as it is)"
	@echo "  SERVER_ARGS=...   more server flags, e.g. '--enable_batching --batching_parameters_file=serving/batching.config'"
	@echo "  OVERLAY=gpu       Kubernetes overlay for TARGET=k8s and k8s-validate: gpu or cpu"
	@echo "  IMAGE=            TARGET=k8s train/export: the project image in your registry"
	@echo "  K8S_MODEL_REPOSITORY=  TARGET=k8s export: where the Job publishes versions (default /models, the models volume)"
	@echo "  USERS=16 SPAWN_RATE=8 DURATION=30s  'make loadtest' shape; reports go to REPORTS=reports"
	@echo "  LOCUST_ARGS=...   more locust options for 'make loadtest', e.g. '--max-p95-ms 500 --batch-size 16'"
	@echo "  WEB_PORT=8080     port of the web page ('make web', 'make deploy'; 0: deploy without it)"
	@echo "  PYTEST_ARGS=...   extra pytest arguments for 'make test'"
	@echo "  PYTHON=python3    interpreter the virtual environment is built from"
	@echo "  CLIENT_VENV=.venv-client             where 'make install-client' puts the thin client"
	@echo "  TFS=DIR           a tensorflow/serving checkout, for 'make tfs-suite'"

install: $(INSTALLED) ## create .venv and install dfdetect (editable) with everything the tests need

# setup.py compiles dfdetect/wire/*.proto: a changed .proto reinstalls.
$(INSTALLED): pyproject.toml setup.py $(wildcard dfdetect/wire/*.proto)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install-client: ## the thin client alone in CLIENT_VENV (no TensorFlow): the library and `dfdetect predict`
	@test -x $(CLIENT_VENV)/bin/python || $(PYTHON) -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CLIENT_VENV)/bin/python -m pip install --quiet '.[client]'
	@echo "installed: $(CLIENT_VENV)/bin/dfdetect predict IMAGE_OR_VIDEO (size: $$(du -sh $(CLIENT_VENV) | cut -f1))"

prepare: install ## frames -> MTCNN face crops -> leak-free TFRecord splits (demo data if no DATA)
	$(BIN)/dfdetect prepare $(if $(DATA),--data $(DATA)) $(if $(PREPARED),--out $(PREPARED)) $(PREPARE_ARGS)

train: install ## train PRESET (prepares the demo data first if needed), calibrate, evaluate, print metrics (TARGET=k8s: the training Job)
ifeq ($(TARGET),k8s)
	$(BIN)/python k8s/jobs.py run train $(if $(IMAGE),--image $(IMAGE))
else
	$(BIN)/dfdetect train --preset $(PRESET) $(if $(CONFIG),--config $(CONFIG)) $(TRAIN_ARGS)
endif

evaluate: install ## re-evaluate a run (RUN=dir, default the latest): metrics.json, ROC plots
	$(BIN)/dfdetect evaluate $(if $(RUN),--run $(RUN))

export: install ## publish the latest run as the next model version (+ verified ONNX twin) (TARGET=k8s: the export Job)
ifeq ($(TARGET),k8s)
	$(BIN)/python k8s/jobs.py run export $(if $(IMAGE),--image $(IMAGE)) $(if $(K8S_MODEL_REPOSITORY),--model-repository $(K8S_MODEL_REPOSITORY))
else
	$(BIN)/dfdetect export --model-repository $(MODEL_REPOSITORY) --model-name $(MODEL_NAME) $(if $(RUN),--run $(RUN)) $(EXPORT_ARGS)
endif

deploy: install ## start serving MODEL_REPOSITORY (TARGET=local: background server on :8500/:8501; TARGET=k8s: kubectl apply -k OVERLAY)
ifeq ($(TARGET),local)
	$(BIN)/python -m dfdetect.serving.deploy up --model-repository $(MODEL_REPOSITORY) --model-name $(MODEL_NAME) \
		--grpc-port $(GRPC_PORT) --rest-port $(REST_PORT) --web-port $(WEB_PORT) --backend $(BACKEND) \
		--state-dir $(DEPLOY_STATE) $(if $(SERVER_ARGS),-- $(SERVER_ARGS))
else ifeq ($(TARGET),k8s)
	bash k8s/deploy.sh $(OVERLAY)
else
	@echo "TARGET=$(TARGET): expected TARGET=local (this machine) or TARGET=k8s (kubectl's current cluster)" >&2; exit 2
endif

undeploy: install ## stop the local web page and model server (the server drains requests in flight)
	$(BIN)/python -m dfdetect.serving.deploy down --state-dir $(DEPLOY_STATE)

test: install browser ## run the test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

browser: ## Debian's chromium for the web page tests (installed with apt-get when missing; no browser download)
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the web page tests"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
		--no-install-recommends chromium >/dev/null; }
	@test -x $(CHROMIUM) || { echo "error: $(CHROMIUM) is missing after installing Debian's chromium" >&2; exit 1; }

bench: bench-prepare bench-train bench-export bench-serve bench-client bench-faces bench-hostile bench-cold-start ## every benchmark in turn, after `make train export` (each alone: make bench-<name>); they print figures, never fail on them

bench-prepare: install ## frames/s and faces/s of data preparation against the naive pipeline
	$(BIN)/python -m benchmarks.prepare

bench-train: install ## input pipeline vs training step throughput (pipeline must feed >= 2x)
	$(BIN)/python -m benchmarks.train

bench-export: install ## export time, SavedModel/ONNX sizes, TensorFlow vs onnxruntime throughput
	$(BIN)/python -m benchmarks.export $(if $(RUN),--run $(RUN))

bench-serve: install ## served gRPC/REST throughput and latency vs in-process (batching on); SERVE_MATRIX=1: 96/224 px x tf/onnx x two server settings x 1/16/32 clients in one table
	$(BIN)/python -m benchmarks.serve --model-repository $(MODEL_REPOSITORY) --model-name $(MODEL_NAME) --backend $(BACKEND) \
		$(if $(SERVE_CROP),--crop-size $(SERVE_CROP)) $(if $(SERVE_MATRIX),--matrix)

bench-client: install ## seconds per 10 s 1080p video (decode/detection/RPC) vs the naive pipeline and the mtcnn package; request bytes per face
	$(BIN)/python -m benchmarks.client

bench-cold-start: install install-client ## cold `dfdetect predict image.jpg` (local deployment): the client install vs TensorFlow loaded
	@$(MAKE) --no-print-directory deploy TARGET=local
	$(BIN)/python -m benchmarks.cold_start --server localhost:$(GRPC_PORT) --model-name $(MODEL_NAME) --client-venv $(CLIENT_VENV)

image-sizes: install ## the web and full images' environments (and the client install) measured: MB, TensorFlow or not
	$(BIN)/python -m benchmarks.image_sizes

bench-faces: install ## face detection ms/frame on one core (ONNX Runtime vs the mtcnn package); recall on generated hard footage
	$(BIN)/python -m benchmarks.faces

bench-hostile: install ## hostile requests at full size against dfdetect serve: time and server memory per case
	$(BIN)/python -m benchmarks.hostile

tfs-suite: install ## TensorFlow Serving's own model-server tests against dfdetect serve (TFS=path to a tensorflow/serving checkout)
	@test -n "$(TFS)" || { echo "give TFS=/path/to/a/tensorflow/serving/checkout" >&2; exit 2; }
	$(BIN)/python -m pip install --quiet portpicker six tf-keras==2.21.0
	$(BIN)/python tests/tfs_suite.py $(TFS)

k8s-validate: install ## render every k8s overlay and validate each object offline against the Kubernetes schemas
	$(BIN)/python k8s/validate.py

loadtest: install ## locust headless against the local deployment (deployed if needed); CSV + HTML in REPORTS
	@$(MAKE) --no-print-directory deploy TARGET=local
	@status=0; $(BIN)/locust -f loadtests/ --headless -u $(USERS) -r $(SPAWN_RATE) -t $(DURATION) --only-summary \
		--host http://localhost:$(REST_PORT) --grpc-host localhost:$(GRPC_PORT) --model-name $(MODEL_NAME) \
		--csv $(REPORTS)/loadtest --html $(REPORTS)/loadtest.html $(LOCUST_ARGS) || status=$$?; \
	echo; $(BIN)/python loadtests/_summary.py $(REPORTS)/loadtest; \
	echo "reports: $(REPORTS)/loadtest.html, $(REPORTS)/loadtest_*.csv"; exit $$status

web: install ## the web page on WEB_PORT (foreground), in front of the model server at localhost:GRPC_PORT
	$(BIN)/dfdetect web --port $(WEB_PORT) --server localhost:$(GRPC_PORT) --model-name $(MODEL_NAME) \
		--model-repository $(MODEL_REPOSITORY)

clean: ## remove generated data, runs and model repositories (keeps .venv)
	rm -rf data runs model_repository reports .run .pytest_cache
