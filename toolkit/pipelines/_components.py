"""The Kubeflow Pipelines v2 components and the mlflow_to_kserve pipeline, made for one container image.

Each component is a lightweight Python component (``dsl.component(base_image=IMAGE)``) whose body imports
``toolkit.pipelines._run`` and runs one `mar-build` command there. The same definition compiles for the cluster (the
image runs it: it needs mar-build with the ``pipelines`` extra, so that ``python3 -m kfp.dsl.executor_main`` and
``python3 -m toolkit`` both work) and runs under ``kfp.local.SubprocessRunner(use_venv=False)``, which starts the
component in this Python and where `mar-build` is this checkout's. A container component (``dsl.ContainerSpec`` with
``command: [mar-build, ...]``) would need no kfp in the image, but kfp.local runs those only in Docker, which is
not on the machines this is developed on; so the tested definition is the shipped one.

No ``from __future__ import annotations`` here: kfp reads the component signatures' annotations as types, and each
component body is compiled into the pipeline as source text of its own (hence the imports inside the functions).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from kfp import dsl

from .._errors import ToolkitError
from .._uri import parse_image_ref

PIPELINE_NAME = "mlflow-to-kserve"


def build_layout(
    model_uri: str, layout: dsl.Output[dsl.Model], name: str = "", task: str = "", version: str = "",
    spec: str = "",
) -> NamedTuple("BuildOutputs", [("model_name", str), ("model_version", str)]):  # type: ignore[valid-type]
    """Build a layout from a registry URI (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN/PATH) or a path."""
    from toolkit.pipelines._run import build_step

    return build_step(model_uri, layout.path, name=name, task=task, version=version, spec=spec)


def build_layout_from_folder(
    model: dsl.Input[dsl.Model], layout: dsl.Output[dsl.Model], name: str = "", task: str = "", version: str = "",
    spec: str = "",
) -> NamedTuple("BuildOutputs", [("model_name", str), ("model_version", str)]):  # type: ignore[valid-type]
    """Build a layout from a model folder artifact (with its own mar.yaml, or described by task/name/spec)."""
    from toolkit.pipelines._run import build_step

    return build_step(model.path, layout.path, name=name, task=task, version=version, spec=spec)


def stage_layout(layout: dsl.Input[dsl.Model], storage_uri: str, s3_endpoint: str = "", mount: str = "") -> str:
    """Stage the layout to s3://, pvc://CLAIM/PREFIX (mounted at ``mount``) or oci://; return the storageUri."""
    from toolkit.pipelines._run import stage_step

    return stage_step(layout.path, storage_uri, s3_endpoint=s3_endpoint, mount=mount)


def deploy_layout(
    layout: dsl.Input[dsl.Model], isvc_name: str, storage_uri: str, manifests: dsl.Output[dsl.Artifact],
    namespace: str = "", s3_endpoint: str = "", service_account: str = "", render_args: str = "",
    wait_timeout: float = 600.0,
) -> NamedTuple("DeployOutputs", [("url", str), ("address", str)]):  # type: ignore[valid-type]
    """Render the InferenceService, apply it and wait until it is ready; fail with the diagnosis when it is not."""
    from toolkit.pipelines._run import deploy_step

    return deploy_step(
        layout.path, manifests.path, name=isvc_name, storage_uri=storage_uri, namespace=namespace,
        s3_endpoint=s3_endpoint, service_account=service_account, render_args=render_args,
        wait_timeout=wait_timeout,
    )


def smoke_predict(
    url: str, model_name: str, instances: str = "", host: str = "", expected: str = "",
    request_timeout: float = 30.0,
) -> str:
    """Send the instances (a JSON list) to the model; fail unless it answers (and, given ``expected``, with that)."""
    from toolkit.pipelines._run import predict_step

    return predict_step(url, model_name, instances=instances, host=host, expected=expected,
                        request_timeout=request_timeout)


@dataclass(frozen=True)
class Steps:
    """The components, made for one image, and the ready pipeline made of them.

    ``build``, ``build_from_folder``, ``stage``, ``deploy``, ``predict``: kfp components to use in pipelines of your
    own; ``mlflow_to_kserve``: the pipeline (build from a registry URI -> stage -> deploy -> smoke predict).
    """

    image: str
    build: Any
    build_from_folder: Any
    stage: Any
    deploy: Any
    predict: Any
    mlflow_to_kserve: Any


def steps(image: str, *, env: Mapping[str, str] | None = None) -> Steps:
    """The components and the mlflow_to_kserve pipeline for ``image`` (REGISTRY/REPOSITORY:TAG, an image with
    mar-build and its ``pipelines`` extra installed). ``env``: environment variables every step gets (not secrets:
    they are written into the compiled pipeline), e.g. ``MLFLOW_TRACKING_URI``, ``MLFLOW_S3_ENDPOINT_URL``.

    Raises ToolkitError for an image reference without a registry or with a bad name.
    """
    parse_image_ref(image, what="the pipeline image", error=ToolkitError)
    made = {fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False) for fn in _FUNCTIONS}
    prepare = _preparer(env or {})
    return Steps(
        image=image, build=made["build_layout"], build_from_folder=made["build_layout_from_folder"],
        stage=made["stage_layout"], deploy=made["deploy_layout"], predict=made["smoke_predict"],
        mlflow_to_kserve=_pipeline(made, prepare),
    )


_FUNCTIONS = (build_layout, build_layout_from_folder, stage_layout, deploy_layout, smoke_predict)


def _preparer(env: Mapping[str, str]) -> Callable[[Any], Any]:
    def prepare(task: Any) -> Any:
        # Never cached: a registry alias (models:/m@champion) moves, and deploy/predict talk to a live cluster.
        task.set_caching_options(False)
        for key, value in env.items():
            task.set_env_variable(key, value)
        return task

    return prepare


def _pipeline(made: Mapping[str, Any], prepare: Callable[[Any], Any]) -> Any:
    @dsl.pipeline(name=PIPELINE_NAME, description="Build a model from an MLflow registry (or any mar.yaml model URI) "
                  "into a TorchServe layout, stage it, deploy it as a KServe InferenceService, smoke-test it.")
    def mlflow_to_kserve(
        model_uri: str, storage_uri: str, isvc_name: str, namespace: str = "", task: str = "",
        model_name: str = "", version: str = "", spec: str = "", s3_endpoint: str = "", mount: str = "",
        service_account: str = "", render_args: str = "", wait_timeout: float = 600.0,
        smoke_instances: str = "", smoke_expected: str = "",
    ) -> str:
        built = prepare(made["build_layout"](model_uri=model_uri, name=model_name, task=task, version=version,
                                             spec=spec))
        staged = prepare(made["stage_layout"](layout=built.outputs["layout"], storage_uri=storage_uri,
                                              s3_endpoint=s3_endpoint, mount=mount))
        deployed = prepare(made["deploy_layout"](
            layout=built.outputs["layout"], isvc_name=isvc_name, storage_uri=staged.output, namespace=namespace,
            s3_endpoint=s3_endpoint, service_account=service_account, render_args=render_args,
            wait_timeout=wait_timeout,
        ))
        checked = prepare(made["smoke_predict"](url=deployed.outputs["address"],
                                                model_name=built.outputs["model_name"],
                                                instances=smoke_instances, expected=smoke_expected))
        return checked.output

    return mlflow_to_kserve
