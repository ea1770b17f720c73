"""`chorus serve-config` writes what `serve deploy` accepts; the deployment options follow the config."""

from __future__ import annotations

import yaml
from ray.serve.schema import ServeDeploySchema

from orchestrator.cli.main import main
from orchestrator.cli.serve_config import IMPORT_PATH, serve_config
from orchestrator.runtime.serve_app import BuildArgs, deployment_options
from orchestrator.service.config import parse_config

CONFIG = {
    "models": [{"name": "m", "source": "scripted/m"}],
    "roles": {"generalist": "m"},
    "patterns": {"single": {"kind": "single", "role": "generalist"}},
}


def test_the_file_is_a_serve_deploy_document_naming_the_builder(tmp_path, capsys):
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "server": {"port": 9000, "num_replicas": 3}}))
    out = tmp_path / "serve.yaml"
    assert main(["serve-config", "-c", str(path), "-o", str(out)]) == 0
    doc = yaml.safe_load(out.read_text())
    schema = ServeDeploySchema.model_validate(doc)
    (app,) = schema.applications
    assert app.import_path == IMPORT_PATH and app.route_prefix == "/"
    assert BuildArgs.model_validate(app.args).config == str(path.resolve())
    assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == 9000
    (dep,) = app.deployments
    assert dep.num_replicas == 3 and dep.ray_actor_options.num_cpus == 0


def test_autoscaling_replaces_a_fixed_replica_count():
    config = parse_config({**CONFIG, "server": {"autoscaling": {"min_replicas": 2, "max_replicas": 6}}})
    options = deployment_options(config)
    assert "num_replicas" not in options
    assert options["autoscaling_config"]["min_replicas"] == 2 and options["autoscaling_config"]["max_replicas"] == 6
    doc = serve_config(config, "/cluster/fleet.yaml")
    ServeDeploySchema.model_validate(doc)


def test_json_logs_reach_serve_logging_config():
    config = parse_config({**CONFIG, "server": {"json_logs": True}})
    assert deployment_options(config)["logging_config"] == {"encoding": "JSON"}


def test_serve_builds_the_application_from_the_files_args(tmp_path):
    """What Serve's controller does with the file: import the builder named by `import_path` and
    call it with `args:` (Serve's own code, so the builder's signature is read as Serve reads it)."""
    from ray._common.utils import import_attr
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "server": {"port": 9000, "num_replicas": 3}}))
    config = parse_config({**CONFIG, "server": {"port": 9000, "num_replicas": 3}})
    (app,) = ServeDeploySchema.model_validate(serve_config(config, str(path))).applications
    built = call_user_app_builder_with_args_if_necessary(import_attr(app.import_path), app.args)
    assert isinstance(built, Application)
    deployment = built._bound_deployment
    assert deployment.name == "Orchestrator" and deployment.num_replicas == 3
    bound_config, namespace, start_hosts = deployment.init_args
    assert bound_config.server.port == 9000 and namespace == "chorus" and start_hosts is True


def test_a_free_port_becomes_serves_default_and_says_so(tmp_path, capsys):
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "server": {"port": 0}}))
    out = tmp_path / "serve.yaml"
    assert main(["serve-config", "-c", str(path), "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["http_options"]["port"] == 8000
    assert "server.port is 0" in capsys.readouterr().err
