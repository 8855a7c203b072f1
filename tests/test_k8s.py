"""k8s/: every overlay and batch job renders with `kubectl kustomize`, validates strictly against the
Kubernetes schemas (offline, kubernetes-validate), and has the properties a cluster relies on,
checked on the rendered objects against the serving configs and the model contract."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from dfdetect.contract import GRPC_PORT, MODEL_CARD_FILE, REST_PORT
from dfdetect.modelsconfig import read_model_server_config, set_version_labels
from dfdetect.serving.config import read_batching_parameters, read_monitoring_config

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
SERVING = ROOT / "serving"
SERVING_FILES = ("models.config", "batching.config", "monitoring.config")
OVERLAYS = ("k8s/overlays/gpu", "k8s/overlays/cpu")
GPU = "nvidia.com/gpu"
SERVING_NAME = "deepfake-serving"
WEB_NAME = "deepfake-web"


def _load_validate():
    spec = importlib.util.spec_from_file_location("k8s_validate", K8S / "validate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


kv = _load_validate()


def _require_kubectl():
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not on PATH: these tests render k8s/ with `kubectl kustomize` (no cluster needed); "
                    "install kubectl")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """Every kustomization under k8s/overlays and k8s/jobs, rendered once: {"k8s/overlays/gpu": [objects]}."""
    _require_kubectl()
    return {kv.display(path): kv.render(path) for path in kv.kustomizations()}


# --- helpers -------------------------------------------------------------------------------------

def find(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def containers(spec, init=True):
    return (spec.get("initContainers", []) if init else []) + spec["containers"]


def container(spec, name):
    (c,) = [c for c in containers(spec) if c["name"] == name]
    return c


def workloads(objects):
    return [o for o in objects if o["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")]


def serving(objects):
    deployment = find(objects, "Deployment", SERVING_NAME)
    return deployment, pod_spec(deployment), container(pod_spec(deployment), "tensorflow-serving")


def flag(args, name):
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} given {len(values)} times in {args}"
    return values[0]


def port_number(c, port):
    """A probe's or Service's port (number or container port name) as a number."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    return number


def mount_path(c, volume):
    (path,) = [m["mountPath"] for m in c["volumeMounts"] if m["name"] == volume]
    return path


def volume(spec, name):
    (v,) = [v for v in spec["volumes"] if v["name"] == name]
    return v


def labels_match(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"selector uses more than matchLabels: {selector}"
    return bool(selector.get("matchLabels")) and selector["matchLabels"].items() <= labels.items()


def model_names():
    config = read_model_server_config(SERVING / "models.config")
    return [m.name for m in config.model_config_list.config]


def substitute(text: str, env: dict) -> str:
    """Kubernetes' $(VAR) expansion in args and env values."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: str(env[m.group(1)]), text)


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def quantity(value) -> float:
    """A Kubernetes quantity ("2", "500m", "3Gi", "100M") as a number."""
    units = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
             "Ti": 2**40}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()
    return float(number) * units[unit]


def pinned(requirement_name):
    """The version pyproject.toml pins, in the base install or the serve extra (TensorFlow's home)."""
    project = pyproject()["project"]
    for dep in project["dependencies"] + project["optional-dependencies"]["serve"]:
        name, _, version = dep.partition("==")
        if name.strip() == requirement_name:
            return version.strip()
    raise AssertionError(f"{requirement_name} is not pinned in pyproject.toml")


# --- rendering and schema validation -------------------------------------------------------------

def test_every_overlay_and_batch_job_is_rendered(rendered):
    assert set(OVERLAYS) <= set(rendered)
    assert {"k8s/jobs/prepare", "k8s/jobs/train", "k8s/jobs/train-multiworker"} <= set(rendered)
    kinds = {o["kind"] for objs in rendered.values() for o in objs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
            "ConfigMap", "Job"} <= kinds


def test_every_object_is_valid_against_the_kubernetes_schemas(rendered):
    failures = {f"{where} {kv.object_name(o)}": errors
                for where, objects in rendered.items() for o in objects if (errors := kv.validate_object(o))}
    assert not failures, failures


def test_every_namespaced_object_lands_in_the_product_namespace(rendered):
    for where, objects in rendered.items():
        for o in objects:
            if o["kind"] != "Namespace":
                assert o["metadata"].get("namespace") == "dfdetect", f"{where} {kv.object_name(o)}"


def test_validation_is_strict_and_misses_nothing(rendered):
    deployment = find(rendered["k8s/overlays/gpu"], "Deployment", SERVING_NAME)
    assert kv.validate_object(deployment) == []

    unknown_field = copy.deepcopy(deployment)
    container(pod_spec(unknown_field), "tensorflow-serving")["gpus"] = 1
    errors = kv.validate_object(unknown_field)
    assert len(errors) == len(kv.KUBERNETES_VERSIONS) and all("'gpus' was unexpected" in e for e in errors)

    wrong_type = copy.deepcopy(deployment)
    container(pod_spec(wrong_type), "tensorflow-serving")["ports"][0]["containerPort"] = "8500"
    assert any("containerPort" in e for e in kv.validate_object(wrong_type))

    no_schema = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"}}
    assert kv.validate_object(no_schema), "an object without a schema must not pass unchecked"


def test_validate_script_checks_every_object_and_names_failures(rendered, tmp_path):
    result = subprocess.run([sys.executable, str(K8S / "validate.py")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    total = sum(len(objects) for objects in rendered.values())
    assert result.stdout.count("\nok ") + result.stdout.startswith("ok ") == total
    assert f"{total} objects from {len(rendered)} kustomizations valid" in result.stdout

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "kustomization.yaml").write_text("resources: [service.yaml]\n")
    (broken / "service.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: http}]\n")
    result = subprocess.run([sys.executable, str(K8S / "validate.py"), str(broken)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Service/web" in result.stdout and "spec.ports.0.port" in result.stdout

    (broken / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    result = subprocess.run([sys.executable, str(K8S / "validate.py"), str(broken)], capture_output=True, text=True)
    assert result.returncode == 2 and "missing.yaml" in result.stdout


# --- serving: image, GPUs, placement -------------------------------------------------------------

def test_every_image_is_pinned(rendered):
    for where, objects in rendered.items():
        for w in workloads(objects):
            for c in containers(pod_spec(w)):
                name, _, tag = c["image"].rpartition(":")
                assert name and "/" not in tag, f"{where} {c['name']}: image {c['image']} has no tag"
                assert tag and tag != "latest", f"{where} {c['name']}: image {c['image']} is not pinned"


def test_tensorflow_serving_release_matches_the_project_tensorflow(rendered):
    version = pinned("tensorflow")
    _, spec, _ = serving(rendered["k8s/overlays/gpu"])
    assert {c["image"] for c in containers(spec)} == {f"tensorflow/serving:{version}-gpu"}
    _, spec, _ = serving(rendered["k8s/overlays/cpu"])
    assert {c["image"] for c in containers(spec)} == {f"tensorflow/serving:{version}"}


def test_gpu_overlay_takes_one_gpu_on_gpu_nodes(rendered):
    _, spec, server = serving(rendered["k8s/overlays/gpu"])
    resources = server["resources"]
    assert int(resources["limits"][GPU]) >= 1 and resources["requests"][GPU] == resources["limits"][GPU]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    # The batch threads of serving/batching.config get a CPU core each.
    threads = read_batching_parameters(SERVING / "batching.config").num_batch_threads.value
    assert int(resources["requests"]["cpu"]) >= threads


def test_cpu_overlay_asks_for_no_gpu(rendered):
    _, spec, _ = serving(rendered["k8s/overlays/cpu"])
    for c in containers(spec):
        assert GPU not in c["resources"].get("requests", {}) and GPU not in c["resources"].get("limits", {})
    assert "nodeSelector" not in spec and "tolerations" not in spec


# --- serving: flags, ports, probes, configs ------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_match_the_serving_contract(rendered, overlay):
    objects = rendered[overlay]
    deployment, spec, server = serving(objects)
    assert {p["name"]: p["containerPort"] for p in server["ports"]} == {"grpc": GRPC_PORT, "http": REST_PORT}
    assert flag(server["args"], "port") == str(GRPC_PORT)
    assert flag(server["args"], "rest_api_port") == str(REST_PORT)

    service = find(objects, "Service", "deepfake-serving")
    assert service["spec"]["selector"].items() <= spec_labels(deployment).items()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {"grpc", "http"}
    for name, number in (("grpc", GRPC_PORT), ("http", REST_PORT)):
        assert ports[name]["port"] == number and port_number(server, ports[name]["targetPort"]) == number
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c" and ports["http"]["appProtocol"] == "http"


def spec_labels(deployment):
    return deployment["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_check_the_model_over_rest(rendered, overlay):
    _, _, server = serving(rendered[overlay])
    (name,) = model_names()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert port_number(server, server[probe]["httpGet"]["port"]) == REST_PORT, probe
    # Ready only when a version can answer: metadata needs a loaded version, the status path does not.
    assert server["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{name}/metadata"
    assert server["startupProbe"]["httpGet"]["path"] == f"/v1/models/{name}/metadata"
    assert server["livenessProbe"]["httpGet"]["path"] == f"/v1/models/{name}"
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "slow model loads need minutes"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmaps_are_generated_from_the_serving_files(rendered, overlay):
    objects = rendered[overlay]
    _, spec, server = serving(objects)
    config_map_name = volume(spec, "serving-config")["configMap"]["name"]
    assert re.fullmatch(r"deepfake-serving-config-[a-z0-9]{10}", config_map_name), "name carries a content hash"
    config_map = find(objects, "ConfigMap", config_map_name)
    assert config_map["data"] == {f: (SERVING / f).read_text() for f in SERVING_FILES}

    mounted = mount_path(server, "serving-config")
    args = server["args"]
    assert flag(args, "enable_batching") == "true"
    assert flag(args, "enable_model_warmup") == "true"
    assert flag(args, "batching_parameters_file") == f"{mounted}/batching.config"
    assert flag(args, "monitoring_config_file") == f"{mounted}/monitoring.config"
    # models.config goes through the init container, which writes the file the server reads.
    init = container(spec, "model-config")
    assert f"{mount_path(init, 'serving-config')}/models.config" in init["command"]
    written = flag(args, "model_config_file")
    assert written in init["command"]
    assert written.startswith(mount_path(init, "rendered-config") + "/")
    assert mount_path(server, "rendered-config") == mount_path(init, "rendered-config")


def test_the_configmap_comes_from_copies_of_the_serving_files_kept_in_step(tmp_path):
    """kustomize reads files only inside k8s/, so the base holds copies of serving/'s configs:
    `dfdetect export label` writes both, validation names a copy that drifted, and a changed
    copy changes the ConfigMap (its new name rolls the pods)."""
    _require_kubectl()
    assert kv.config_drift() == [], "k8s/base/config/ differs from serving/"
    shutil.copytree(K8S, tmp_path / "k8s", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "serving").mkdir()
    for f in SERVING_FILES:
        shutil.copy(SERVING / f, tmp_path / "serving" / f)
    (name,) = model_names()
    set_version_labels(tmp_path / "serving" / "models.config", name, {"stable": 3}, existing_versions=[3])
    copy = tmp_path / "k8s" / "base" / "config" / "models.config"
    assert copy.read_text() == (tmp_path / "serving" / "models.config").read_text()
    before = find(kv.render(K8S / "overlays/gpu"), "Deployment", SERVING_NAME)
    after_objects = kv.render(tmp_path / "k8s/overlays/gpu")
    after = find(after_objects, "Deployment", SERVING_NAME)
    old, new = (volume(pod_spec(d), "serving-config")["configMap"]["name"] for d in (before, after))
    assert old != new
    assert 'key: "stable"' in find(after_objects, "ConfigMap", new)["data"]["models.config"]
    batching = tmp_path / "serving" / "batching.config"
    batching.write_text(batching.read_text().replace("batch_timeout_micros { value: 2000 }",
                                                     "batch_timeout_micros { value: 1000 }"))
    drift = kv.config_drift(tmp_path / "serving", tmp_path / "k8s" / "base" / "config")
    assert len(drift) == 1 and "batching.config" in drift[0]


def _model_repository(objects):
    _, spec, _ = serving(objects)
    (env,) = container(spec, "model-config")["env"]
    assert env["name"] == "MODEL_REPOSITORY"
    return find(objects, "ConfigMap", env["valueFrom"]["configMapKeyRef"]["name"])["data"]["MODEL_REPOSITORY"]


def _run_render_script(objects, tmp_path, source, repository):
    _, spec, _ = serving(objects)
    scripts = find(objects, "ConfigMap", volume(spec, "scripts")["configMap"]["name"])["data"]
    script = tmp_path / "render-models-config.sh"
    script.write_text(scripts["render-models-config.sh"])
    out = tmp_path / "rendered.config"
    result = subprocess.run(["/bin/sh", str(script), str(source), str(out)], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "MODEL_REPOSITORY": repository})
    return result, out


def test_gpu_overlay_reads_models_from_object_storage(rendered, tmp_path):
    objects = rendered["k8s/overlays/gpu"]
    repository = _model_repository(objects)
    assert repository.startswith("gs://")
    _, spec, _ = serving(objects)
    assert not any("persistentVolumeClaim" in v for v in spec["volumes"])

    # The init container's script, run here on serving/models.config with labels set as
    # `dfdetect export label` sets them: only the base paths move to the bucket.
    source = tmp_path / "models.config"
    shutil.copy(SERVING / "models.config", source)
    (name,) = model_names()
    set_version_labels(source, name, {"stable": 3, "canary": 4}, existing_versions=[3, 4])
    result, out = _run_render_script(objects, tmp_path, source, repository)
    assert result.returncode == 0, result.stderr
    rendered_config, original = read_model_server_config(out), read_model_server_config(source)
    (model,) = rendered_config.model_config_list.config
    assert model.base_path == f"{repository}/{name}"
    assert dict(model.version_labels) == {"stable": 3, "canary": 4}
    assert list(model.model_version_policy.specific.versions) == [3, 4]
    original.model_config_list.config[0].base_path = model.base_path
    assert rendered_config == original


def test_cpu_overlay_reads_models_from_a_mounted_volume(rendered, tmp_path):
    objects = rendered["k8s/overlays/cpu"]
    repository = _model_repository(objects)
    _, spec, server = serving(objects)
    claim = volume(spec, "model-repository")["persistentVolumeClaim"]
    assert find(objects, "PersistentVolumeClaim", claim["claimName"])
    (mount,) = [m for m in server["volumeMounts"] if m["name"] == "model-repository"]
    assert mount["mountPath"] == repository and mount.get("readOnly") is True

    result, out = _run_render_script(objects, tmp_path, SERVING / "models.config", repository)
    assert result.returncode == 0, result.stderr
    assert read_model_server_config(out) == read_model_server_config(SERVING / "models.config")
    for m in read_model_server_config(out).model_config_list.config:
        assert m.base_path.startswith(mount["mountPath"] + "/")


def test_render_script_refuses_what_it_cannot_rewrite(rendered, tmp_path):
    objects = rendered["k8s/overlays/gpu"]
    result, _ = _run_render_script(objects, tmp_path, SERVING / "models.config", "models")
    assert result.returncode == 1 and "MODEL_REPOSITORY=models is not usable" in result.stderr
    elsewhere = tmp_path / "elsewhere.config"
    elsewhere.write_text('model_config_list { config { name: "m" base_path: "/srv/m" } }\n')
    result, _ = _run_render_script(objects, tmp_path, elsewhere, "gs://bucket/repo")
    assert result.returncode == 1 and "no base_path under /models/" in result.stderr


# --- serving: operations -------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaler_budget_and_spread_select_the_deployment(rendered, overlay):
    objects = rendered[overlay]
    deployment, spec, _ = serving(objects)
    labels = spec_labels(deployment)
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"

    hpa = find(objects, "HorizontalPodAutoscaler", SERVING_NAME)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]

    pdb = find(objects, "PodDisruptionBudget", SERVING_NAME)
    assert pdb["apiVersion"] == "policy/v1"
    assert labels_match(pdb["spec"]["selector"], labels)
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]

    by_node = [t for t in spec["topologySpreadConstraints"] if t["topologyKey"] == "kubernetes.io/hostname"]
    assert len(by_node) == 1 and by_node[0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert labels_match(by_node[0]["labelSelector"], labels)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_matches_the_server_drain(rendered, overlay):
    from dfdetect.serving.server import ServerOptions

    _, spec, server = serving(rendered[overlay])
    drain = server["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert drain == ServerOptions().drain_seconds
    assert spec["terminationGracePeriodSeconds"] > drain
    # tensorflow_model_server has no SIGTERM handler: it must not be PID 1, or SIGTERM is ignored.
    assert spec["shareProcessNamespace"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_labelled_backends_and_monitoring_only(rendered, overlay):
    objects = rendered[overlay]
    deployment, _, _ = serving(objects)
    policy = find(objects, "NetworkPolicy", SERVING_NAME)
    assert labels_match(policy["spec"]["podSelector"], spec_labels(deployment))
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = policy["spec"]["ingress"]
    assert all(rule.get("from") and rule.get("ports") for rule in rules), "no rule may admit everyone or every port"
    admitted = {}
    for rule in rules:
        for peer in rule["from"]:
            key = ("pods", json.dumps(peer["podSelector"], sort_keys=True)) if "podSelector" in peer else \
                  ("namespace", json.dumps(peer["namespaceSelector"], sort_keys=True))
            assert not (("podSelector" in peer) and ("namespaceSelector" in peer)), peer
            admitted[key] = {p["port"] for p in rule["ports"]}
    backends = ("pods", json.dumps({"matchLabels": {"dfdetect/model-client": "true"}}))
    monitoring = ("namespace", json.dumps({"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}))
    assert admitted == {backends: {GRPC_PORT, REST_PORT}, monitoring: {REST_PORT}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_scrapes_the_monitoring_path(rendered, overlay):
    deployment, _, server = serving(rendered[overlay])
    monitoring = read_monitoring_config(SERVING / "monitoring.config")
    assert monitoring.prometheus_config.enable
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == monitoring.prometheus_config.path
    assert int(annotations["prometheus.io/port"]) == REST_PORT == port_number(server, "http")


# --- the web front -------------------------------------------------------------------------------

def web(objects):
    deployment = find(objects, "Deployment", WEB_NAME)
    return deployment, pod_spec(deployment), container(pod_spec(deployment), "web")


def _pod_environment(objects, c) -> dict:
    """The container's environment as the pod gets it: values, and ConfigMap keys looked up."""
    assert "envFrom" not in c
    values = {}
    for e in c.get("env", []):
        if "value" in e:
            values[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["configMapKeyRef"]
            values[e["name"]] = find(objects, "ConfigMap", ref["name"])["data"][ref["key"]]
    return values


def web_settings(objects, monkeypatch):
    """The settings the web container starts with: its args parsed by `dfdetect`'s own parser (the image's
    entry point), with its DFDETECT_WEB_* variables as the flags' defaults."""
    from dfdetect.cli import build_parser
    from dfdetect.web.settings import WebSettings

    _, _, c = web(objects)
    assert "command" not in c, "the image's entry point, dfdetect, runs"
    for name in [n for n in os.environ if n.startswith("DFDETECT_WEB_")]:
        monkeypatch.delenv(name)
    for name, value in _pod_environment(objects, c).items():
        if name.startswith("DFDETECT_WEB_"):
            monkeypatch.setenv(name, value)
    args = build_parser().parse_args(c["args"])
    assert args.handler.__name__ == "run_web_command" and not getattr(args, "env_error", None)
    return WebSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(WebSettings)}).validate()


def test_web_front_runs_the_thin_web_image_on_cpu_in_every_overlay(rendered):
    version = pyproject()["project"]["version"]
    for overlay in OVERLAYS:
        _, spec, c = web(rendered[overlay])
        # The CPU build: face detection runs on the web pod's CPUs, also where serving has GPUs.
        assert {x["image"] for x in containers(spec)} == {f"dfdetect-web:{version}"}, overlay
        assert GPU not in c["resources"]["requests"] and GPU not in c["resources"]["limits"]
        assert "nodeSelector" not in spec and "tolerations" not in spec, overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_front_listens_on_the_web_port_and_calls_the_serving_service_over_grpc(rendered, overlay, monkeypatch):
    from dfdetect.contract import WEB_PORT

    objects = rendered[overlay]
    deployment, spec, c = web(objects)
    settings = web_settings(objects, monkeypatch)
    assert settings.host == "0.0.0.0", "reachable from outside the pod"
    assert settings.port == WEB_PORT
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": settings.port}

    # The model server: the headless serving Service (in the web pod's namespace), on its gRPC
    # port, resolved by DNS to every pod, with requests spread over them (round_robin).
    assert settings.server.startswith("dns:///") and settings.load_balancing == "round_robin"
    host, port = settings.server.removeprefix("dns:///").rsplit(":", 1)
    service = find(objects, "Service", host)
    assert service["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert service["spec"]["clusterIP"] == "None", "headless: its name resolves to the pods themselves"
    serving_deployment, _, server = serving(objects)
    assert service["spec"]["selector"].items() <= spec_labels(serving_deployment).items()
    # Connections end (GOAWAY after their maximum age), so round_robin clients resolve again and
    # pods the autoscaler adds get traffic.
    assert "grpc.max_connection_age_ms=" in flag(server["args"], "grpc_channel_arguments")
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    assert service_port["name"] == "grpc" and port_number(server, service_port["targetPort"]) == GRPC_PORT
    assert settings.model_name in model_names()

    web_service = find(objects, "Service", WEB_NAME)
    assert web_service["spec"]["selector"].items() <= spec_labels(deployment).items()
    assert not web_service["spec"]["selector"].items() <= spec_labels(serving_deployment).items()
    (http,) = web_service["spec"]["ports"]
    assert http["port"] == WEB_PORT and port_number(c, http["targetPort"]) == settings.port
    # Kubernetes' service-link variables must not mix with the DFDETECT_WEB_* settings.
    assert spec["enableServiceLinks"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_probes_use_the_apps_health_and_readiness_paths(rendered, overlay, monkeypatch):
    from dfdetect.web.app import create_app

    objects = rendered[overlay]
    _, _, c = web(objects)
    settings = web_settings(objects, monkeypatch)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert port_number(c, c[probe]["httpGet"]["port"]) == settings.port, probe
    # Ready = the model server answers with the model's metadata; alive = the process answers (an
    # unreachable model server must make the pods unready, not restart them).
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    routes = {route.path for route in create_app(settings).routes}
    assert {"/readyz", "/healthz"} <= routes
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_web_termination_covers_uvicorn_graceful_shutdown(rendered):
    graceful = re.findall(r"timeout_graceful_shutdown=(\d+)", (ROOT / "web" / "cli.py").read_text())
    assert len(graceful) == 1, "dfdetect web's graceful shutdown timeout (web/cli.py)"
    for overlay in OVERLAYS:
        _, spec, c = web(rendered[overlay])
        drain = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert drain > 0, "keep answering while the endpoint removal spreads"
        assert spec["terminationGracePeriodSeconds"] > drain + int(graceful[0])
        # uvicorn handles SIGTERM itself: PID 1 of its container is fine.
        assert not spec.get("shareProcessNamespace")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_resources_and_upload_scratch_fit_the_settings(rendered, overlay, monkeypatch):
    objects = rendered[overlay]
    _, spec, c = web(objects)
    settings = web_settings(objects, monkeypatch)
    requests, limits = c["resources"]["requests"], c["resources"]["limits"]
    for kind in ("cpu", "memory"):
        assert quantity(requests[kind]) <= quantity(limits[kind]), kind
    # One analysis at a time per CPU; TensorFlow, the face detector and two videos' frames in memory.
    assert 1 <= settings.max_concurrent <= quantity(limits["cpu"])
    assert quantity(requests["memory"]) >= 2 * 2**30

    # Uploads go through Python's tempfile into the scratch volume (the root filesystem is read-only):
    # each in flight twice (the multipart spool file and the analysed copy), at least one per analysis slot.
    tmpdir = _pod_environment(objects, c).get("TMPDIR", "/tmp")
    (scratch,) = [m for m in c["volumeMounts"] if m["mountPath"] == tmpdir]
    empty_dir = volume(spec, scratch["name"])["emptyDir"]
    assert empty_dir.get("medium") != "Memory", "uploads would count against the memory limit"
    assert quantity(empty_dir["sizeLimit"]) >= 2 * settings.max_upload_bytes * settings.max_concurrent


def test_web_threshold_comes_from_the_model_card_or_a_configmap(rendered, monkeypatch, tmp_path):
    from dfdetect.client.client import find_model_card

    # gpu: the repository is on gs://, which the web front cannot read: the threshold is a ConfigMap value.
    objects = rendered["k8s/overlays/gpu"]
    assert _model_repository(objects).startswith("gs://")
    _, spec, c = web(objects)
    settings = web_settings(objects, monkeypatch)
    assert settings.model_card is None and settings.threshold is not None and 0 <= settings.threshold <= 1
    (ref,) = [e["valueFrom"]["configMapKeyRef"] for e in c["env"] if e["name"] == "DFDETECT_WEB_THRESHOLD"]
    assert re.fullmatch(r"deepfake-web-threshold-[a-z0-9]{10}", ref["name"]), "a new value rolls the web pods"
    assert not any("persistentVolumeClaim" in v for v in spec["volumes"])

    # cpu: the web pods mount the serving pods' model volume and read the answering version's card.
    objects = rendered["k8s/overlays/cpu"]
    _, serving_spec, server = serving(objects)
    (served,) = [m for m in server["volumeMounts"] if m["mountPath"] == _model_repository(objects)]
    claim = volume(serving_spec, served["name"])["persistentVolumeClaim"]["claimName"]
    _, spec, c = web(objects)
    settings = web_settings(objects, monkeypatch)
    assert settings.threshold is None, "a fixed threshold would override the card"
    (mount,) = [m for m in c["volumeMounts"]
                if volume(spec, m["name"]).get("persistentVolumeClaim", {}).get("claimName") == claim]
    assert mount.get("readOnly") is True
    assert settings.model_card == f"{mount['mountPath']}/{settings.model_name}"
    # The model's folder of versions (not one version's): the card follows the version that answers.
    repository = tmp_path / "repository"
    for version, threshold in ((3, 0.4), (4, 0.7)):
        card = repository / settings.model_name / str(version) / MODEL_CARD_FILE
        card.parent.mkdir(parents=True)
        card.write_text(json.dumps({"threshold": threshold}))
    folder = repository / Path(settings.model_card).relative_to(mount["mountPath"])
    for version in (3, 4):
        assert find_model_card(folder, version) == repository / settings.model_name / str(version) / MODEL_CARD_FILE


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_the_web_front_in_to_serving_and_users_in_to_it(rendered, overlay, monkeypatch):
    objects = rendered[overlay]
    web_deployment, _, _ = web(objects)
    serving_deployment, _, _ = serving(objects)
    web_labels, serving_labels = spec_labels(web_deployment), spec_labels(serving_deployment)
    settings = web_settings(objects, monkeypatch)
    grpc_port = int(settings.server.rsplit(":", 1)[1])

    # The serving policy admits the web pods to the port they call.
    serving_policy = find(objects, "NetworkPolicy", SERVING_NAME)
    assert any(labels_match(peer["podSelector"], web_labels) and "namespaceSelector" not in peer
               and grpc_port in {p["port"] for p in rule["ports"]}
               for rule in serving_policy["spec"]["ingress"] for peer in rule["from"] if "podSelector" in peer)

    # The web policy selects the web pods only, and admits the ingress controller's namespace to the web port.
    policy = find(objects, "NetworkPolicy", WEB_NAME)
    assert labels_match(policy["spec"]["podSelector"], web_labels)
    assert not labels_match(policy["spec"]["podSelector"], serving_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert [(p["port"], p["protocol"]) for p in rule["ports"]] == [(settings.port, "TCP")]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    # Egress is not restricted by any policy of the product: the web pods reach DNS and serving.
    assert all("Egress" not in o["spec"]["policyTypes"] for o in objects if o["kind"] == "NetworkPolicy")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_autoscaler_and_budget_select_the_web_deployment(rendered, overlay):
    objects = rendered[overlay]
    deployment, spec, _ = web(objects)
    labels = spec_labels(deployment)
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = find(objects, "HorizontalPodAutoscaler", WEB_NAME)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": WEB_NAME}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = find(objects, "PodDisruptionBudget", WEB_NAME)
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"] and labels_match(pdb["spec"]["selector"], labels)
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    by_node = [t for t in spec["topologySpreadConstraints"] if t["topologyKey"] == "kubernetes.io/hostname"]
    assert len(by_node) == 1 and labels_match(by_node[0]["labelSelector"], labels)


# --- security, every pod -------------------------------------------------------------------------

def test_every_pod_runs_restricted(rendered):
    for where, objects in rendered.items():
        for w in workloads(objects):
            spec = pod_spec(w)
            what = f"{where} {kv.object_name(w)}"
            pod = spec["securityContext"]
            assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, what
            assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, what
            assert spec["automountServiceAccountToken"] is False, what
            scratch = [v["name"] for v in spec["volumes"] if "emptyDir" in v]
            for c in containers(spec):
                sc = c["securityContext"]
                assert sc.get("runAsUser", pod["runAsUser"]) > 0, f"{what} {c['name']}"
                assert sc["allowPrivilegeEscalation"] is False, f"{what} {c['name']}"
                assert sc["readOnlyRootFilesystem"] is True, f"{what} {c['name']}"
                assert sc["capabilities"] == {"drop": ["ALL"]}, f"{what} {c['name']}"
                for kind in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{what} {c['name']} {kind}"
                if GPU in c["resources"]["limits"]:
                    assert c["resources"]["requests"][GPU] == c["resources"]["limits"][GPU], what
            for c in containers(spec, init=False):
                assert any(m["mountPath"] == "/tmp" and m["name"] in scratch for m in c["volumeMounts"]), \
                    f"{what} {c['name']}: no emptyDir scratch at /tmp"
    for overlay in OVERLAYS:
        accounts = [o for o in rendered[overlay] if o["kind"] == "ServiceAccount"]
        assert {a["metadata"]["name"] for a in accounts} == {SERVING_NAME, WEB_NAME}
        for w in workloads(rendered[overlay]):
            assert pod_spec(w)["serviceAccountName"] in {a["metadata"]["name"] for a in accounts}
        assert all(a["automountServiceAccountToken"] is False for a in accounts)
        namespace = find(rendered[overlay], "Namespace")
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- batch jobs ----------------------------------------------------------------------------------

def _parse_dfdetect(args):
    from dfdetect.cli import build_parser

    return build_parser().parse_args(args)


def _env(c):
    return {e["name"]: e for e in c.get("env", [])}


def _index_from_annotation(c):
    assert _env(c)["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def _on_volume(path, c, spec, claim="dfdetect-data"):
    mounts = [m for m in c["volumeMounts"]
              if volume(spec, m["name"]).get("persistentVolumeClaim", {}).get("claimName") == claim]
    return any(path.startswith(m["mountPath"] + "/") for m in mounts)


def test_prepare_is_an_indexed_job_one_shard_per_pod(rendered):
    job = find(rendered["k8s/jobs/prepare"], "Job")
    spec = pod_spec(job)
    (c,) = spec["containers"]
    n = job["spec"]["completions"]
    assert job["spec"]["completionMode"] == "Indexed" and n >= 2 and job["spec"]["parallelism"] <= n
    _index_from_annotation(c)
    shards = set()
    for index in range(n):
        args = _parse_dfdetect([substitute(a, {"JOB_COMPLETION_INDEX": index}) for a in c["args"]])
        assert args.handler.__name__ == "run_prepare_command"
        assert args.num_shards == n, "--num-shards must equal the Job's completions"
        shards.add(args.shard)
        assert _on_volume(args.data, c, spec) and _on_volume(args.out, c, spec)
        assert 1 <= args.workers <= int(c["resources"]["limits"]["cpu"])
    assert shards == set(range(n))
    assert find(rendered["k8s/jobs/storage"], "PersistentVolumeClaim", "dfdetect-data")["spec"]["accessModes"] == \
        ["ReadWriteMany"]


def _train_config(args):
    from dfdetect.training.config import load_config

    parsed = _parse_dfdetect(args)
    assert parsed.handler.__name__ == "run_train_command"
    return load_config(parsed.preset, parsed.config, parsed.set)


JOB_UID = "0b6c1a7e-3f51-4a4e-9d38-1c2f5e0f7a21"


def _pod_variables(job, index=0):
    """What Kubernetes expands $(VAR) to in the pod of one completion index of a Job."""
    return {"JOB_COMPLETION_INDEX": index, "JOB_NAME": job["metadata"]["name"], "JOB_UID": JOB_UID}


def _run_name(job, c, index=0):
    """The run folder name a training pod passes: the Job's name and UID, read from the labels
    Kubernetes puts on the Job's pods (the same for a restarted pod, new for a new Job)."""
    from dfdetect.runs import named_run_dir

    variables = _env(c)
    assert variables["JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['batch.kubernetes.io/job-name']"
    assert variables["JOB_UID"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['batch.kubernetes.io/controller-uid']"
    (arg,) = [a for a in c["args"] if a.startswith("--run-name=")]
    name = substitute(arg.split("=", 1)[1], _pod_variables(job, index))
    assert name == f"{job['metadata']['name']}-{JOB_UID}"
    named_run_dir("/data/runs", name)  # a valid run name
    return name


def _retried_unless_bad_input(job):
    """Pods that fail are replaced (and resume the run); exit 2 (bad input) fails the Job at once."""
    assert job["spec"]["backoffLimit"] >= 1
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "train", "operator": "In", "values": [2]}} in rules


def _on_gpu_nodes(spec, c):
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert int(c["resources"]["limits"][GPU]) >= 1


def test_training_job_runs_on_a_gpu_node_from_the_prepared_data(rendered):
    job = find(rendered["k8s/jobs/train"], "Job")
    spec = pod_spec(job)
    (c,) = spec["containers"]
    _on_gpu_nodes(spec, c)
    config = _train_config([substitute(a, _pod_variables(job)) for a in c["args"]])
    prepare = pod_spec(find(rendered["k8s/jobs/prepare"], "Job"))["containers"][0]
    prepared = _parse_dfdetect([substitute(a, {"JOB_COMPLETION_INDEX": 0}) for a in prepare["args"]]).out
    assert config.data.prepared == prepared, "training reads what preparation writes"
    assert _on_volume(config.runs_dir + "/x", c, spec)
    _run_name(job, c)
    _retried_unless_bad_input(job)


def test_multiworker_training_gives_each_worker_its_tf_config(rendered):
    objects = rendered["k8s/jobs/train-multiworker"]
    job = find(objects, "Job")
    spec = pod_spec(job)
    (c,) = spec["containers"]
    _on_gpu_nodes(spec, c)
    workers = job["spec"]["completions"]
    assert job["spec"]["completionMode"] == "Indexed" and workers >= 2 and job["spec"]["parallelism"] == workers

    service = find(objects, "Service")
    assert service["spec"]["clusterIP"] == "None" and spec["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    (port,) = [p["containerPort"] for p in c["ports"] if p["name"] == "tf-worker"]
    assert [p["port"] for p in service["spec"]["ports"]] == [port]

    env = _env(c)
    _index_from_annotation(c)
    names = [e["name"] for e in c["env"]]
    assert names.index("JOB_COMPLETION_INDEX") < names.index("TF_CONFIG"), "$(VAR) expands only earlier variables"
    _retried_unless_bad_input(job)
    run_dirs = set()
    for index in range(workers):
        tf_config = json.loads(substitute(env["TF_CONFIG"]["value"], {"JOB_COMPLETION_INDEX": index}))
        assert tf_config["cluster"]["worker"] == [f"{job['metadata']['name']}-{i}.{service['metadata']['name']}:{port}"
                                                  for i in range(workers)]
        assert tf_config["task"] == {"type": "worker", "index": index}
        config = _train_config([substitute(a, _pod_variables(job, index)) for a in c["args"]])
        assert _on_volume(config.runs_dir + "/x", c, spec)
        run_dirs.add((config.runs_dir, _run_name(job, c, index)))
    assert len(run_dirs) == 1, "the workers share one run folder (the chief writes it)"


def test_jobs_run_the_project_image_at_the_package_version(rendered):
    version = pyproject()["project"]["version"]
    images = {where: {c["image"] for w in workloads(objects) for c in containers(pod_spec(w))}
              for where, objects in rendered.items() if where.startswith("k8s/jobs/")}
    assert images["k8s/jobs/prepare"] == {f"dfdetect:{version}"}
    assert images["k8s/jobs/train"] == images["k8s/jobs/train-multiworker"] == {f"dfdetect:{version}-gpu"}


# --- the project image ---------------------------------------------------------------------------

def _dockerfile():
    """(instruction, argument) pairs of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_is_pinned_non_root_and_installs_the_package(rendered):
    steps = _dockerfile()
    stages = [arg.split() for op, arg in steps if op == "FROM"]
    names = set()
    for stage in stages:
        image = stage[0]
        assert image == "python:3.11-slim-bookworm" or image in names, \
            f"base image {image} must be the pinned slim Python (or a stage built from it)"
        names.add(stage[-1])
    assert {"web", "full"} <= names, "the thin web image and the full one are build targets"
    assert pyproject()["project"]["requires-python"] == ">=3.11,<3.12"
    user = [arg for op, arg in steps if op == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "the last USER must be a numeric, non-root user"
    project_pods = [(where, w) for where, objects in rendered.items() for w in workloads(objects)
                    if any(c["image"].startswith(("dfdetect:", "dfdetect-web:")) for c in containers(pod_spec(w)))]
    assert {w["metadata"]["name"] for _, w in project_pods} >= {"dfdetect-prepare", "dfdetect-train", WEB_NAME}
    for where, w in project_pods:
        assert pod_spec(w)["securityContext"]["runAsUser"] == int(uid), f"{where} {kv.object_name(w)}"
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    extras = re.findall(r"pip install \"\.\[([a-z,-]+)\]\"", runs)
    # The web image: the base install (the thin client) and the web extra, nothing else. The full
    # image: every stage's extra (the jobs, the web front, locust workers), through `all`.
    assert extras == ["web", "all"], extras
    optional = pyproject()["project"]["optional-dependencies"]
    stage_extras = set(optional) - {"test", "all", "dev", "client", "demo"}
    assert {"train", "export", "serve", "web", "loadtest"} == stage_extras
    (everything,) = optional["all"]
    assert set(everything.split("[")[1].rstrip("]").split(",")) == stage_extras
    assert optional["client"] == [], "the client is the base install"
    assert not any(d.split("=")[0].startswith(("tensorflow", "keras")) for d in pyproject()["project"]["dependencies"])
    assert [json.loads(arg) for op, arg in steps if op == "ENTRYPOINT"] == [["dfdetect"]]


def test_docker_build_context_holds_what_the_package_needs(tmp_path):
    """What the Dockerfile copies (and .dockerignore lets through) builds the package."""
    steps = _dockerfile()
    sources = [src.rstrip("/") for op, arg in steps if op == "COPY" and not arg.startswith("--from")
               for src in arg.split()[:-1]]
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", ".dockerignore starts by excluding everything"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert set(sources) == allowed
    package_dirs = set(pyproject()["tool"]["setuptools"]["package-dir"].values())
    assert set(sources) == {"pyproject.toml", "setup.py", "README.md", "loadtests"} | package_dirs, \
        "the image must copy every folder pyproject.toml maps onto the dfdetect package, and the locust users"
    # The locust users land in the final image beside the installed package, whole (the locustfiles
    # import the `_` helpers next to them).
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM"):]
    (loadtests,) = [arg.split() for op, arg in final if op == "COPY" and arg.split()[0].rstrip("/") == "loadtests"]
    assert loadtests[1].rstrip("/") == "/opt/dfdetect/loadtests"
    assert {"grpc_user.py", "rest_user.py", "_common.py", "_summary.py"} <= {f.name for f in (ROOT / "loadtests").iterdir()}
    context = tmp_path / "context"
    for src in sorted(set(sources) - {"loadtests"}):
        if (ROOT / src).is_dir():
            # As .dockerignore has it: the wire protos' modules are compiled by the build, not copied.
            shutil.copytree(ROOT / src, context / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*_pb2.py"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy(ROOT / src, context / src)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(context)], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp_path / "dist").glob("dfdetect-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "dfdetect/cli.py" in names and "dfdetect/training/prepare.py" in names
    assert {f"dfdetect/serving/{f}" for f in SERVING_FILES} <= set(names)
    assert {"dfdetect/wire/apis_pb2.py", "dfdetect/wire/tensor_pb2.py"} <= set(names), "setup.py compiles the protos"
    assert "dfdetect/wire/*_pb2.py" in ignore


# --- make deploy TARGET=k8s ----------------------------------------------------------------------

def _deploy(*args, kubeconfig, path="/usr/local/bin:/usr/bin:/bin", **env):
    env = {"PATH": path, "HOME": str(kubeconfig.parent), "KUBECONFIG": str(kubeconfig), **env}
    return subprocess.run(["bash", str(K8S / "deploy.sh"), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_deploy_refuses_an_unknown_overlay(tmp_path):
    result = _deploy("tpu", kubeconfig=tmp_path / "none")
    assert result.returncode == 2
    assert "unknown overlay 'tpu'" in result.stderr
    for overlay in OVERLAYS:
        assert Path(overlay).name in result.stderr


def test_deploy_fails_clearly_without_a_cluster(tmp_path):
    _require_kubectl()
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = _deploy("gpu", kubeconfig=empty)
    assert result.returncode == 2 and "no cluster configured" in result.stderr

    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "nobody", "user": {"token": "none"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}]}))
    result = _deploy("cpu", kubeconfig=unreachable)
    assert result.returncode == 2 and "cannot reach the cluster of kubectl context 'nowhere'" in result.stderr


# A kubectl for a cluster that answers: the calls are logged, `kustomize` is the real kubectl's, `apply`
# keeps what it was given, `rollout status` succeeds except for the deployment in FAIL_ROLLOUT.
FAKE_KUBECTL = r"""#!/bin/bash
printf '%s\n' "$*" >> "$KUBECTL_LOG"
case "$*" in
  "config current-context") echo test-cluster ;;
  *"get --raw /version") echo '{"gitVersion": "v1.32.0"}' ;;
  kustomize\ *) exec "$REAL_KUBECTL" "$@" ;;
  apply\ *) cp "${@: -1}" "$KUBECTL_APPLIED" ;;
  *"rollout status deployment/$FAIL_ROLLOUT "*) echo "error: timed out waiting for the condition" >&2; exit 1 ;;
  *"rollout status deployment/"*) echo "successfully rolled out" ;;
  *) echo "kubectl (test): unexpected call: $*" >&2; exit 3 ;;
esac
"""


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deploy_applies_the_overlay_and_waits_for_serving_then_the_web_front(rendered, overlay, tmp_path):
    _require_kubectl()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    log, applied = tmp_path / "kubectl.log", tmp_path / "applied.yaml"
    env = dict(kubeconfig=tmp_path / "kubeconfig", path=f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
               REAL_KUBECTL=shutil.which("kubectl"), KUBECTL_LOG=str(log), KUBECTL_APPLIED=str(applied))
    name = Path(overlay).name

    result = _deploy(name, **env, FAIL_ROLLOUT="")
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    # Rendered with kustomize's default restrictions, as `kubectl apply -k` and GitOps tools render.
    assert any(c.startswith("kustomize ") and "load-restrictor" not in c for c in calls), calls
    assert [o for o in yaml.safe_load_all(applied.read_text()) if o] == rendered[overlay]
    rollouts = [re.fullmatch(r"--namespace (\S+) rollout status deployment/(\S+) --timeout=\S+", c).groups()
                for c in calls if "rollout status" in c]
    # Every Deployment the overlay renders, serving first: the web pods are ready only once it answers.
    deployments = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in rendered[overlay]
                   if o["kind"] == "Deployment"}
    assert set(rollouts) == deployments and len(rollouts) == len(deployments)
    assert [name for _, name in rollouts] == [SERVING_NAME, WEB_NAME]
    assert f"{WEB_NAME}.dfdetect:8080" in result.stderr

    log.unlink()
    result = _deploy(name, **env, FAIL_ROLLOUT=WEB_NAME)
    assert result.returncode == 1
    assert f"the rollout of {WEB_NAME} did not finish" in result.stderr
    assert f"logs -l app.kubernetes.io/name={WEB_NAME}" in result.stderr


FAKE_CLUSTER_KUBECTL = r"""#!/bin/bash
# A stand-in kubectl for the whole train -> export -> deploy sequence: renders with the real one,
# records what is applied, reports Jobs complete (or $FAIL_JOB failed) and rollouts done.
printf '%s\n' "$*" >> "$KUBECTL_LOG"
case "$*" in
  "config current-context") echo test-cluster ;;
  *"get --raw /version") echo '{"gitVersion": "v1.32.0"}' ;;
  kustomize\ *) exec "$REAL_KUBECTL" "$@" ;;
  "delete job "*) ;;
  apply\ *) n=$(ls "$KUBECTL_APPLIED" | wc -l); cp "${@: -1}" "$KUBECTL_APPLIED/$n.yaml" ;;
  "get job $FAIL_JOB "*) echo '{"status": {"failed": 3, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}}' ;;
  "get job "*) echo '{"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}' ;;
  "logs "*) printf '[pod/%s-x/train] epoch 3/20\n[pod/%s-x/train] RuntimeError: out of memory\n' "$FAIL_JOB" "$FAIL_JOB" ;;
  *"rollout status deployment/"*) echo "successfully rolled out" ;;
  *) echo "kubectl (test): unexpected call: $*" >&2; exit 3 ;;
esac
"""


def test_train_export_deploy_runs_in_the_cluster_step_by_step(tmp_path):
    """`make train export deploy TARGET=k8s` against a stand-in kubectl: the training Job, then
    the export Job (the image and the model repository as variables), then the rollout; a failed
    Job stops the sequence with its pods' log tail."""
    _require_kubectl()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_CLUSTER_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)

    def make(fail_job: str):
        log, applied = tmp_path / f"log-{fail_job}", tmp_path / f"applied-{fail_job}"
        applied.mkdir()
        env = {"PATH": f"{bin_dir}:{ROOT / '.venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
               "KUBECONFIG": str(tmp_path / "kubeconfig"), "REAL_KUBECTL": shutil.which("kubectl"),
               "KUBECTL_LOG": str(log), "KUBECTL_APPLIED": str(applied), "FAIL_JOB": fail_job}
        result = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "train", "export", "deploy",
                                 "TARGET=k8s", "OVERLAY=cpu", "IMAGE=registry.example/dfdetect:9",
                                 "K8S_MODEL_REPOSITORY=/models/repo"], capture_output=True, text=True, env=env,
                                timeout=300)
        docs = [[o for o in yaml.safe_load_all(p.read_text()) if o]
                for p in sorted(applied.glob("*.yaml"), key=lambda p: int(p.stem))]
        return result, log.read_text().splitlines(), docs

    result, calls, applied = make(fail_job="none")
    assert result.returncode == 0, result.stderr
    jobs = [[o for o in doc if o["kind"] == "Job"] for doc in applied[:2]]
    assert [j[0]["metadata"]["name"] for j in jobs] == ["dfdetect-train", "dfdetect-export"]
    for (job,) in jobs:
        assert {c["image"] for c in job["spec"]["template"]["spec"]["containers"]} == {"registry.example/dfdetect:9"}
    (export_container,) = jobs[1][0]["spec"]["template"]["spec"]["containers"]
    assert "--model-repository=/models/repo" in export_container["args"]
    assert any(o["kind"] == "Deployment" and o["metadata"]["name"] == SERVING_NAME for o in applied[2])
    steps = [c.split()[0] + " " + c.split()[1] for c in calls if c.startswith(("delete job", "get job"))]
    assert steps == ["delete job", "get job", "delete job", "get job"], calls  # each waits for its Job
    assert calls.index(next(c for c in calls if "get job dfdetect-train" in c)) < \
        calls.index(next(c for c in calls if "delete job dfdetect-export" in c)), "export starts after training"
    assert any("rollout status deployment/" in c for c in calls)

    result, calls, applied = make(fail_job="dfdetect-train")
    assert result.returncode != 0
    assert "job dfdetect/dfdetect-train failed: Job has reached the specified backoff limit" in result.stderr
    assert "RuntimeError: out of memory" in result.stderr, "the failing pod's log tail"
    assert len(applied) == 1 and not any("dfdetect-export" in c for c in calls), "nothing after the failed step"
