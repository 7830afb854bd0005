"""The deployment files are checked offline, so a typo or a wrong key fails CI, not a rollout.

- deploy/k8s/values.yaml against the Dagster Helm chart's own values.schema.json (vendored in
  deploy/schemas/), its Kubernetes $refs resolved from the JSON schemas that the
  kubernetes-validate package ships (strict: unknown keys in Kubernetes objects are errors);
- the K8sRunLauncher part of values.yaml rendered as the chart renders it, then checked with
  dagster-k8s's own config schema and its own Kubernetes-model key check;
- deploy/k8s/executor.yaml as run config of window_job on dagster-k8s's k8s_job_executor;
- deploy/dagster.yaml as a Dagster instance file whose configurable classes resolve.

Every check has a negative test that feeds it a modified copy (in tmp_path), never the real file.
"""

from __future__ import annotations

import copy
import functools
import os
import importlib
import importlib.resources
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import jsonschema
import pytest
import referencing.exceptions
import yaml
from dagster._config import process_config, validate_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.ref import InstanceRef
from dagster._serdes.config_class import ConfigurableClassData
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.job import UserDefinedDagsterK8sConfig
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VALUES = DEPLOY / "k8s" / "values.yaml"
EXECUTOR = DEPLOY / "k8s" / "executor.yaml"
INSTANCE = DEPLOY / "dagster.yaml"
CHART_SCHEMA = DEPLOY / "schemas" / "dagster-helm-values.schema.json"

# Oldest Kubernetes version whose schemas kubernetes-validate ships; the chart's own $refs name
# 1.18.0, which no offline package carries. A file valid for 1.25 uses no field newer than that.
K8S_SCHEMA_VERSION = "1.25.0"
# The host the chart's $refs point at. Nothing is fetched from it: see _k8s_registry.
K8S_SCHEMA_HOST = "https://kubernetesjsonschema.dev/"
RESOURCE_REQUIREMENTS = {
    "$ref": f"{K8S_SCHEMA_HOST}v1.18.0/_definitions.json#/definitions/io.k8s.api.core.v1.ResourceRequirements"
}
# The Kubernetes quantity grammar (k8s.io/apimachinery resource.Quantity). The JSON schemas only
# say "string or number", so "8GB" (not a quantity: GB is not a suffix) would pass without this.
QUANTITY_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[mkMGTPE]|[eE][+-]?\d+)?$"

# Chart sections handed to Bitnami subcharts, which take many keys the chart schema doesn't list:
# they stay open in the closed-keys check.
SUBCHART_SECTIONS = {"PostgreSQL", "RabbitMQ", "RabbitMQConfiguration", "VolumePermissions", "Redis"}

# The env vars deploy/dagster.yaml reads, with dummy values of the right shape (the port is an int).
INSTANCE_ENV = {
    "CROWD_PG_HOST": "pg.invalid",
    "CROWD_PG_PORT": "5432",
    "CROWD_PG_USER": "dagster",
    "CROWD_PG_PASSWORD": "not-a-secret",
    "CROWD_PG_DB": "dagster",
}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _write_variant(tmp_path: Path, source: Path, change: Callable[[Any], None]) -> Path:
    """A changed copy of `source` in tmp_path, same file name (dagster.yaml must keep its name)."""
    document = copy.deepcopy(_load(source))
    change(document)
    target = tmp_path / source.name
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


# --- Kubernetes JSON schemas, offline -------------------------------------------------------


@functools.cache
def _k8s_definitions() -> dict:
    files = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    definitions = json.loads((files / f"v{K8S_SCHEMA_VERSION}-local-strict" / "_definitions.json").read_text())
    definitions["$defs"]["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {
        "anyOf": [{"type": "string", "pattern": QUANTITY_PATTERN}, {"type": "number"}]
    }
    return definitions


def _retrieve_k8s_definitions(uri: str) -> Resource:
    # The chart refers to <host>/v1.18.0/_definitions.json#/definitions/<name>; the packaged file
    # keeps the same objects under $defs and refers to them as #/$defs/<name> or
    # /api/_definitions.json#/$defs/<name> (which resolves on the same host): serve both names.
    if uri.startswith(K8S_SCHEMA_HOST) and uri.endswith("/_definitions.json"):
        k8s = _k8s_definitions()
        return Resource.from_contents({"$schema": k8s["$schema"], "$defs": k8s["$defs"], "definitions": k8s["$defs"]})
    # Anything else would be a download: refuse, so a test can never reach the network.
    raise referencing.exceptions.NoSuchResource(ref=uri)


def _k8s_registry() -> Registry:
    return Registry(retrieve=_retrieve_k8s_definitions)


def _schema_errors(schema: dict, instance: Any) -> list[str]:
    # Helm validates values with a draft-7 validator (a $ref's siblings are ignored), so do we.
    validator = jsonschema.Draft7Validator(schema, registry=_k8s_registry())
    messages = []
    for error in validator.iter_errors(instance):
        leaf = jsonschema.exceptions.best_match([error])  # the cause inside anyOf/oneOf
        path = "/".join(str(part) for part in leaf.absolute_path) or "<root>"
        messages.append(f"{path}: {leaf.message}")
    return sorted(messages)


# --- Helm values ----------------------------------------------------------------------------


def _chart_schema(*, closed: bool) -> dict:
    """The chart's schema for an override file: without `required`, because Helm checks the
    values merged with the chart's defaults, which supply every required key and which we don't
    vendor. With closed=True every chart object that lists its keys rejects other keys, as the
    chart's own schema does for some sections only (dagster-user-deployments entries, the root
    and runLauncher.config are open there, so a typo in them would pass)."""
    schema = json.loads(CHART_SCHEMA.read_text())
    for name, definition in [("<root>", schema), *schema["definitions"].items()]:
        definition.pop("required", None)
        if (
            closed
            and definition.get("properties")
            and "$ref" not in definition
            and "additionalProperties" not in definition
            and name not in SUBCHART_SECTIONS
        ):
            definition["additionalProperties"] = False
    return schema


def _helm_values_errors(values: dict, *, closed: bool = False) -> list[str]:
    return _schema_errors(_chart_schema(closed=closed), values)


def test_vendored_chart_schema_is_the_helm_values_schema_with_offline_kubernetes_refs():
    schema = json.loads(CHART_SCHEMA.read_text())
    assert schema["title"] == "DagsterHelmValues"
    external = {ref.split("#")[0] for ref in re.findall(r'"\$ref": "([^"#][^"]*)"', CHART_SCHEMA.read_text())}
    assert external and all(ref.startswith(K8S_SCHEMA_HOST) for ref in external), external
    for ref in external:
        assert "io.k8s.api.core.v1.ResourceRequirements" in _retrieve_k8s_definitions(ref).contents["definitions"]
    with pytest.raises(referencing.exceptions.NoSuchResource):
        _retrieve_k8s_definitions("https://example.invalid/schema.json")


def test_values_yaml_matches_the_dagster_chart_schema():
    assert _helm_values_errors(_load(VALUES)) == []


def test_values_yaml_uses_only_keys_the_chart_declares():
    assert _helm_values_errors(_load(VALUES), closed=True) == []


def test_chart_schema_rejects_a_mistyped_webserver_key(tmp_path):
    bad = _write_variant(tmp_path, VALUES, lambda v: v["dagsterWebserver"].update(replicaCont=2))
    assert any("replicaCont" in message for message in _helm_values_errors(_load(bad)))


def test_chart_schema_rejects_a_wrong_type(tmp_path):
    bad = _write_variant(tmp_path, VALUES, lambda v: v["dagsterWebserver"].update(replicaCount="two"))
    assert any(message.startswith("dagsterWebserver/replicaCount:") for message in _helm_values_errors(_load(bad)))


def test_chart_schema_rejects_an_unknown_run_launcher_type(tmp_path):
    bad = _write_variant(tmp_path, VALUES, lambda v: v["runLauncher"].update(type="K8SRunLauncher"))
    assert any(message.startswith("runLauncher/type:") for message in _helm_values_errors(_load(bad)))


def test_closed_check_rejects_a_mistyped_key_where_the_chart_schema_is_open(tmp_path):
    def misspell(values):
        deployment = values["dagster-user-deployments"]["deployments"][0]
        deployment["envSecret"] = deployment.pop("envSecrets")

    bad = _write_variant(tmp_path, VALUES, misspell)
    assert any("envSecret" in message for message in _helm_values_errors(_load(bad), closed=True))


def test_kubernetes_schema_rejects_a_mistyped_resources_key_in_values(tmp_path):
    def misspell(values):
        resources = values["dagster-user-deployments"]["deployments"][0]["resources"]
        resources["request"] = resources.pop("requests")

    bad = _write_variant(tmp_path, VALUES, misspell)
    assert any("'request'" in message for message in _helm_values_errors(_load(bad)))


def test_kubernetes_schema_rejects_a_memory_size_that_is_not_a_quantity(tmp_path):
    bad = _write_variant(
        tmp_path, VALUES, lambda v: v["dagster-user-deployments"]["deployments"][0]["resources"]["limits"].update(memory="12GB")
    )
    assert any("12GB" in message for message in _helm_values_errors(_load(bad)))


def test_kubernetes_schema_rejects_a_mistyped_env_secret_field(tmp_path):
    bad = _write_variant(
        tmp_path, VALUES, lambda v: v["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"].append({"nmae": "x"})
    )
    assert any("nmae" in message for message in _helm_values_errors(_load(bad)))


@pytest.mark.parametrize("quantity", ["2", "500m", "8Gi", "12Gi", "1.5", "1e3", "256M"])
def test_quantity_pattern_accepts_kubernetes_quantities(quantity):
    assert re.match(QUANTITY_PATTERN, quantity)


@pytest.mark.parametrize("quantity", ["8GB", "12 Gi", "2 cpus", "", "Gi"])
def test_quantity_pattern_rejects_non_quantities(quantity):
    assert not re.match(QUANTITY_PATTERN, quantity)


# --- K8sRunLauncher (values.yaml runLauncher.config.k8sRunLauncher) ---------------------------

# camelCase helm key -> dagster K8sRunLauncher config key, as the chart's _run-launcher.tpl renders.
_LAUNCHER_KEYS = {
    "loadInclusterConfig": "load_incluster_config",
    "kubeconfigFile": "kubeconfig_file",
    "jobNamespace": "job_namespace",
    "imagePullPolicy": "image_pull_policy",
    "envVars": "env_vars",
    "volumeMounts": "volume_mounts",
    "volumes": "volumes",
    "labels": "labels",
    "resources": "resources",
    "failPodOnRunFailure": "fail_pod_on_run_failure",
    "schedulerName": "scheduler_name",
    "securityContext": "security_context",
}
_RUN_K8S_KEYS = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}


def _render_k8s_run_launcher(helm: dict) -> dict:
    """The `run_launcher.config` the chart writes into the instance for K8sRunLauncher. Values the
    chart takes from elsewhere (release namespace, service account, ...) are placeholders."""
    config: dict[str, Any] = {
        "load_incluster_config": True,  # chart default
        "job_namespace": "crowd",
        "image_pull_policy": "Always",  # chart default
        "service_account_name": "dagster",
        "dagster_home": "/opt/dagster/dagster_home",
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": "dagster-postgresql-secret",
    }
    for key, value in helm.items():
        if key in _LAUNCHER_KEYS:
            config[_LAUNCHER_KEYS[key]] = value
        elif key in ("envSecrets", "envConfigMaps"):  # the chart keeps only the names
            names = [item["name"] for item in value if "name" in item]
            config["env_secrets" if key == "envSecrets" else "env_config_maps"] = names
        elif key == "image":
            config["job_image"] = f"{value['repository']}:{value['tag']}"
        elif key == "runK8sConfig":
            unknown = set(value) - set(_RUN_K8S_KEYS)
            if unknown:
                raise KeyError(f"runK8sConfig keys the chart does not render: {sorted(unknown)}")
            config["run_k8s_config"] = {_RUN_K8S_KEYS[k]: v for k, v in value.items() if v}
        else:
            raise KeyError(f"k8sRunLauncher key the chart does not render: {key}")
    return config


def _k8s_config_errors(k8s_config: dict) -> list[str]:
    """What dagster-k8s itself rejects when it builds the pod (unknown Kubernetes model keys,
    checked by UserDefinedDagsterK8sConfig), plus the container's resources against the
    Kubernetes ResourceRequirements schema."""
    try:
        UserDefinedDagsterK8sConfig.from_dict(k8s_config)
    except Exception as error:  # dagster-k8s raises a bare Exception for unexpected keys
        return [str(error)]
    resources = (k8s_config.get("container_config") or {}).get("resources")
    return _schema_errors(RESOURCE_REQUIREMENTS, resources) if resources is not None else []


def _run_launcher_errors(values: dict) -> list[str]:
    try:
        config = _render_k8s_run_launcher(values["runLauncher"]["config"]["k8sRunLauncher"])
    except KeyError as error:
        return [str(error)]
    result = validate_config(K8sRunLauncher.config_type(), config)
    if not result.success:
        return [error.message for error in result.errors]
    return _k8s_config_errors(config.get("run_k8s_config", {}))


def test_values_run_launcher_is_valid_k8s_run_launcher_config():
    values = _load(VALUES)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert _run_launcher_errors(values) == []


def test_run_launcher_check_rejects_a_mistyped_container_config_key(tmp_path):
    def misspell(values):
        container = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]
        container["resource"] = container.pop("resources")

    bad = _write_variant(tmp_path, VALUES, misspell)
    assert any("resource" in message for message in _run_launcher_errors(_load(bad)))


def test_run_launcher_check_rejects_a_mistyped_run_k8s_config_key(tmp_path):
    def misspell(values):
        run_k8s = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
        run_k8s["containerConfg"] = run_k8s.pop("containerConfig")

    bad = _write_variant(tmp_path, VALUES, misspell)
    assert any("containerConfg" in message for message in _run_launcher_errors(_load(bad)))
    assert any("containerConfg" in message for message in _helm_values_errors(_load(bad)))


def test_run_launcher_check_rejects_a_wrong_type(tmp_path):
    bad = _write_variant(
        tmp_path, VALUES, lambda v: v["runLauncher"]["config"]["k8sRunLauncher"].update(loadInclusterConfig="yes")
    )
    assert _run_launcher_errors(_load(bad)) != []


def test_run_launcher_check_rejects_a_non_quantity_in_run_pod_resources(tmp_path):
    bad = _write_variant(
        tmp_path,
        VALUES,
        lambda v: v["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]["resources"]["requests"].update(
            cpu="2 cores"
        ),
    )
    assert any("2 cores" in message for message in _run_launcher_errors(_load(bad)))


# --- executor.yaml: run config of window_job on k8s_job_executor ------------------------------


@functools.cache
def _window_job_on_k8s() -> dg.JobDefinition:
    from crowd_platform.definitions import defs
    from crowd_platform.jobs import job_executor

    # executor.yaml is the run config for the Kubernetes deployment, where CROWD_EXECUTOR=k8s gives
    # window_job k8s_job_executor (jobs.job_executor): check it against that job, not the local one.
    assert job_executor("k8s") is k8s_job_executor
    return defs.resolve_job_def("window_job").with_executor_def(job_executor("k8s"))


def test_crowd_executor_k8s_gives_the_computing_jobs_the_k8s_job_executor():
    """In the Kubernetes image the environment selects the executor; the definitions load with it."""
    import subprocess
    import sys

    probe = ("from crowd_platform.definitions import defs; "
             "print(sorted({defs.resolve_job_def(n).executor_def.name for n in "
             "('window_job', 'geography_job', 'daily_job', 'indicators_job')}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CROWD_EXECUTOR": "k8s"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['k8s']"
    wrong = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "CROWD_EXECUTOR": "kubernetes"})
    assert wrong.returncode != 0 and "unknown executor" in wrong.stderr


def _executor_errors(run_config: dict) -> list[str]:
    try:
        resolved = dg.validate_run_config(_window_job_on_k8s(), run_config)
    except DagsterInvalidConfigError as error:
        return [str(error)]
    executor_config = resolved["execution"]["k8s"]
    errors = _k8s_config_errors(executor_config.get("step_k8s_config", {}))
    for step, step_config in executor_config.get("per_step_k8s_config", {}).items():
        errors += [f"{step}: {message}" for message in _k8s_config_errors(step_config)]
    return errors


def test_executor_yaml_is_valid_run_config_for_window_job_on_k8s_job_executor():
    assert _executor_errors(_load(EXECUTOR)) == []


def test_executor_check_rejects_a_mistyped_executor_key(tmp_path):
    def misspell(run_config):
        executor = run_config["execution"]["config"]
        executor["max_concurent"] = executor.pop("max_concurrent")

    bad = _write_variant(tmp_path, EXECUTOR, misspell)
    assert any("max_concurent" in message for message in _executor_errors(_load(bad)))


def test_executor_check_rejects_a_wrong_type(tmp_path):
    bad = _write_variant(tmp_path, EXECUTOR, lambda rc: rc["execution"]["config"].update(max_concurrent="eight"))
    assert any("max_concurrent" in message for message in _executor_errors(_load(bad)))


def test_executor_check_rejects_a_mistyped_container_config_key(tmp_path):
    def misspell(run_config):
        container = run_config["execution"]["config"]["step_k8s_config"]["container_config"]
        container["resoures"] = container.pop("resources")

    bad = _write_variant(tmp_path, EXECUTOR, misspell)
    assert any("resoures" in message for message in _executor_errors(_load(bad)))


def test_executor_check_rejects_a_non_quantity_in_step_pod_resources(tmp_path):
    bad = _write_variant(
        tmp_path,
        EXECUTOR,
        lambda rc: rc["execution"]["config"]["step_k8s_config"]["container_config"]["resources"]["limits"].update(memory="10GB"),
    )
    assert any("10GB" in message for message in _executor_errors(_load(bad)))


# --- dagster.yaml: the production instance ----------------------------------------------------


def _env_vars_referenced(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if set(node) == {"env"}:
            yield node["env"]
        for value in node.values():
            yield from _env_vars_referenced(value)
    elif isinstance(node, list):
        for value in node:
            yield from _env_vars_referenced(value)


def _instance_errors(config_dir: Path, base_dir: Path) -> tuple[list[str], dict[str, type]]:
    """Load the instance file as Dagster does (top-level schema), then resolve every configurable
    class it names and check its config with that class's own schema, env vars resolved. The
    classes are not instantiated: that would connect to PostgreSQL."""
    try:
        ref = InstanceRef.from_dir(str(base_dir), config_dir=str(config_dir))
    except DagsterInvalidConfigError as error:
        return [str(error)], {}
    errors, classes = [], {}
    for field in ref._fields:
        data = getattr(ref, field)
        if not isinstance(data, ConfigurableClassData):
            continue
        try:
            klass = getattr(importlib.import_module(data.module_name), data.class_name)
        except (ImportError, AttributeError) as error:
            errors.append(f"{field}: {data.module_name}.{data.class_name}: {error}")
            continue
        classes[field] = klass
        result = process_config(klass.config_type(), yaml.safe_load(data.config_yaml) or {})
        errors += [f"{field}: {error.message}" for error in result.errors or []]
    return errors, classes


@pytest.fixture
def instance_env(monkeypatch):
    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)


def test_dagster_yaml_reads_only_env_vars_the_check_provides():
    assert set(_env_vars_referenced(_load(INSTANCE))) <= set(INSTANCE_ENV)


def test_dagster_yaml_is_a_valid_instance_whose_classes_resolve(instance_env, tmp_path):
    from dagster_postgres import DagsterPostgresStorage

    errors, classes = _instance_errors(DEPLOY, tmp_path)
    assert errors == []
    assert classes["storage_data"] is DagsterPostgresStorage
    assert classes["run_coordinator_data"].__name__ == "QueuedRunCoordinator"


def test_instance_check_rejects_a_mistyped_top_level_key(instance_env, tmp_path):
    bad = _write_variant(tmp_path, INSTANCE, lambda c: c.update(run_monitorin=c.pop("run_monitoring")))
    errors, _ = _instance_errors(bad.parent, tmp_path)
    assert any("run_monitorin" in message for message in errors)


def test_instance_check_rejects_a_wrong_type(instance_env, tmp_path):
    bad = _write_variant(tmp_path, INSTANCE, lambda c: c["run_monitoring"].update(start_timeout_seconds="three minutes"))
    errors, _ = _instance_errors(bad.parent, tmp_path)
    assert any("start_timeout_seconds" in message for message in errors)


def test_instance_check_rejects_a_mistyped_postgres_key(instance_env, tmp_path):
    def misspell(config):
        postgres_db = config["storage"]["postgres"]["postgres_db"]
        postgres_db["hostnme"] = postgres_db.pop("hostname")

    bad = _write_variant(tmp_path, INSTANCE, misspell)
    errors, _ = _instance_errors(bad.parent, tmp_path)
    assert any("hostnme" in message for message in errors)


def test_instance_check_rejects_a_class_that_does_not_exist(instance_env, tmp_path):
    bad = _write_variant(tmp_path, INSTANCE, lambda c: c["run_coordinator"].update({"class": "QueuedRunCoordinatr"}))
    errors, _ = _instance_errors(bad.parent, tmp_path)
    assert any("QueuedRunCoordinatr" in message for message in errors)


def test_instance_check_rejects_a_missing_env_var(instance_env, monkeypatch, tmp_path):
    monkeypatch.delenv("CROWD_PG_PORT")
    errors, _ = _instance_errors(DEPLOY, tmp_path)
    assert any("CROWD_PG_PORT" in message for message in errors)
