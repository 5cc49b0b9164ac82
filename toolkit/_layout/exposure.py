"""What TorchServe exposes in the pod: a management API that registers archives from any URL (ShellTorch).

Whoever reaches TorchServe's management address can register an archive, and registering runs its handler. The
default ``allowed_urls`` (ConfigManager.java, ``file://.*|http(s)?://.*``) admits any http(s) URL, so a management
address beyond loopback lets any pod that reaches the predictor run code in it (GHSA-8fxr-qfr9-p34w,
CVE-2023-43654). Only KServe's wrapper in the same pod needs the address, over loopback. TorchServe 0.11.1 and
newer can switch the register and delete calls off (``enable_model_api=false``, their default); 0.9.0 cannot.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .._pod import ImageFacts
from .properties import truthy
from .report import CheckReport

TS_DEFAULT_ALLOWED_URLS = r"file://.*|http(s)?://.*"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# URLs an attacker would register from: if a pattern admits any, allowed_urls is permissive.
FOREIGN_URLS = ("http://attacker.example/model.mar", "https://attacker.example/model.mar",
                "http://169.254.169.254/latest/meta-data/")
MODEL_API_SWITCH = (0, 11, 1)  # the first TorchServe with enable_model_api


def permissive(allowed_urls: str | None) -> bool:
    """Whether ``allowed_urls`` (TorchServe's comma-separated regular expressions; None: its default) admits a
    registration from a foreign http(s) URL. A pattern that does not compile fails TorchServe's start, not here."""
    patterns = (TS_DEFAULT_ALLOWED_URLS if allowed_urls is None else allowed_urls).split(",")
    for pattern in patterns:
        try:
            compiled = re.compile(pattern.strip())
        except re.error:
            continue
        if any(compiled.fullmatch(url) for url in FOREIGN_URLS):
            return True
    return False


def _host(address: str) -> str | None:
    try:
        return urlsplit(address if "//" in address else "//" + address).hostname
    except ValueError:
        return None


def _version(text: str | None) -> tuple[int, ...]:
    parts = [int(p) for p in re.findall(r"\d+", text or "")[:3]]
    return tuple(parts)


def check_exposure(props: dict[str, str], report: CheckReport, facts: ImageFacts) -> None:
    """Error when the management API listens beyond loopback and a registration could fetch a foreign URL."""
    address = props.get("management_address")
    if address is None or facts.torchserve is None:
        return
    host = _host(address)
    if host is None or host in LOOPBACK_HOSTS:
        return
    allowed = props.get("allowed_urls")
    if not permissive(allowed):
        return
    has_switch = _version(facts.torchserve) >= MODEL_API_SWITCH
    model_api_off = has_switch and not truthy(props.get("enable_model_api", "false"))
    what = "the default allowed_urls" if allowed is None else f"allowed_urls={allowed}"
    fix = ("set management_address=http://127.0.0.1:8085 (only the wrapper in the same pod calls it) and "
           "allowed_urls=file:///mnt/models/model-store/.*" + ("; keep enable_model_api=false" if has_switch else ""))
    if model_api_off:
        report._warn(
            f"management_address={address} listens beyond loopback with {what}; TorchServe {facts.torchserve} "
            "keeps registration off (enable_model_api=false), but one flag is all that stands between any pod "
            "that reaches the predictor and running its own archive there (ShellTorch, CVE-2023-43654)", fix,
        )
        return
    why = (f"TorchServe {facts.torchserve} has no switch for the model API" if not has_switch
           else "enable_model_api=true")
    report._error(
        f"management_address={address} listens beyond loopback and {what} admits archives from any http(s) URL "
        f"({why}): any pod that reaches the predictor can register an archive from anywhere and run its code "
        "(ShellTorch, CVE-2023-43654)", fix,
    )
