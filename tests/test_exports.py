"""The public API is what toolkit/__init__.py exports, and nothing else by accident."""

import toolkit

EXPECTED = {
    "ArchiveError", "DeployError", "LayoutError", "PredictError", "RenderError", "ServeError", "SpecError",
    "StagingError", "TemplateError", "ToolkitError",
    "KServeSettings", "ModelSpec", "Resources", "ServerSettings", "ServingSettings",
    "load_spec", "init", "build", "build_many", "inspect", "check",
    "serve", "stage", "render", "deploy", "status", "delete", "Client", "AsyncClient",
    "Manifests", "S3Credentials", "PvcRequest",
    "BuildResult", "CheckReport", "LocalPredictor", "RuntimePredictor", "StageResult", "DeployResult",
}


def test_exported_members_are_what_we_mean() -> None:
    assert set(toolkit.__all__) == EXPECTED
    for name in toolkit.__all__:
        assert getattr(toolkit, name).__module__.startswith("toolkit"), name


def test_every_error_is_a_toolkit_error() -> None:
    for name in toolkit.__all__:
        member = getattr(toolkit, name)
        if name.endswith("Error"):
            assert issubclass(member, toolkit.ToolkitError)
