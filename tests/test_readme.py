"""Every code block of README.md and of the user guide runs as written.

Each ```python block of README.md runs on its own, in a fresh interpreter (a
subprocess started in an empty directory), so that a block cannot lean on
names defined by an earlier one; each must exit cleanly and print something.
The python blocks of each page of doc/ run in order in one fresh interpreter
(a page reads as one session), and must exit cleanly. The ```bash
blocks are not run (they create environments and install packages); every
command in them must exist: the programs on PATH, the modules behind
``python -m``, the scripts in the repository and the extras in
pyproject.toml (as installed).
"""

import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Pages whose blocks need more than this machine: dask.rst connects to a
# scheduler (tcp://scheduler:8786).
_NOT_RUN = {"dask.rst"}


def _blocks(language):
    return re.findall(rf"^```{language}\n(.*?)^```$", README, flags=re.MULTILINE | re.DOTALL)


PYTHON_BLOCKS = _blocks("python")
BASH_BLOCKS = _blocks("bash")
# The extras of the installed natgmm: pyproject.toml's optional dependencies.
EXTRAS = set(importlib.metadata.metadata("natgmm").get_all("Provides-Extra") or [])
# Commands of the shell itself, which `which` cannot find.
BUILTINS = {".", "source", "cd", "export"}


def test_readme_has_code_blocks():
    assert len(PYTHON_BLOCKS) >= 2
    assert len(BASH_BLOCKS) >= 2
    fences = re.findall(r"^```(\w*)$", README, flags=re.MULTILINE)
    # Every opening fence names a language this test knows (closing ones are bare).
    assert set(fences[0::2]) <= {"python", "bash"}, fences


def _run_python(code, directory):
    """Run ``code`` in a fresh interpreter in ``directory``; assert it exits cleanly."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return result


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block_runs_and_prints(index, tmp_path):
    result = _run_python(PYTHON_BLOCKS[index], tmp_path)
    assert result.stdout.strip(), "the block prints nothing when run as a script"


def _commands(block):
    """Each simple command of a bash block, as a list of words."""
    for line in block.splitlines():
        line = line.split(" #")[0].strip()
        for command in re.split(r"&&|\|\||;", line):
            if command.strip():
                yield shlex.split(command)


def _check_command(words):
    program, args = words[0], words[1:]
    if program in BUILTINS:
        return
    if program == "env":  # env [-u NAME | NAME=value]... command
        while args and (args[0].startswith("-") or "=" in args[0]):
            args = args[2:] if args[0] == "-u" else args[1:]
        return _check_command(args)
    assert shutil.which(program) or program in {"python", "python3", "pip"}, program
    if program in {"python", "python3"}:
        if args[:1] == ["-m"]:
            module = args[1]
            assert importlib.util.find_spec(module) is not None, f"no module {module}"
            if module == "venv":
                return
        else:
            script = ROOT / args[0]
            assert script.is_file(), f"no script {args[0]}"
    if program == "pip" and args[:1] == ["install"]:
        for target in args[1:]:
            extras = re.fullmatch(r"(?:-e )?\.?(?:\[([\w,]+)\])?", target)
            if target in {"-e", "-q", "."} or not extras or not extras.group(1):
                continue
            for extra in extras.group(1).split(","):
                assert extra in EXTRAS, f"no extra {extra!r} in pyproject.toml"


@pytest.mark.parametrize("index", range(len(BASH_BLOCKS)))
def test_bash_block_commands_exist(index):
    commands = list(_commands(BASH_BLOCKS[index]))
    assert commands
    for words in commands:
        _check_command(words)


def test_bash_checker_catches_a_missing_command():
    with pytest.raises(AssertionError):
        _check_command(["python", "benchmarks/no_such_script.py"])
    with pytest.raises(AssertionError):
        _check_command(["python", "-m", "no_such_module_here"])
    with pytest.raises(AssertionError):
        _check_command(["pip", "install", "-e", ".[no_such_extra]"])
    with pytest.raises(AssertionError):
        _check_command(["no-such-program-anywhere"])


def _page_blocks(page):
    """The ``.. code-block:: python`` bodies of an .rst page, dedented, in order."""
    text = page.read_text(encoding="utf-8")
    pattern = r"^( *)\.\. code-block:: python\n(?:\1 +:.*\n)*\n((?:\1 +.*\n|\n)+)"
    return [textwrap.dedent(m.group(2)) for m in re.finditer(pattern, text, flags=re.MULTILINE)]


DOC_PAGES = sorted(page.name for page in (ROOT / "doc").glob("*.rst") if _page_blocks(page))


def test_the_doc_pages_have_code_blocks():
    assert len(DOC_PAGES) >= 5, DOC_PAGES
    assert _NOT_RUN <= set(DOC_PAGES)


@pytest.mark.parametrize("page", [p for p in DOC_PAGES if p not in _NOT_RUN])
def test_doc_page_blocks_run_in_order(page, tmp_path):
    _run_python("\n".join(_page_blocks(ROOT / "doc" / page)), tmp_path)
