"""The Dockerfile parser `meshimage` builds from: each instruction it implements, ARG
substitution, and a clear refusal of what it does not implement."""

from __future__ import annotations

from pathlib import Path

import pytest

from smimesh.testing.meshimage import dockerfile

ROOT = Path(__file__).resolve().parents[3]


def parse(text: str, **build_args: str) -> dockerfile.Dockerfile:
    return dockerfile.parse(text, build_args=build_args)


@pytest.mark.fast
def test_args_before_from_name_the_base_and_build_args_override_them() -> None:
    text = "ARG BASE=debian:bookworm-slim\nFROM ${BASE} AS one\nFROM $BASE\n"
    assert [stage.base for stage in parse(text).stages] == ["debian:bookworm-slim"] * 2
    (first, _) = parse(text, BASE="debian:trixie-slim").stages
    assert first.base == "debian:trixie-slim"
    assert first.name == "one"


@pytest.mark.fast
def test_env_substitutes_earlier_values_and_the_base_path() -> None:
    (stage,) = parse(
        'FROM debian:bookworm-slim\nARG V=1\nENV A=x${V} B="two words"\n'
        "ENV PATH=/opt/bin:$PATH C=${MISSING:-fallback}\nENV LEGACY old style\n"
    ).stages
    values = [pair for step in stage.steps if isinstance(step, dockerfile.Env)
              for pair in step.values]  # fmt: skip
    assert values == [
        ("A", "x1"), ("B", "two words"),
        ("PATH", "/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("C", "fallback"), ("LEGACY", "old style"),
    ]  # fmt: skip


@pytest.mark.fast
def test_run_takes_the_shell_form_through_shell_and_the_json_form_as_written() -> None:
    (stage,) = parse(
        "FROM debian:bookworm-slim\nRUN echo one \\\n  && echo two\n"
        'SHELL ["/bin/bash", "-o", "pipefail", "-c"]\nRUN echo three\n'
        'RUN ["/bin/true", "x"]\n'
    ).stages
    runs = [step.command for step in stage.steps if isinstance(step, dockerfile.Run)]
    assert runs == [
        ("/bin/sh", "-c", "echo one && echo two"),
        ("/bin/bash", "-o", "pipefail", "-c", "echo three"),
        ("/bin/true", "x"),
    ]


@pytest.mark.fast
def test_copy_workdir_user_and_copy_from_an_earlier_stage() -> None:
    built = parse(
        "FROM debian:bookworm-slim AS build\nWORKDIR /src\nCOPY a b ./dest/\n"
        "FROM debian:bookworm-slim\nCOPY --from=build /opt/x /opt/x\nUSER 65532:65532\n"
    )
    build, runtime = built.stages
    assert build.steps == (
        dockerfile.Workdir(2, "/src"),
        dockerfile.Copy(3, ("a", "b"), "./dest/"),
    )
    assert runtime.steps == (
        dockerfile.Copy(5, ("/opt/x",), "/opt/x", from_stage="build"),
        dockerfile.User(6, "65532:65532"),
    )
    assert built.stage("build") is build
    assert built.stage("0") is build
    with pytest.raises(dockerfile.DockerfileError, match="no earlier stage"):
        built.stage("missing")


@pytest.mark.fast
def test_label_expose_and_cmd_become_the_stage_metadata() -> None:
    (stage,) = parse(
        'FROM debian:bookworm-slim\nLABEL a="one two" \\\n      b=2\nEXPOSE 9443 15010/tcp\n'
        'CMD ["python", "-m", "x"]\n'
    ).stages
    assert stage.labels == {"a": "one two", "b": "2"}
    assert stage.exposed == ("9443", "15010/tcp")
    assert stage.cmd == ("python", "-m", "x")
    (shell_form,) = parse("FROM debian:bookworm-slim\nCMD run me\n").stages
    assert shell_form.cmd == ("/bin/sh", "-c", "run me")


@pytest.mark.fast
@pytest.mark.parametrize(
    "line",
    ["ADD https://example.invalid/x /x", "HEALTHCHECK CMD true", "VOLUME /data",
     "ONBUILD RUN true", "ENTRYPOINT [\"x\"]", "STOPSIGNAL SIGINT"],
)  # fmt: skip
def test_an_instruction_it_does_not_implement_is_refused_with_its_line(line: str) -> None:
    keyword = line.split()[0]
    with pytest.raises(dockerfile.DockerfileError, match=f"line 2: {keyword} is not implemented"):
        parse(f"FROM debian:bookworm-slim\n{line}\n")


@pytest.mark.fast
@pytest.mark.parametrize(
    "text",
    ["FROM debian:bookworm-slim\nRUN --mount=type=cache,target=/x true\n",
     "FROM debian:bookworm-slim\nCOPY --chown=1:1 a /a\n",
     "FROM --platform=linux/arm64 debian:bookworm-slim\n"],
)  # fmt: skip
def test_a_flag_it_does_not_implement_is_refused(text: str) -> None:
    with pytest.raises(dockerfile.DockerfileError, match="is not implemented by this builder"):
        parse(text)


@pytest.mark.fast
def test_malformed_files_are_errors_not_guesses() -> None:
    with pytest.raises(dockerfile.DockerfileError, match="no FROM"):
        parse("# only a comment\n")
    with pytest.raises(dockerfile.DockerfileError, match="before the first FROM"):
        parse("RUN true\nFROM debian:bookworm-slim\n")
    with pytest.raises(dockerfile.DockerfileError, match="JSON"):
        parse('FROM debian:bookworm-slim\nCMD ["unterminated"\n')
    with pytest.raises(dockerfile.DockerfileError, match="a source and a destination"):
        parse("FROM debian:bookworm-slim\nCOPY only\n")


@pytest.mark.fast
def test_the_repository_dockerfile_parses_into_its_two_stages() -> None:
    built = dockerfile.parse((ROOT / "Dockerfile").read_text())
    build, runtime = built.stages
    assert (build.name, runtime.name) == ("build", "runtime")
    assert build.base == runtime.base == "debian:bookworm-20250520-slim"
    assert runtime.cmd == ("python", "-m", "smimesh.operator")
    assert runtime.exposed == ("9443", "15010")
    assert dockerfile.User(runtime.steps[-2].line, "65532:65532") in runtime.steps
