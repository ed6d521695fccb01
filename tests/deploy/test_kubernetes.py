"""deploy/kubernetes: valid objects for the Kubernetes API, saying what the code reads and serves.

Built-in kinds are validated by ``kubernetes-validate`` in strict mode (an unknown field
fails) for the oldest Kubernetes the manifests target and the newest it ships; KEDA's and the
Prometheus Operator's kinds against the structural schemas in ``schemas/`` (their README
says what those are), or the complete published CRDs when ``SHARDLINE_CRD_DIR`` names them.
The base is read here the way kustomize builds it (resources and the namespace; nothing else
is used); where ``kubectl`` is installed, its kustomize builds the base, the premium overlay
and the HPA component too.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import typing
import urllib.parse
import urllib.request

import jsonschema
import kubernetes_validate
import prometheus_client
import pytest
import yaml

from shared import config, health, keys, topology
from tests import test_deploy
from tests.deploy import exported

ROOT: typing.Final = pathlib.Path(__file__).resolve().parents[2]
KUBE: typing.Final = ROOT / "deploy" / "kubernetes"
SCHEMAS: typing.Final = pathlib.Path(__file__).resolve().parent / "schemas"
#: The oldest Kubernetes the manifests are for (policy/v1 PDBs with unhealthyPodEvictionPolicy,
#: autoscaling/v2, the restricted Pod Security Standard), and the newest the package knows.
VERSIONS: typing.Final = ("1.30", kubernetes_validate.latest_version())
CUSTOM_SCHEMAS: typing.Final = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh-v1alpha1-scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh-v1alpha1-triggerauthentication.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com-v1-servicemonitor.json",
}
#: The published CRD files (SHARDLINE_CRD_DIR) by kind, and the version served.
CRD_FILES: typing.Final = {
    "ScaledObject": ("keda.sh_scaledobjects.yaml", "v1alpha1"),
    "TriggerAuthentication": ("keda.sh_triggerauthentications.yaml", "v1alpha1"),
    "ServiceMonitor": ("monitoring.coreos.com_servicemonitors.yaml", "v1"),
}
#: The RabbitMQ scaler's trigger parameters (https://keda.sh/docs/2.16/scalers/rabbitmq-queue/).
RABBITMQ_PARAMETERS: typing.Final = frozenset(
    {
        "host", "hostFromEnv", "usernameFromEnv", "passwordFromEnv", "protocol", "mode",
        "value", "activationValue", "queueName", "vhostName", "unsafeSsl", "timeout",
        "excludeUnacknowledged", "useRegex", "pageSize", "operation",
    }
)  # fmt: skip
WORKLOADS: typing.Final = frozenset({"Deployment", "Job"})
#: What kustomize may do in a kustomization this module reads itself.
UNDERSTOOD: typing.Final = frozenset(
    {"apiVersion", "kind", "resources", "namespace", "images", "configurations"}
)

Object = dict[str, typing.Any]


# --- reading the manifests ------------------------------------------------------------------


def kustomization(directory: pathlib.Path) -> Object:
    return typing.cast("Object", yaml.safe_load((directory / "kustomization.yaml").read_text()))


def build(directory: pathlib.Path) -> list[Object]:
    """The objects ``kubectl kustomize directory`` makes, for a kustomization that only lists
    resources (files and directories) and sets the namespace."""
    spec = kustomization(directory)
    assert set(spec) <= UNDERSTOOD, f"{directory}: {sorted(set(spec) - UNDERSTOOD)}"
    found: list[Object] = []
    for entry in spec["resources"]:
        path = directory / entry
        if path.is_dir():
            found.extend(build(path))
        else:
            found.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    namespace = spec.get("namespace")
    if namespace is not None:
        for item in found:
            if item["kind"] != "Namespace":
                item["metadata"]["namespace"] = namespace
    return found


@pytest.fixture(scope="module")
def objects() -> list[Object]:
    return build(KUBE)


def of_kind(found: list[Object], kind: str) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in found if o["kind"] == kind}


def pod_spec(workload: Object) -> Object:
    return typing.cast("Object", workload["spec"]["template"]["spec"])


def workloads(found: list[Object]) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in found if o["kind"] in WORKLOADS}


def environment(workload: Object, found: list[Object]) -> dict[str, str]:
    """Every variable the container gets: its ConfigMaps' keys, then its own ``env``."""
    (container,) = pod_spec(workload)["containers"]
    maps = of_kind(found, "ConfigMap")
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        values.update(maps[source["configMapRef"]["name"]]["data"])
    for variable in container.get("env", []):
        assert set(variable) == {"name", "value"}, f"{variable['name']} is not a plain value"
        values[variable["name"]] = variable["value"]
    return values


def component(workload: Object) -> str:
    return typing.cast("str", workload["metadata"]["labels"]["app.kubernetes.io/component"])


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed (its kustomize needs no cluster)")
    return found


def kustomize(directory: pathlib.Path) -> list[Object]:
    built = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


def identity(item: Object) -> tuple[str, str]:
    return item["kind"], item["metadata"]["name"]


# --- schemas --------------------------------------------------------------------------------


def validate_builtin(item: Object, version: str) -> None:
    kubernetes_validate.validate(item, version, strict=True)


def validate_custom(item: Object) -> None:
    schema = json.loads((SCHEMAS / CUSTOM_SCHEMAS[item["apiVersion"], item["kind"]]).read_text())
    jsonschema.validate(item, schema, cls=jsonschema.Draft202012Validator)
    # The nested types that are Kubernetes' own, checked by Kubernetes' schema.
    if item["kind"] == "ScaledObject":
        behavior = item["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
        if "behavior" in behavior:
            validate_builtin(hpa_holding(behavior["behavior"]), VERSIONS[0])
        for trigger in item["spec"]["triggers"]:
            if trigger["type"] == "rabbitmq":
                validate_rabbitmq_trigger(trigger["metadata"])
    if item["kind"] == "ServiceMonitor":
        validate_builtin(pdb_holding(item["spec"]["selector"]), VERSIONS[0])


def hpa_holding(behavior: Object) -> Object:
    """An HPA around KEDA's ``behavior``, which is autoscaling/v2's HPA behavior."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "behavior"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 1,
            "behavior": behavior,
        },
    }


def pdb_holding(selector: Object) -> Object:
    """A PodDisruptionBudget around a ServiceMonitor's ``selector``, a LabelSelector."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "selector"},
        "spec": {"maxUnavailable": 1, "selector": selector},
    }


def validate_rabbitmq_trigger(metadata: dict[str, str]) -> None:
    unknown = set(metadata) - RABBITMQ_PARAMETERS
    assert not unknown, f"not a RabbitMQ scaler parameter: {sorted(unknown)}"
    assert metadata["mode"] in {"QueueLength", "MessageRate"}
    assert metadata.get("protocol", "auto") in {"auto", "amqp", "http"}
    assert float(metadata["value"]) > 0
    assert "host" not in metadata, "the broker URL (with its password) belongs in a secret"


def validate(item: Object, version: str) -> None:
    if (item["apiVersion"], item["kind"]) in CUSTOM_SCHEMAS:
        validate_custom(item)
    else:
        validate_builtin(item, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_for_kubernetes(objects: list[Object], version: str) -> None:
    kinds = {o["kind"] for o in objects}
    assert {
        "Namespace", "ConfigMap", "Deployment", "Job", "Service", "PodDisruptionBudget",
        "ScaledObject", "TriggerAuthentication", "ServiceMonitor",
    } <= kinds  # fmt: skip
    for item in objects:
        validate(item, version)


def test_hpa_component_objects_are_valid() -> None:
    (hpa,) = yaml.safe_load_all((KUBE / "hpa" / "worker-hpa.yaml").read_text())
    for version in VERSIONS:
        validate_builtin(hpa, version)


def test_a_misspelt_or_misplaced_field_fails_validation(objects: list[Object]) -> None:
    """Strict: what the API server would drop (or reject) fails here, for every kind."""
    gateway = copy.deepcopy(of_kind(objects, "Deployment")["gateway"])
    container = pod_spec(gateway)["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(gateway, VERSIONS[0])
    scaled = copy.deepcopy(of_kind(objects, "ScaledObject")["worker"])
    scaled["spec"]["minReplicas"] = 2  # the HPA's name, not KEDA's minReplicaCount
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(scaled)
    scaled = copy.deepcopy(of_kind(objects, "ScaledObject")["worker"])
    scaled["spec"]["triggers"][0]["metadata"]["queue"] = "x"
    with pytest.raises(AssertionError, match="RabbitMQ scaler parameter"):
        validate_custom(scaled)
    scaled = copy.deepcopy(of_kind(objects, "ScaledObject")["worker"])
    scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "policies"
    ][0]["kind"] = "Percent"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_custom(scaled)
    monitor = copy.deepcopy(of_kind(objects, "ServiceMonitor")["shardline"])
    monitor["spec"]["endpoints"][0]["targetport"] = 8080
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(monitor)
    monitor = copy.deepcopy(of_kind(objects, "ServiceMonitor")["shardline"])
    monitor["spec"]["selector"]["matchLabel"] = {"a": "b"}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_custom(monitor)


def crd_schema(directory: pathlib.Path, kind: str) -> Object:
    """A published CRD's openAPIV3Schema, closed where Kubernetes prunes unknown fields."""
    file_name, served = CRD_FILES[kind]
    crd = yaml.safe_load((directory / file_name).read_text())
    (version,) = (v for v in crd["spec"]["versions"] if v["name"] == served)
    schema = typing.cast("Object", version["schema"]["openAPIV3Schema"])

    def close(node: object) -> None:
        if isinstance(node, dict):
            structural = "properties" in node and "additionalProperties" not in node
            if structural and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def test_custom_resources_follow_the_published_crds(objects: list[Object]) -> None:
    """Against the complete CRDs, where SHARDLINE_CRD_DIR holds them (schemas/README.md)."""
    directory = os.environ.get("SHARDLINE_CRD_DIR")
    if not directory:
        pytest.skip("SHARDLINE_CRD_DIR is not set (the published CRD files)")
    checked = 0
    for item in objects:
        if item["kind"] in CRD_FILES:
            jsonschema.validate(item, crd_schema(pathlib.Path(directory), item["kind"]))
            checked += 1
    assert checked == 3
    broken = copy.deepcopy(of_kind(objects, "ScaledObject")["worker"])
    broken["spec"]["minReplicas"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schema(pathlib.Path(directory), "ScaledObject"))


# --- the kustomizations ---------------------------------------------------------------------


def test_every_manifest_is_listed_in_a_kustomization() -> None:
    listed: set[pathlib.Path] = set()
    for spec_file in KUBE.rglob("kustomization.yaml"):
        spec = yaml.safe_load(spec_file.read_text())
        directory = spec_file.parent
        for entry in [
            *spec.get("resources", []),
            *spec.get("configurations", []),
            *(p["path"] for p in spec.get("patches", []) if "path" in p),
        ]:
            listed.add((directory / entry).resolve())
    values = KUBE / "hpa" / "prometheus-adapter.values.yaml"  # Helm's, not kustomize's
    for manifest in KUBE.rglob("*.yaml"):
        if manifest.name != "kustomization.yaml" and manifest != values:
            assert manifest.resolve() in listed, f"{manifest.relative_to(ROOT)} is not deployed"


def test_kustomize_builds_the_base_as_read_here(objects: list[Object]) -> None:
    built = kustomize(KUBE)
    assert sorted(map(identity, built)) == sorted(map(identity, objects))
    by_identity = {identity(o): o for o in objects}
    for item in built:
        assert item == by_identity[identity(item)], identity(item)


def test_the_premium_overlay_is_another_pool_with_its_own_token_and_queues(
    objects: list[Object],
) -> None:
    premium = kustomize(KUBE / "premium")
    names = {identity(o) for o in premium}
    main = {identity(o) for o in objects}
    assert not names & main, "the premium pool would replace objects of pool main"
    for version in VERSIONS:
        for item in premium:
            validate(item, version)
    both = [*objects, *premium]
    for name, workload in workloads(premium).items():
        assert name.endswith("-premium")
        assert workload["metadata"]["labels"]["shardline.dev/pool"] == "premium"
        env = environment(workload, both)
        assert env["POOL"] == "premium"
        files = secret_files(workload)
        assert files[env["DISCORD_TOKEN_FILE"]] == ("shardline-premium", "discord_token")
    assert of_kind(premium, "Deployment")["gateway-premium"]["spec"]["replicas"] == 1
    check_scalers(premium, both)
    check_selectors(premium)


def test_the_hpa_component_replaces_keda(tmp_path: pathlib.Path) -> None:
    copied = tmp_path / "kubernetes"
    shutil.copytree(KUBE, copied)
    spec = copied / "kustomization.yaml"
    text = spec.read_text()
    assert "# components:\n#   - hpa\n" in text
    spec.write_text(text.replace("# components:\n#   - hpa\n", "components:\n  - hpa\n"))
    built = kustomize(copied)
    kinds = {o["kind"] for o in built}
    assert "ScaledObject" not in kinds
    assert "TriggerAuthentication" not in kinds
    (hpa,) = of_kind(built, "HorizontalPodAutoscaler").values()
    assert hpa["metadata"]["namespace"] == "shardline"
    check_scalers(built, built)


# --- what the code reads --------------------------------------------------------------------


def variables_read(settings: typing.Callable[[dict[str, str]], object]) -> set[str]:
    """What one settings class asks the environment for (``LAVALINK_URL`` set, so what is
    read only beside it is asked for too)."""
    env = test_deploy.Recording(
        {
            "DISCORD_TOKEN": "x.y.z",
            "SHARD_COUNT": "1",
            "LAVALINK_URL": "http://lavalink:2333",
            "LAVALINK_PASSWORD": "p",
        }
    )
    settings(env)
    return env.asked


def test_every_variable_set_is_one_the_process_reads(objects: list[Object]) -> None:
    """Per process: a gateway gets nothing only workers read (MONGO_URL, WORKER_PLUGINS...),
    a worker nothing only gateways read (ADMIN_KEY...)."""
    read = {
        "gateway": variables_read(config.GatewaySettings.from_env),
        "worker": variables_read(config.WorkerSettings.from_env),
    }
    for name, workload in workloads(objects).items():
        known = read["gateway" if component(workload) == "gateway" else "worker"]
        unknown = set(environment(workload, objects)) - known
        assert not unknown, f"{name} sets {sorted(unknown)} that it does not read"


def secret_files(workload: Object) -> dict[str, tuple[str, str]]:
    """Every file the pod's secret volumes hold: path -> (secret, key)."""
    (container,) = pod_spec(workload)["containers"]
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    files: dict[str, tuple[str, str]] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        sources = [s["secret"] for s in volume.get("projected", {}).get("sources", [])]
        if "secret" in volume:
            sources.append({"name": volume["secret"]["secretName"], **volume["secret"]})
        for source in sources:
            assert mount.get("readOnly") is True
            for item in source["items"]:
                path = f"{mount['mountPath']}/{item['path']}"
                files[path] = (source["name"], item["key"])
    return files


def test_secrets_are_files_never_values(objects: list[Object]) -> None:
    for name, workload in workloads(objects).items():
        env = environment(workload, objects)
        assert not test_deploy.SECRET_VARIABLES & set(env), f"{name} sets a secret directly"
        files = secret_files(workload)
        file_variables = {v: p for v, p in env.items() if v.endswith("_FILE")}
        assert {v.removesuffix("_FILE") for v in file_variables} <= test_deploy.SECRET_VARIABLES
        for variable, path in file_variables.items():
            assert path in files, f"{name}: {variable} names {path}, which no secret mounts"
        assert {"DISCORD_TOKEN_FILE", "AMQP_URL_FILE", "REDIS_URL_FILE"} <= set(env)
        # No secret reaches a container any other way than as one of these files.
        assert set(files) == set(file_variables.values()), f"{name} mounts unused secrets"
    for config_map in of_kind(objects, "ConfigMap").values():
        assert not test_deploy.SECRET_VARIABLES & set(config_map["data"])
        for value in config_map["data"].values():
            assert "@" not in value, "a URL with credentials in a ConfigMap"
    assert not of_kind(objects, "Secret"), "secrets are created by the operator, not shipped"


def test_gateways_hold_the_admin_key_and_nothing_else_does(objects: list[Object]) -> None:
    for name, workload in workloads(objects).items():
        env = environment(workload, objects)
        admin = {path for path, (secret, _) in secret_files(workload).items() if "admin" in secret}
        if component(workload) == "gateway":
            assert env["ADMIN_KEY_FILE"] in admin, name
        else:
            assert "ADMIN_KEY_FILE" not in env, f"{name} could sign operator actions"
            assert not admin, f"{name} mounts the admin key"


def test_the_settings_load_from_what_the_pods_get(
    objects: list[Object], tmp_path: pathlib.Path
) -> None:
    """The real settings classes, given each pod's environment and its secret files (with
    values of the documented shapes), read what the Deployment means."""
    values = {
        "discord_token": "x.y.z",
        "amqp_url": "amqp://shardline:pw@rabbitmq:5672/",
        "redis_url": "redis://:pw@redis:6379/0",
        "mongo_url": "mongodb://shardline:pw@mongo:27017/shardline",
        "lavalink_password": "pw",
        "admin_key": "k" * 64,
    }
    for name, workload in workloads(objects).items():
        env = environment(workload, objects)
        for path, (_, key) in secret_files(workload).items():
            local = tmp_path / name / path.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(values[key])
            env = {v: str(local) if p == path else p for v, p in env.items()}
        if component(workload) == "gateway":
            gateway = config.GatewaySettings.from_env(env)
            assert gateway.admin_key is not None
            assert gateway.shard_ids is None, "gateways share the pool through leases"
            core = gateway.core
        else:
            worker = config.WorkerSettings.from_env(env)
            core = worker.core
            expected = {"worker": {"events"}, "services": {"services"}}.get(component(workload))
            if expected is not None:
                assert worker.roles == expected, name
        assert core.token.reveal() == "x.y.z"
        assert core.pool == workload["metadata"]["labels"]["shardline.dev/pool"]
        assert core.log_format == "json"


def test_images_and_commands_are_the_stacks(objects: list[Object]) -> None:
    stack = test_deploy.load("stack.yml")
    compose = test_deploy.load("docker-compose.yml")
    (default_image,) = re.findall(r"\$\{SHARDLINE_IMAGE:-([^}]+)\}", stack["x-app"]["image"])
    commands = {
        "gateway": stack["services"]["gateway-main"]["command"],
        "worker": stack["services"]["worker"]["command"],
        "services": stack["services"]["services-main"]["command"],
        "sync-commands": compose["services"]["worker-sync"]["command"],
    }
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in kustomization(KUBE)["images"]}
    assert images == {"shardline": default_image}
    for name, workload in workloads(objects).items():
        (container,) = pod_spec(workload)["containers"]
        assert container["image"] == default_image, name
        assert container["command"] == commands[component(workload)], name


def dockerfile_user() -> tuple[int, int]:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (gid,) = re.findall(r"groupadd --system --gid (\d+)", dockerfile)
    (uid,) = re.findall(r"useradd --system --uid (\d+)", dockerfile)
    return int(uid), int(gid)


def test_pods_run_as_the_images_user_without_privileges(objects: list[Object]) -> None:
    uid, gid = dockerfile_user()
    for name, workload in workloads(objects).items():
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (uid, gid, gid), name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        # A read-only root: tempfile (and bot.cpu's forkserver socket) need a writable /tmp.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], name
        # Secret files readable by the pod's group only.
        for volume in volumes.values():
            if "projected" in volume:
                assert volume["projected"]["defaultMode"] == 0o440
    namespace = of_kind(objects, "Namespace")["shardline"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_container_requests_and_limits_cpu_and_memory(objects: list[Object]) -> None:
    def quantity(value: str) -> float:
        units = {"m": 1e-3, "Mi": 2**20, "Gi": 2**30, "": 1.0}
        found = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Mi|Gi|)", value)
        assert found is not None, value
        number, unit = found.groups()
        return float(number) * units[unit]

    for name, workload in workloads(objects).items():
        (container,) = pod_spec(workload)["containers"]
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            assert 0 < request <= quantity(resources["limits"][resource]), (name, resource)


# --- probes ---------------------------------------------------------------------------------


def probes(workload: Object) -> dict[str, Object]:
    (container,) = pod_spec(workload)["containers"]
    return {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}


def test_probes_use_the_health_port_and_the_right_endpoint(objects: list[Object]) -> None:
    """Startup and liveness on /livez (a gateway queued to identify is live), readiness on
    /readyz, all on the container port HEALTH_PORT names."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    (image_port,) = re.findall(r"HEALTH_PORT=(\d+)", dockerfile)
    for name, workload in workloads(objects).items():
        if workload["kind"] == "Job":
            assert "startupProbe" not in pod_spec(workload)["containers"][0]
            continue
        (container,) = pod_spec(workload)["containers"]
        port = int(environment(workload, objects)["HEALTH_PORT"])
        assert port == int(image_port)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        paths = {}
        for kind, probe in probes(workload).items():
            get = probe["httpGet"]
            assert ports[get["port"]] == port, (name, kind)
            paths[kind] = get["path"]
            assert probe["timeoutSeconds"] < probe["periodSeconds"]
        assert paths == {
            "startupProbe": "/livez",
            "livenessProbe": "/livez",
            "readinessProbe": "/readyz",
        }, name


def probe_passes(port: int, path: str) -> bool:
    """What the kubelet's httpGet probe decides: a status from 200 to 399 passes."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return 200 <= answer.status < 400
    except OSError:
        return False


async def test_the_probes_against_the_real_health_server(objects: list[Object]) -> None:
    """The gateway's probes, sent to the real health server of a process that is identifying
    (live, not ready), then stalled (not live): it is never restarted for identifying, and it
    is restarted for stalling."""
    gateway = of_kind(objects, "Deployment")["gateway"]
    alive: list[str | None] = [None]
    server = health.HealthServer(
        0,
        ready=lambda: "shards not connected: [12, 13]",
        alive=lambda: alive[0],
        metrics=prometheus_client.CollectorRegistry(),
        host="127.0.0.1",
    )
    await server.start()
    try:
        found = {
            kind: await asyncio.to_thread(probe_passes, server.port, probe["httpGet"]["path"])
            for kind, probe in probes(gateway).items()
        }
        assert found == {"startupProbe": True, "livenessProbe": True, "readinessProbe": False}
        alive[0] = "shards neither connected nor queued to identify for over 180 s: [3]"
        liveness = probes(gateway)["livenessProbe"]["httpGet"]["path"]
        assert not await asyncio.to_thread(probe_passes, server.port, liveness)
        metrics = await asyncio.to_thread(probe_passes, server.port, "/metrics")
        assert metrics
    finally:
        await server.close()


def seconds_of(probe: Object) -> int:
    return int(probe["periodSeconds"]) * int(probe["failureThreshold"])


def test_gateways_roll_one_at_a_time_and_wait_out_an_identify(objects: list[Object]) -> None:
    """The rollout waits for each new gateway's readiness (every shard connected) for as long
    as the pool's cold start takes: ceil(shards / max_concurrency) x 5 s, plus the start
    before the first probe and minReadySeconds (the arithmetic in pool/gateway.yaml)."""
    stack = test_deploy.load("stack.yml")["services"]["gateway-main"]
    swarm_grace = int(stack["stop_grace_period"].removesuffix("s"))
    swarm_delay = int(stack["deploy"]["update_config"]["delay"].removesuffix("s"))
    gateway = of_kind(objects, "Deployment")["gateway"]
    spec = gateway["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    # Each new gateway settles as long as Swarm waits, well within Lavalink's resume window.
    assert swarm_delay <= spec["minReadySeconds"] < 60
    annotations = gateway["metadata"]["annotations"]
    shards = int(annotations["shardline.dev/identify-sized-for-shards"])
    concurrency = int(annotations["shardline.dev/identify-sized-for-max-concurrency"])
    identify = math.ceil(shards / concurrency) * keys.IDENTIFY_WINDOW
    assert identify == 320
    startup = seconds_of(probes(gateway)["startupProbe"])
    assert spec["progressDeadlineSeconds"] >= identify + startup + spec["minReadySeconds"]
    # The start before the health server answers includes waiting for the playground.
    assert startup > 30  # PLAYGROUND_WAIT's default
    assert pod_spec(gateway)["terminationGracePeriodSeconds"] > swarm_grace


def test_workers_start_first_and_drain_before_they_are_killed(objects: list[Object]) -> None:
    stack = test_deploy.load("stack.yml")["services"]
    deployments = of_kind(objects, "Deployment")
    for name in ("worker", "services"):
        spec = deployments[name]["spec"]
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert spec["strategy"]["rollingUpdate"]["maxSurge"] >= 1
        grace = pod_spec(deployments[name])["terminationGracePeriodSeconds"]
        swarm = stack["worker" if name == "worker" else "services-main"]["stop_grace_period"]
        assert grace >= int(swarm.removesuffix("s")) > 30  # DRAIN_TIMEOUT, worker/app.py
    assert "replicas" not in deployments["worker"]["spec"], "the autoscaler owns the count"


# --- selectors, budgets, scaling, monitoring ------------------------------------------------


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_selectors(found: list[Object]) -> None:
    """Every selector picks the pods of exactly one workload, and every Deployment's own."""
    pods = {
        name: w["spec"]["template"]["metadata"]["labels"] for name, w in workloads(found).items()
    }
    for name, deployment in of_kind(found, "Deployment").items():
        assert selects(deployment["spec"]["selector"]["matchLabels"], pods[name])
    for kind, path in (("PodDisruptionBudget", ("selector", "matchLabels")), ("Service", ())):
        for name, item in of_kind(found, kind).items():
            selector = item["spec"]["selector"]
            for key in path[1:]:
                selector = selector[key]
            chosen = [w for w, labels in pods.items() if selects(selector, labels)]
            assert len(chosen) == 1, f"{kind} {name} selects {chosen}"
            assert of_kind(found, "Deployment").get(chosen[0]) is not None


def test_selectors_budgets_and_services_pick_one_deployment_each(objects: list[Object]) -> None:
    check_selectors(objects)
    budgets = of_kind(objects, "PodDisruptionBudget")
    deployments = of_kind(objects, "Deployment")
    pods = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    covered = {
        n
        for budget in budgets.values()
        for n, labels in pods.items()
        if selects(budget["spec"]["selector"]["matchLabels"], labels)
    }
    assert covered == set(deployments), "every Deployment has a disruption budget"
    gateway_budget = next(
        b
        for b in budgets.values()
        if selects(b["spec"]["selector"]["matchLabels"], pods["gateway"])
    )
    assert gateway_budget["spec"]["maxUnavailable"] == 1


def check_scalers(found: list[Object], context: list[Object]) -> None:
    """What the ScaledObjects and HPAs watch is what their target consumes: the events and
    interactions queues of the target's namespace, pool and group (shared/topology.py)."""
    deployments = of_kind(found, "Deployment")
    watched: dict[str, set[str]] = {}
    for scaled in of_kind(found, "ScaledObject").values():
        target = scaled["spec"]["scaleTargetRef"]["name"]
        authentications = of_kind(found, "TriggerAuthentication")
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "rabbitmq"
            auth = authentications[trigger["authenticationRef"]["name"]]
            (ref,) = auth["spec"]["secretTargetRef"]
            assert (ref["parameter"], ref["key"]) == ("host", "amqp_url")
            watched.setdefault(target, set()).add(trigger["metadata"]["queueName"])
        assert scaled["spec"]["minReplicaCount"] >= 1, "an interaction needs a consumer"
    for hpa in of_kind(found, "HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]["name"]
        for metric in hpa["spec"]["metrics"]:
            assert metric["type"] == "External"
            assert metric["external"]["target"]["type"] == "AverageValue"
            name = metric["external"]["metric"]["name"]
            assert name in exported.WORKER
            assert name == "shardline_worker_queue_messages"
            watched.setdefault(target, set()).add(
                metric["external"]["metric"]["selector"]["matchLabels"]["queue"]
            )
        assert hpa["spec"]["minReplicas"] >= 1
    assert watched, "nothing scales the workers"
    for target, queues in watched.items():
        env = environment(deployments[target], context)
        settings = config.WorkerSettings.from_env({**env_without_files(env), "DISCORD_TOKEN": "x"})
        assert "events" in settings.roles, f"{target} consumes no events"
        names = topology.Topology(settings.core.namespace)
        assert queues == {
            names.worker_queue(settings.core.pool, settings.group),
            names.interaction_queue(settings.core.pool, settings.group),
        }, target


def env_without_files(env: dict[str, str]) -> dict[str, str]:
    """The non-secret settings of an environment (the secret files exist only in a pod)."""
    return {k: v for k, v in env.items() if not k.endswith("_FILE") and k != "LAVALINK_URL"}


def test_keda_scales_the_workers_on_the_queues_they_consume(objects: list[Object]) -> None:
    check_scalers(objects, objects)
    (scaled,) = of_kind(objects, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "worker",
    }


def test_the_hpa_alternative_watches_the_same_queues(objects: list[Object]) -> None:
    (hpa,) = yaml.safe_load_all((KUBE / "hpa" / "worker-hpa.yaml").read_text())
    with_hpa = [o for o in objects if o["kind"] not in {"ScaledObject", "TriggerAuthentication"}]
    check_scalers([*with_hpa, hpa], objects)
    adapter = yaml.safe_load((KUBE / "hpa" / "prometheus-adapter.values.yaml").read_text())
    (rule,) = adapter["rules"]["external"]
    assert rule["name"]["as"] == "shardline_worker_queue_messages"
    assert "shardline_worker_queue_messages" in rule["seriesQuery"]
    # One value per queue whatever the number of replicas reporting it.
    assert rule["metricsQuery"].startswith("max by (queue)")


def test_the_service_monitor_scrapes_every_process_as_the_alerts_expect(
    objects: list[Object],
) -> None:
    (monitor,) = of_kind(objects, "ServiceMonitor").values()
    spec = monitor["spec"]
    (endpoint,) = spec["endpoints"]
    assert endpoint["path"] == "/metrics"
    services = of_kind(objects, "Service")
    scraped = {}
    for name, service in services.items():
        labels = service["metadata"]["labels"]
        if not selects(spec["selector"]["matchLabels"], labels):
            continue
        (expression,) = spec["selector"]["matchExpressions"]
        if labels.get(expression["key"]) not in expression["values"]:
            continue
        (port,) = service["spec"]["ports"]
        assert port["name"] == endpoint["port"]
        assert service["spec"]["publishNotReadyAddresses"] is True, "identifying gateways too"
        scraped[name] = labels[spec["jobLabel"]]
    assert set(scraped) == set(services)
    deployments = of_kind(objects, "Deployment")
    jobs = {
        component(deployments[name]): scraped[service]
        for service, item in services.items()
        for name, d in deployments.items()
        if selects(item["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
    }
    assert jobs == {"gateway": "gateway", "worker": "worker", "services": "worker"}
    alerts = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    for job in set(jobs.values()):
        assert f'up{{job="{job}"}}' in alerts


# --- documentation --------------------------------------------------------------------------


def test_the_documented_secrets_are_the_ones_mounted(objects: list[Object]) -> None:
    """docs/kubernetes.md creates exactly the secrets and keys the pods and KEDA read."""
    guide = (ROOT / "docs" / "kubernetes.md").read_text()
    created: dict[str, set[str]] = {}
    for line in guide.replace("\\\n", " ").splitlines():
        command = re.search(r"kubectl -n shardline create secret generic (\S+)(.*)", line)
        if command is not None:
            keys_given = re.findall(r"--from-(?:file|literal)=(\w+)=", command.group(2))
            created.setdefault(command.group(1), set()).update(keys_given)
    mounted: dict[str, set[str]] = {}
    for workload in workloads(objects).values():
        for secret, key in secret_files(workload).values():
            mounted.setdefault(secret, set()).add(key)
    for secret, key in premium_secrets():
        mounted.setdefault(secret, set()).add(key)
    for authentication in of_kind(objects, "TriggerAuthentication").values():
        for ref in authentication["spec"]["secretTargetRef"]:
            mounted.setdefault(ref["name"], set()).add(ref["key"])
    assert created == mounted
    # KEDA's operator resolves the broker's host from its own namespace.
    (amqp_url,) = re.findall(r'"(amqp://[^"]+)" > amqp_url', guide)
    host = urllib.parse.urlsplit(amqp_url).hostname or ""
    assert re.fullmatch(r"[a-z0-9-]+\.[a-z0-9-]+\.svc", host), f"{host} has no namespace"
    assert "docs/kubernetes.md" in (ROOT / "README.md").read_text()


def premium_secrets() -> set[tuple[str, str]]:
    """The secrets the premium overlay's patch mounts (read without kustomize)."""
    found: set[tuple[str, str]] = set()
    for patch in yaml.safe_load_all((KUBE / "premium" / "pool.yaml").read_text()):
        for volume in patch["spec"]["template"]["spec"]["volumes"]:
            for source in volume["projected"]["sources"]:
                for item in source["secret"]["items"]:
                    found.add((source["secret"]["name"], item["key"]))
    return found


# --- the overlays, read without kustomize ---------------------------------------------------


def test_the_premium_overlay_patches_every_process_of_the_pool(objects: list[Object]) -> None:
    """What the overlay says, checked where kubectl (and so the build above) is missing: every
    workload of pool/ gets POOL=premium and the premium token, the scaler the premium queues,
    and the renamed objects take the pool label in their selectors too."""
    spec = kustomization(KUBE / "premium")
    assert spec["resources"] == ["../pool"]
    assert spec["nameSuffix"] == "-premium"
    (labels,) = spec["labels"]
    assert labels == {
        "pairs": {"shardline.dev/pool": "premium"},
        "includeSelectors": True,
        "includeTemplates": True,
    }
    pool = build(KUBE / "pool")
    patches = {
        identity(p): p for p in yaml.safe_load_all((KUBE / "premium" / "pool.yaml").read_text())
    }
    assert set(patches) == {identity(w) for w in workloads(pool).values()}
    for key, patch in patches.items():
        (container,) = patch["spec"]["template"]["spec"]["containers"]
        assert container["env"] == [{"name": "POOL", "value": "premium"}], key
        (volume,) = patch["spec"]["template"]["spec"]["volumes"]
        sources = [s["secret"] for s in volume["projected"]["sources"]]
        original = pool_volume_items(of_kind(pool, key[0])[key[1]])
        patched = {(item["key"], item["path"]): s["name"] for s in sources for item in s["items"]}
        # The same files as pool main's, only the token from the premium application.
        assert set(patched) == set(original), key
        for item, secret in patched.items():
            expected = "shardline-premium" if item[0] == "discord_token" else original[item]
            assert secret == expected, (key, item)
    (queues,) = (p for p in spec["patches"] if p.get("target", {}).get("kind") == "ScaledObject")
    names = topology.Topology("shardline")
    replaced = {op["path"]: op["value"] for op in yaml.safe_load(queues["patch"])}
    assert replaced == {
        "/spec/triggers/0/metadata/queueName": names.worker_queue("premium", "default"),
        "/spec/triggers/1/metadata/queueName": names.interaction_queue("premium", "default"),
    }
    (scaled,) = of_kind(objects, "ScaledObject").values()
    assert [t["name"] for t in scaled["spec"]["triggers"]] == ["events", "interactions"]


def pool_volume_items(workload: Object) -> dict[tuple[str, str], str]:
    (volume,) = (v for v in pod_spec(workload)["volumes"] if "projected" in v)
    return {
        (item["key"], item["path"]): source["secret"]["name"]
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def test_the_hpa_component_removes_exactly_the_keda_objects(objects: list[Object]) -> None:
    spec = kustomization(KUBE / "hpa")
    assert spec["kind"] == "Component"
    deleted = set()
    for patch in spec["patches"]:
        document = yaml.safe_load(patch["patch"])
        assert document.pop("$patch") == "delete"
        deleted.add((document["kind"], document["metadata"]["name"]))
    keda = {identity(o) for o in objects if o["apiVersion"].startswith("keda.sh/")}
    assert deleted == keda
    assert spec["resources"] == ["worker-hpa.yaml"]
