"""The package's commands as a user types them, each in a fresh process (they load torch): the CLI,
the stand-in and download commands, and what each says when something is wrong. No Ray."""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.harness import free_port
from sentiment.model import SentimentBertModel
from sentiment.settings import available_cores
from tests.helpers import assert_prediction

ROOT = Path(__file__).resolve().parents[2]


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess:
    """Run a Python command from the repository root, bounded in time."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for what the commands below save."""
    return tmp_path_factory.mktemp("commands")


@pytest.fixture(scope="module")
def loading(tiny_model_dir: Path, scratch: Path) -> dict[str, subprocess.CompletedProcess]:
    """The commands that load torch and transformers (seconds of one core each), run once and as
    many at a time as there are cores; the tests below read what each did."""
    model = {"SENTIMENT_MODEL": str(tiny_model_dir)}
    commands = {
        "cli": (["-m", "sentiment", "i like you", "so bad"], model, ""),
        "stdin": (["-m", "sentiment"], model, "one\n\ntwo\n"),
        "check": (["-m", "sentiment", "--check"], model, ""),
        "testing": (["-m", "sentiment.testing", "tiny", str(scratch / "m")], {}, ""),
        "download": (
            ["-m", "sentiment.download", str(scratch / "copy"), "--model", str(tiny_model_dir)],
            {},
            "",
        ),
        "unreachable": (
            ["-m", "sentiment.download", str(scratch / "x"), "--model", "no-org/no-model"],
            {},
            "",
        ),
    }
    with ThreadPoolExecutor(available_cores()) as pool:
        running = {
            name: pool.submit(run, *args, env=env, stdin=stdin)
            for name, (args, env, stdin) in commands.items()
        }
    return {name: future.result() for name, future in running.items()}


def test_cli_prints_one_json_answer_per_text(
    loading: dict[str, subprocess.CompletedProcess],
) -> None:
    done = loading["cli"]
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for text, line in zip(["i like you", "so bad"], lines, strict=True):
        assert_prediction(json.loads(line), text)


def test_cli_reads_stdin(loading: dict[str, subprocess.CompletedProcess]) -> None:
    done = loading["stdin"]
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["input_text"] for line in done.stdout.splitlines()] == ["one", "two"]


def test_cli_without_a_model_says_what_to_set() -> None:
    done = run("-m", "sentiment", "hello", env={"SENTIMENT_MODEL": "/no/such/model"})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip().splitlines()[-1].startswith("error: cannot load model '/no/such/model'")
    )
    assert "SENTIMENT_MODEL" in done.stderr


def test_testing_command_builds_a_loadable_model(
    loading: dict[str, subprocess.CompletedProcess], scratch: Path
) -> None:
    done = loading["testing"]
    assert done.returncode == 0, done.stderr
    assert "untrained" in done.stdout
    assert (scratch / "m" / "config.json").is_file()
    assert_prediction(
        SentimentBertModel(str(scratch / "m"), num_threads=1).predict("works"), "works"
    )


def test_download_saves_a_loadable_copy(
    loading: dict[str, subprocess.CompletedProcess], tiny_model_dir: Path, scratch: Path
) -> None:
    done = loading["download"]
    assert done.returncode == 0, done.stderr
    # Loaded in-process, through the same from_pretrained path as the CLI and the apps.
    original, copy = (
        SentimentBertModel(str(path), num_threads=1).predict("same answer")
        for path in (tiny_model_dir, scratch / "copy")
    )
    assert copy == original


def test_download_of_an_unreachable_model_is_one_line(
    loading: dict[str, subprocess.CompletedProcess],
) -> None:
    done = loading["unreachable"]
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: cannot load model 'no-org/no-model'")
    )


def test_cli_check_says_whether_the_model_can_be_had(
    loading: dict[str, subprocess.CompletedProcess],
) -> None:
    ok = loading["check"]
    assert ok.returncode == 0, ok.stderr
    missing = run("-m", "sentiment", "--check", env={"SENTIMENT_MODEL": "/no/such/model"})
    assert missing.returncode == 2
    assert (
        missing.stderr.startswith("error: cannot load model") and "Traceback" not in missing.stderr
    )


def test_cli_refuses_an_empty_text_as_the_apps_do(tiny_model_dir: Path) -> None:
    done = run("-m", "sentiment", "fine", "  ", env={"SENTIMENT_MODEL": str(tiny_model_dir)})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == "error: text 2 is empty or only whitespace"


def test_a_hub_model_with_the_hub_unreachable_fails_in_seconds(tmp_path: Path) -> None:
    # A hub nobody answers (a closed loopback port) and an empty cache: huggingface_hub alone
    # retries for about 25 s before it says so.
    env = {
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "HF_HOME": str(tmp_path),
        "SENTIMENT_MODEL": "no-org/no-model",
    }
    started = time.monotonic()
    done = run("-m", "sentiment", "hello", env=env)
    took = time.monotonic() - started
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot load model 'no-org/no-model': the model hub at")
    assert "cannot be reached" in line and "SENTIMENT_MODEL" in line
    assert took < 15, took


def test_a_bad_setting_is_one_line_naming_its_env_var() -> None:
    done = run("-m", "sentiment", "--check", env={"SENTIMENT_MAX_BATCH_SIZE": "0"})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: bad setting: SENTIMENT_MAX_BATCH_SIZE='0': Input should be greater than or equal to 1"
    )


def test_the_cli_needs_no_web_stack_and_no_ray() -> None:
    # The model-only image has neither: the CLI must not import them, even for its input rules.
    script = "import sys, sentiment.__main__; print(sorted({'fastapi', 'ray'} & set(sys.modules)))"
    done = run("-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_bad_setting_text_or_model_is_said_before_the_model_stack_loads(
    tiny_model_dir: Path,
) -> None:
    # torch and transformers take seconds to import; a mistake should not wait for them.
    script = (
        "import sys; from sentiment.__main__ import main; code = main(sys.argv[1:]);"
        " print(code, sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    bad_setting = run("-c", script, "--check", env={"SENTIMENT_MAX_BATCH_SIZE": "0"})
    empty_text = run("-c", script, "fine", " ", env={"SENTIMENT_MODEL": str(tiny_model_dir)})
    no_model = run("-c", script, "fine", env={"SENTIMENT_MODEL": "/no/such/model"})
    for done in (bad_setting, empty_text, no_model):
        assert done.stdout.strip() == "2 []", done.stderr
    assert "error: cannot load model '/no/such/model': no folder" in no_model.stderr


def test_the_ops_commands_and_the_apps_load_no_model_stack() -> None:
    # `make down` and the container's drain and stop on `docker stop` run the ops commands; the
    # scripts and Serve's build task (a fresh process per deploy, retried on failure) import the
    # apps: torch costs them seconds, which a replica pays when it loads its model.
    script = (
        "import sys, sentiment_ops.deploy, sentiment.apps;"
        " print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    done = run("-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
