"""Model folders saved by today's transformers/tokenizers, loaded the way the default image would: a venv with its
transformers 4.34.0 and tokenizers 0.14.1 on pyenv's Python 3.9 (made once per session, about 25-50 s here), then
`check` on layouts built by the toolkit."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from toolkit._build.builder import build
from toolkit._layout.preflight import check
from toolkit._pod import image_facts
from toolkit._pod.probe import venv_name

pytestmark = pytest.mark.slow

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "where", "is", "my", "parcel", "!", "?"]
LABELS = {"id2label": {0: "no", 1: "yes"}, "label2id": {"no": 0, "yes": 1}}


@pytest.fixture(scope="session")
def compat_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session: the image venv is made by the first test that needs it, then reused."""
    return tmp_path_factory.mktemp("compat-cache")


@pytest.fixture
def image_cache(compat_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MAR_BUILD_CACHE_DIR", str(compat_cache))
    monkeypatch.delenv("MAR_BUILD_COMPAT_PYTHON", raising=False)
    return compat_cache


def _bert_tokenizer(folder: Path) -> None:
    from transformers import BertTokenizerFast

    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)


def _layout(root: Path, name: str, folder: Path) -> Path:
    spec = root / f"spec-{name}"
    spec.mkdir()
    (spec / "mar.yaml").write_text(yaml.safe_dump({"name": name, "task": "text-classification",
                                                   "model": str(folder)}))
    return build(spec, root / f"layout-{name}").layout


@pytest.fixture(scope="session")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four tiny text classifiers saved by today's libraries: BERT (loads in the image), GPT-2 with a trained
    byte-level BPE tokenizer (tokenizer.json merges as pairs), ModernBERT (a model type of 2024), and BERT with its
    tokenizer saved as transformers 5's generic fast tokenizer (tokenizer_class TokenizersBackend)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2ForSequenceClassification,
        GPT2TokenizerFast,
        ModernBertConfig,
        ModernBertForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    root = tmp_path_factory.mktemp("compat-models")
    bert, bpe, modern, generic = root / "bert", root / "bpe", root / "modernbert", root / "generic"
    for folder in (bert, bpe, modern, generic):
        folder.mkdir()
    _bert_tokenizer(bert)
    BertForSequenceClassification(BertConfig(
        vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=64, **LABELS)).save_pretrained(bert)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["hello world", "where is my parcel"] * 10, trainers.BpeTrainer(
        vocab_size=280, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    GPT2TokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>").save_pretrained(bpe)
    GPT2ForSequenceClassification(GPT2Config(
        vocab_size=tok.get_vocab_size(), n_layer=1, n_head=2, n_embd=8, n_positions=64, pad_token_id=0,
        bos_token_id=0, eos_token_id=0, **LABELS)).save_pretrained(bpe)
    _bert_tokenizer(modern)
    ModernBertForSequenceClassification(ModernBertConfig(
        vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=64, pad_token_id=0, bos_token_id=2, eos_token_id=3, cls_token_id=2,
        sep_token_id=3, **LABELS)).save_pretrained(modern)
    shutil.copy(bert / "config.json", generic)
    shutil.copy(bert / "model.safetensors", generic)
    wordpiece = Tokenizer.from_file(str(bert / "tokenizer.json"))
    PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(generic)
    return {name: _layout(root, name, folder) for name, folder in
            (("bert", bert), ("bpe", bpe), ("modernbert", modern), ("generic", generic))}


def test_a_bert_folder_saved_today_loads_in_the_default_image(layouts: dict[str, Path], image_cache: Path) -> None:
    report = check(layouts["bert"])
    assert report.problems == []
    venv = image_cache / "compat" / venv_name(image_facts())
    assert venv.name == "py3.9-transformers4.34.0-tokenizers0.14.1"
    assert "transformers==4.34.0" in (venv / ".complete").read_text()
    # The image's tokenizer and today's gave the same ids (or check would say so); both answers are remembered.
    assert len(list((image_cache / "compat" / "probes").glob("*.json"))) >= 2
    made = (venv / ".complete").stat().st_mtime_ns
    assert check(layouts["bert"]).problems == []
    assert (venv / ".complete").stat().st_mtime_ns == made  # made once, then reused


def test_a_bpe_tokenizer_saved_today_does_not_load_in_the_image(layouts: dict[str, Path], image_cache: Path) -> None:
    report = check(layouts["bpe"])
    [problem] = [p for p in report.errors if "cannot load its tokenizer" in p.message]
    assert "transformers 4.34.0 / tokenizers 0.14.1" in problem.message
    assert "untagged enum ModelWrapper" in problem.message and "merges as pairs" in problem.message
    assert "mar-build image" in problem.hint and "python runtime" in problem.hint
    assert check(layouts["bpe"], runtime="python").ok  # its image has today's libraries


def test_a_tokenizer_saved_as_transformers_5s_generic_class(layouts: dict[str, Path], image_cache: Path) -> None:
    [problem] = [p for p in check(layouts["generic"]).errors if "cannot load its tokenizer" in p.message]
    assert "TokenizersBackend does not exist" in problem.message


def test_a_model_type_newer_than_the_images_transformers(layouts: dict[str, Path], image_cache: Path) -> None:
    [problem] = [p for p in check(layouts["modernbert"]).errors if "cannot read its config.json" in p.message]
    assert "modernbert" in problem.message and "pytorch/torchserve-kfs:0.9.0" in problem.message
    assert not [p for p in check(layouts["modernbert"], probe=False).errors if "config.json" in p.message]


def test_without_the_images_python_check_says_it_could_not_try(
    layouts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAR_BUILD_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("MAR_BUILD_COMPAT_PYTHON", os.devnull)
    [problem] = check(layouts["bert"]).warnings
    assert "could not load it the way pytorch/torchserve-kfs:0.9.0 would" in problem.message
    assert "no Python 3.9" in problem.message and "pyenv" in problem.hint
    assert not list((tmp_path / "empty-cache").rglob(".complete"))  # nothing half-made is left to be used


def test_check_no_probe_loads_nothing_and_makes_no_venv(layouts: dict[str, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`check --no-probe` (a machine without the image's Python or an index): the model type newer than the image
    goes unseen, and no venv is made."""
    from click.testing import CliRunner

    from toolkit._cli import cli

    cache = tmp_path / "cache"
    monkeypatch.setenv("MAR_BUILD_CACHE_DIR", str(cache))
    done = CliRunner().invoke(cli, ["check", "--no-probe", "--json", str(layouts["modernbert"])])
    assert done.exit_code == 0, done.output
    assert "config.json" not in done.output
    assert not (cache / "compat").exists()
