"""Every command and code sample of README.md runs as shown."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_quick_start_has_exactly_the_two_make_commands() -> None:
    quick = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [
        line.split("#")[0].strip()
        for block in re.findall(r"```sh\n(.*?)```", quick, flags=re.S)
        for line in block.splitlines()
        if line.strip()
    ]
    assert commands == ["make demo", "make test"]
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M)
    assert re.search(r"^test:", makefile, flags=re.M)


def test_readme_commands_and_python_samples_run(tmp_path: Path) -> None:
    """Blocks run in document order: shell lines that call aacdata, and every Python block."""
    env = {**os.environ, "PYTHONPATH": str(README.parent)}
    namespace: dict[str, object] = {}
    python_blocks = 0
    cwd = os.getcwd()
    saved_environ = dict(os.environ)
    os.chdir(tmp_path)
    try:
        for language, block in re.findall(r"```(sh|python)\n(.*?)```", README.read_text(), flags=re.S):
            if language == "python":
                exec(compile(block, str(README), "exec"), namespace)
                python_blocks += 1
                continue
            for line in block.splitlines():
                command = line.split("#")[0].strip()
                if command.startswith(".venv/bin/aacdata "):
                    args = [sys.executable, "-m", "aacdata", *shlex.split(command)[1:]]
                    if args[3] == "bench":
                        args += ["--batches", "3"]
                elif command.startswith(".venv/bin/python benchmarks/"):
                    words = shlex.split(command)[1:]
                    assert "--quick" in words, f"{command}: the README's benchmark lines are the --quick ones"
                    args = [sys.executable, str(README.parent / words[0]), *words[1:], "--workdir", str(tmp_path / "b")]
                elif command.startswith(".venv/bin/torchrun "):
                    args = [sys.executable, "-m", "torch.distributed.run", "--master_port", str(_free_port())]
                    args += [str(README.parent / a) if a.endswith(".py") else a for a in shlex.split(command)[1:]]
                else:
                    continue  # make and pip lines are exercised by CI itself
                done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
                assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
    assert python_blocks >= 3
    assert (tmp_path / "demo-output" / "music.wav").is_file()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")
