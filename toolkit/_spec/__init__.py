"""The spec room: mar.yaml parsed into a ModelSpec (settings: the dataclasses; parse: the checks), and
`mar-build init`'s scaffold."""

from .._names import suggest_isvc_name, suggest_model_name
from .parse import (
    check_isvc_name,
    check_model_name,
    load_spec,
    parse_kserve_settings,
    parse_spec,
)
from .scaffold import InitResult, init
from .settings import (
    DEPLOYMENT_MODES,
    RUNTIMES,
    SPEC_FILENAME,
    TASKS,
    KServeSettings,
    ModelSpec,
    Resources,
    Runtime,
    ServerSettings,
    ServingSettings,
)

__all__ = [
    "DEPLOYMENT_MODES", "RUNTIMES", "SPEC_FILENAME", "TASKS", "InitResult", "KServeSettings", "ModelSpec",
    "Resources", "Runtime", "ServerSettings", "ServingSettings", "check_isvc_name", "check_model_name", "init",
    "load_spec", "parse_kserve_settings", "parse_spec", "suggest_isvc_name", "suggest_model_name",
]
