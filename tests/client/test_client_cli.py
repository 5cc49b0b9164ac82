"""`mar-build predict` through click's CliRunner against a real v1 server on loopback."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from client_support import KubeflowGateway, V1Model, json_response

from toolkit._cli import cli


def predict(
    *args: str, input: str | None = None, env: dict[str, str | None] | None = None, verbose: bool = False  # noqa: A002
) -> Result:
    group_args = ["-vv"] if verbose else []
    return CliRunner().invoke(cli, [*group_args, "predict", *args], input=input,
                              env=env or {"MAR_BUILD_TOKEN": None, "MAR_BUILD_PASSWORD": None})


@pytest.fixture
def server(serve: Any, model: V1Model) -> Any:
    return serve(model)


def test_data_file_pretty_output(server: Any, model: V1Model, tmp_path: Path) -> None:
    data = tmp_path / "input.json"
    data.write_text(json.dumps({"instances": [{"data": "Hello World!"}, {"data": "hi"}]}))
    result = predict(server.url, "-m", "bert", "--data", str(data))
    assert result.exit_code == 0, result.output
    assert result.stdout == "0  12\n1  2\n"
    assert json.loads(model.posts()[0].content) == {"instances": [{"data": "Hello World!"}, {"data": "hi"}]}


def test_stdin_bare_list_json_output(server: Any) -> None:
    result = predict(server.url, "-m", "bert", "--data", "-", "--json", input="[1, 2.5, [1, 2, 3]]")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"predictions": [2, 5.0, 6]}


def test_instances_option_and_explain(server: Any, model: V1Model) -> None:
    result = predict(server.url, "-m", "bert", "--instances", '[{"data": "abc"}]', "--explain", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"explanations": [{"instance": {"data": "abc"}, "score": 3}]}
    assert model.posts()[0].url.path == "/v1/models/bert:explain"


def test_host_and_token_from_the_environment_are_sent_and_never_printed(server: Any, model: V1Model) -> None:
    result = predict(server.url, "-m", "bert", "--instances", "[1]", "--host", "torchserve.ns.example.com",
                     env={"MAR_BUILD_TOKEN": "very-secret-token"}, verbose=True)
    assert result.exit_code == 0, result.output
    (post,) = model.posts()
    assert post.headers["host"] == "torchserve.ns.example.com"
    assert post.headers["authorization"] == "Bearer very-secret-token"
    assert "very-secret-token" not in result.output


def test_an_explicit_cookie_wins_over_a_token_in_the_environment(server: Any, model: V1Model) -> None:
    result = predict(server.url, "-m", "bert", "--instances", "[1]", "--cookie", "abc==",
                     "--cookie-name", "oauth2_proxy_kubeflow", env={"MAR_BUILD_TOKEN": "tok"})
    assert result.exit_code == 0, result.output
    (post,) = model.posts()
    assert post.headers["cookie"] == "oauth2_proxy_kubeflow=abc=="
    assert "authorization" not in post.headers


def test_max_batch_splits_the_requests(server: Any, model: V1Model) -> None:
    result = predict(server.url, "-m", "bert", "--instances", "[1, 2, 3, 4, 5]", "--max-batch", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["0  2", "1  4", "2  6", "3  8", "4  10"]
    assert len(model.posts()) == 3


def test_long_vectors_are_shortened_in_the_pretty_output(serve: Any) -> None:
    def embeddings(request: httpx.Request) -> httpx.Response:
        sizes = json.loads(request.content)["instances"]
        return json_response(200, {"predictions": [[i / 8 for i in range(n)] for n in sizes]})

    url = serve(embeddings).url
    result = predict(url, "-m", "minilm", "--instances", "[384, 2]")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["0  [0, 0.125, 0.25, 0.375, ... 384 values]", "1  [0.0, 0.125]"]
    full = predict(url, "-m", "minilm", "--instances", "[384]", "--json")
    assert len(json.loads(full.stdout)["predictions"][0]) == 384


def test_dex_login_from_the_command_line(serve: Any, model: V1Model) -> None:
    gateway = KubeflowGateway(app=model)
    url = serve(gateway).url
    result = predict(url, "-m", "bert", "--instances", "[7]", "--username", "user@example.com",
                     input="12341234\n")  # the password is asked for, hidden
    assert result.exit_code == 0, result.output
    assert result.stdout == "0  14\n"
    assert "12341234" not in result.output
    assert gateway.logins == 1


def test_the_password_is_not_asked_for_when_stdin_holds_the_instances(server: Any) -> None:
    result = predict(server.url, "-m", "bert", "--data", "-", "--username", "user@example.com", input="[1]")
    assert result.exit_code == 2
    assert "give the password with --password or MAR_BUILD_PASSWORD" in result.stderr


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{not json", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b'{"inputs": [1]}', 'has no "instances" key (keys: inputs) (TorchServe\'s KServe v1 reads only'),
        (b'{"instances": {"data": "x"}}', '"instances" is a JSON object, not a list'),
        (b'"hello"', "holds a JSON string, not a list of instances"),
        (b"\xff\xfe\x00", "not UTF-8 text"),
        (b"  \n", "empty input"),
    ],
)
def test_bad_input_files_name_the_file_and_the_problem(
    server: Any, model: V1Model, tmp_path: Path, content: bytes, words: str
) -> None:
    data = tmp_path / "bad.json"
    data.write_bytes(content)
    result = predict(server.url, "-m", "bert", "--data", str(data))
    assert result.exit_code == 1
    assert f"error: {data}: " in result.stderr
    assert words in result.stderr
    assert "hint:" in result.stderr
    assert model.requests == []


def test_bad_instances_on_the_command_line(server: Any) -> None:
    result = predict(server.url, "-m", "bert", "--instances", "[1,")
    assert result.exit_code == 1
    assert "error: --instances: not valid JSON" in result.stderr


@pytest.mark.parametrize("args", [[], ["--instances", "[1]", "--data", "-"]])
def test_exactly_one_source_of_instances(server: Any, args: list[str]) -> None:
    result = predict(server.url, "-m", "bert", *args, input="[1]")
    assert result.exit_code == 2
    assert "exactly one of --data FILE|- and --instances JSON" in result.stderr


def test_a_wrong_model_name_lists_what_the_server_has(server: Any) -> None:
    result = predict(server.url, "-m", "torchserve", "--instances", "[1]")
    assert result.exit_code == 1
    assert "model 'torchserve' not found" in result.stderr
    assert "the server has: bert" in result.stderr
    assert "hint: the model name in the URL is the key in model_snapshot" in result.stderr
    assert "Traceback" not in result.output


def test_nothing_listening_is_a_clean_error(port: int) -> None:
    result = predict(f"http://127.0.0.1:{port}", "-m", "bert", "--instances", "[1]", "--retries", "1",
                     "--request-timeout", "2")
    assert result.exit_code == 1
    assert "cannot connect to" in result.stderr and "after 2 attempts" in result.stderr


@pytest.mark.parametrize("flag", ["--request-timeout", "--timeout"])
def test_the_request_timeout_bounds_each_request(flag: str) -> None:
    """A server that takes the connection and never answers: the request gives up after the timeout (the old
    --timeout still works). A bare listening socket: the kernel accepts, nothing reads, no server thread left."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        result = predict(url, "-m", "bert", "--instances", "[1]", "--retries", "0", flag, "0.3")
    assert time.monotonic() - started < 1.4
    assert result.exit_code == 1
    assert "error: no answer from" in result.stderr and "within 0.3 s" in result.stderr
    deprecated = "warning: `cli predict`: --timeout is deprecated, use --request-timeout"
    assert (deprecated in result.stderr) == (flag == "--timeout")
