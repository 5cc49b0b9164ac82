"""The compatibility preflight: what a layout's archives need from the pod's image, against what it ships.

The image is a row of toolkit/_pod (pytorch/torchserve-kfs at a tag, or the python runtime's image). Each rule
names the way out: `mar-build image` (an image with what the layout needs), another runtimeVersion, or a pin.
"""

from __future__ import annotations

import ast
import json
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .._pod import (
    DTYPE_SINCE,
    MAX_FILE_FORMAT,
    TAGS,
    TORCH_SUFFIXES,
    ImageFacts,
    ProbeResult,
    image_facts,
    image_venv,
    probe_folder,
    read_torch_file,
    unavailable,
)
from .properties import truthy
from .report import CheckReport

# The small files of a Hugging Face folder: enough to load its config and tokenizer, never the weights.
HF_SMALL_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
    "merges.txt", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
    "preprocessor_config.json",
)
IMAGE_FIX = "mar-build image LAYOUT -o DIR builds an image with what the layout needs (then render --image)"


def way_out(facts: ImageFacts, newer: str | None = None) -> str:
    """The fix every compatibility finding names."""
    other = f"runtimeVersion {newer}, " if newer else ""
    return f"{other}{IMAGE_FIX}; or the python runtime (its image has Python 3.11 and today's libraries)"


def check_compat(archives: dict[str, Path], props: dict[str, str], report: CheckReport, facts: ImageFacts, *,
                 probe: bool = True) -> None:
    """Every compatibility rule for the models (name -> its .mar) in the image ``facts``; ``probe``: load the
    transformers folders with the image's transformers (a venv, made once and cached)."""
    for name, mar in archives.items():
        try:
            zf = zipfile.ZipFile(mar)
        except (OSError, zipfile.BadZipFile):
            continue  # preflight reports an unreadable archive already
        with zf:
            _check_syntax(name, zf, facts, report)
            _check_torch_files(name, zf, facts, report)
            _check_pins(name, zf, facts, report, ask_index=probe)
            if probe and facts.runtime == "torchserve":
                _check_hf_folder(name, zf, facts, report)
    if truthy(props.get("install_py_dep_per_model")):
        # TorchServe installs once per model, when it registers it (ModelManager.setupModelDependencies), before
        # its workers start; the python runtime once per unpacked model, before its handler is imported.
        who = ("TorchServe pip-installs each archive's requirements when it registers the model"
               if facts.runtime == "torchserve" else
               "the python runtime pip-installs each archive's requirements when it loads the model")
        report._warn(
            f"install_py_dep_per_model=true: {who}, so the pod needs a package index (and time) at every start; "
            "many clusters give predictor pods neither",
            f"{IMAGE_FIX}: its requirements are baked in and install_py_dep_per_model is then off",
        )


def _archive_pythons(zf: zipfile.ZipFile) -> list[str]:
    return [n for n in zf.namelist() if n.endswith(".py") and not n.startswith("MAR-INF/")]


def _check_syntax(name: str, zf: zipfile.ZipFile, facts: ImageFacts, report: CheckReport) -> None:
    for member in _archive_pythons(zf):
        source = zf.read(member).decode("utf-8", errors="replace")
        try:
            ast.parse(source, filename=member, feature_version=facts.python_tuple)
        except SyntaxError as exc:
            report._error(
                f"model {name!r}: {member} line {exc.lineno} is syntax Python {facts.python} (the image "
                f"{facts.image}) cannot read: {exc.msg}",
                f"write it for Python {facts.python} (no match statements or other newer syntax); or "
                + way_out(facts),
            )


def _check_torch_files(name: str, zf: zipfile.ZipFile, facts: ImageFacts, report: CheckReport) -> None:
    torch_minor = _minor(facts.torch)
    for member in zf.namelist():
        if not member.endswith(TORCH_SUFFIXES):
            continue
        found = read_torch_file(zf, member)
        if found is None:
            continue
        if found.kind == "export":
            report._error(
                f"model {name!r}: {member} is a torch.export program; torch {facts.torch} in {facts.image} "
                "reads no program saved by another torch release (and the handlers load TorchScript or a "
                "state_dict)",
                "save TorchScript (torch.jit.script/trace, then .save) or the state_dict with the model file",
            )
        elif found.format_version is not None and found.format_version > MAX_FILE_FORMAT:
            report._error(
                f"model {name!r}: {member} has file format version {found.format_version}; torch "
                f"{facts.torch} reads up to {MAX_FILE_FORMAT} (a newer torch wrote it)",
                way_out(facts),
            )
        needs = found.needs()
        if needs is not None and _minor(needs) > torch_minor:
            newer = [d for d in found.dtypes if _minor(DTYPE_SINCE[d]) > torch_minor]
            report._error(
                f"model {name!r}: {member} holds {', '.join(newer)} tensors, which torch {facts.torch} in "
                f"{facts.image} does not have (torch {needs} or newer reads them)",
                f"save the weights as float32/bfloat16; or {way_out(facts, _tag_with_torch(needs))}",
            )


def _minor(version: str) -> tuple[int, int]:
    parts = version.split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _tag_with_torch(needs: str) -> str | None:
    for tag in TAGS:
        if _minor(image_facts("torchserve", tag).torch) >= _minor(needs):
            return tag
    return None


def _check_pins(name: str, zf: zipfile.ZipFile, facts: ImageFacts, report: CheckReport, *, ask_index: bool) -> None:
    member = _requirements_member(zf)
    if member is None:
        return
    to_ask: list[str] = []
    for line in zf.read(member).decode("utf-8", errors="replace").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            report._error(f"model {name!r}: {member} line {text!r} is not a requirement pip reads",
                          "write NAME==VERSION (PEP 508)")
            continue
        env = {"python_version": facts.python, "python_full_version": facts.python + ".0"}
        if requirement.marker is not None and not requirement.marker.evaluate(env):
            continue
        key = canonicalize_name(requirement.name)
        # The python runtime's image is built for the layout (`mar-build image` resolves its pins together with the
        # runtime's): only whether a requirement exists for its Python is asked.
        have = facts.packages.get(key) if facts.runtime == "torchserve" else None
        if have is None:
            to_ask.append(str(requirement))
        elif requirement.specifier and not requirement.specifier.contains(have, prereleases=True):
            _pin_clash(name, member, text, key, have, facts, report)
    if to_ask and ask_index:
        _check_index(name, member, to_ask, facts, report)


def _pin_clash(name: str, member: str, text: str, key: str, have: str, facts: ImageFacts,
               report: CheckReport) -> None:
    core = key in ("torch", "torchvision", "torchserve", "kserve")
    report._error(
        f"model {name!r}: {member} pins {text} but {facts.image} has {key} {have}"
        + (": installing it at load replaces the library the server itself runs on" if core
           else ": the worker installs another copy over it at every start, if the index has one for "
           f"Python {facts.python}"),
        f"pin {key}=={have} (what the image has), or {way_out(facts)}",
    )


def _check_index(name: str, member: str, requirements: list[str], facts: ImageFacts, report: CheckReport) -> None:
    missing, why = unavailable(requirements, facts)
    if why:
        report._warn(f"model {name!r}: could not ask the package index whether {member} installs for Python "
                     f"{facts.python}: {why}", "run check where the index can be reached")
    for item in missing:
        needs = f" (its releases there need Python {item.requires_python})" if item.requires_python else ""
        report._error(
            f"model {name!r}: {member} asks for {item.requirement}, which has no release for Python "
            f"{facts.python} on {facts.image}'s platform{needs}: the worker fails to install it at load",
            f"pin a release that supports Python {facts.python}, or {way_out(facts)}",
        )


def _requirements_member(zf: zipfile.ZipFile) -> str | None:
    try:
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
    except (KeyError, ValueError):
        return None
    member = manifest.get("model", {}).get("requirementsFile")
    return member if isinstance(member, str) and member in zf.namelist() else None


def _hf_folder(zf: zipfile.ZipFile) -> str | None:
    configs = [n for n in zf.namelist() if PurePosixPath(n).name == "config.json"]
    for config in sorted(configs, key=len):
        folder = str(PurePosixPath(config).parent)
        prefix = "" if folder == "." else folder + "/"
        if any(n.startswith(prefix) and PurePosixPath(n).name.startswith("tokenizer") for n in zf.namelist()):
            return prefix
    return None


def _check_hf_folder(name: str, zf: zipfile.ZipFile, facts: ImageFacts, report: CheckReport) -> None:
    prefix = _hf_folder(zf)
    if prefix is None:
        return
    if facts.transformers is None:
        report._error(f"model {name!r} is a transformers model, but {facts.image} has no transformers",
                     way_out(facts))
        return
    python, why = image_venv(facts)
    if python is None:
        report._warn(f"model {name!r}: could not load it the way {facts.image} would: {why}",
                    f"have Python {facts.python} here (pyenv, or MAR_BUILD_COMPAT_PYTHON naming one) and the "
                    "package index reachable, then run check again")
        return
    with tempfile.TemporaryDirectory(prefix="mar-build-compat-") as tmp:
        folder = Path(tmp)
        for member in zf.namelist():
            small = member[len(prefix):]
            if member.startswith(prefix) and small in HF_SMALL_FILES:
                (folder / small).write_bytes(zf.read(member))
        theirs = probe_folder(python, folder)
        # Today's libraries (this interpreter's, when it has transformers) tokenize the same texts: the image's
        # tokenizer may load and still cut the texts differently, and then its answers differ without an error.
        ours = probe_folder(sys.executable, folder) if theirs.ids is not None and _has_transformers() else None
    _report_probe(name, facts, theirs, ours, report)


def _has_transformers() -> bool:
    import importlib.util

    return importlib.util.find_spec("transformers") is not None


def _report_probe(name: str, facts: ImageFacts, theirs: ProbeResult, ours: ProbeResult | None,
                  report: CheckReport) -> None:
    libs = f"transformers {facts.transformers} / tokenizers {facts.tokenizers}"
    fix = "save the model with the image's transformers and tokenizers, or " + way_out(facts)
    if theirs.config_error:
        report._error(f"model {name!r}: {facts.image} ({libs}) cannot read its config.json: "
                      f"{theirs.config_error}", fix)
    if theirs.tokenizer_error:
        why = ""
        if "untagged enum ModelWrapper" in theirs.tokenizer_error:
            why = " (tokenizers 0.20 and newer write BPE merges as pairs, which older tokenizers cannot read)"
        report._error(f"model {name!r}: {facts.image} ({libs}) cannot load its tokenizer: "
                      f"{theirs.tokenizer_error}{why}", fix)
    if ours is not None and ours.ids is not None and theirs.ids != ours.ids:
        report._error(
            f"model {name!r}: the tokenizer loads in {facts.image} ({libs}) but cuts text differently from the "
            "libraries it was built with, so the pod's answers would differ from mar-build serve's",
            fix,
        )
