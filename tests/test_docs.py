"""The user guide cannot rot: every shell command shown in README.md and docs/*.md (the lab notebooks aside)
still parses, every `make` target named there exists, and every link points at a file of this repository.

Commands are checked with each script's own argument parser (`build_parser()`, or the parser a bench script
builds in main()), in this process: no subprocess, no torch import per command.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, script_parser

USER_PAGES = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").glob("*.md")
                                           if not p.name.startswith("notebook"))
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
WRAPPERS = {"taskset": 2, "xvfb-run": 1, "nice": 2, "time": 0}  # prefix -> how many of its own arguments follow
PYTHONS = {"python", "python3", ".venv/bin/python"}
# Commands of other tools that the guide shows as they are; anything else is an error, so a new kind of
# command gets a check (or is added here on purpose).
OTHER_TOOLS = {"ray", "pip", "source", "tensorboard"}
MAKE_TARGET = re.compile(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", re.M)


def shell_blocks(page: Path) -> list[tuple[int, str]]:
    """(first line number, text) of each fenced block in a shell language."""
    blocks, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        fence = lines[i].strip()
        if fence.startswith("```"):
            language, start, i = fence[3:].strip().lower(), i + 1, i + 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                i += 1
            if language in SHELL_LANGUAGES:
                blocks.append((start + 1, "\n".join(lines[start:i])))
        i += 1
    return blocks


def commands(text: str) -> list[list[str]]:
    """The simple commands of a shell snippet, as argv lists: comments dropped, continuations joined, split
    at |, &&, || and ;, leading VAR=value assignments and wrappers such as `taskset -c 0` removed."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        argv: list[str] = []
        for token in [*lexer, ";"]:
            if token in {"|", "||", "&&", ";", "&"}:
                while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
                    argv = argv[1:]
                while argv and argv[0] in WRAPPERS:
                    argv = argv[1 + WRAPPERS[argv[0]]:]
                if argv:
                    out.append(argv)
                argv = []
            else:
                argv.append(token)
    return out


def makefile_targets() -> set[str]:
    return set(MAKE_TARGET.findall((ROOT / "Makefile").read_text()))


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


_PARSERS: dict[str, argparse.ArgumentParser] = {}


def parser_of(script: str) -> argparse.ArgumentParser:
    """The parser `python <script>` parses its arguments with."""
    if script in _PARSERS:
        return _PARSERS[script]
    path = ROOT / script
    if path.parent == ROOT:
        parser = script_parser(script)
        parser = parser[0] if isinstance(parser, tuple) else parser  # analyze.py: (parser, subcommands)
    else:  # a bench script builds its parser in main(): stop main() at its parse_args and keep the parser
        spec = importlib.util.spec_from_file_location(f"_docs_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        def stop(self, *args, **kwargs):
            raise _Parsed(self)

        original = argparse.ArgumentParser.parse_args
        argparse.ArgumentParser.parse_args = stop
        try:
            module.main()
        except _Parsed as found:
            parser = found.parser
        else:
            raise AssertionError(f"{script}: main() returned without parsing its arguments")
        finally:
            argparse.ArgumentParser.parse_args = original
    for each in [parser, *(sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                            for sub in action.choices.values())]:
        each.allow_abbrev = False  # the guide spells every flag out: an abbreviation breaks when a flag is added
    _PARSERS[script] = parser
    return parser


def problem(argv: list[str]) -> str:
    """Why this command would fail as written ('' if it would not)."""
    program, args = argv[0], argv[1:]
    if program == "make":
        targets = [a for a in args if not a.startswith("-") and "=" not in a]
        missing = [t for t in targets if t not in makefile_targets()]
        return f"no such Makefile target: {' '.join(missing)}" if missing else ""
    if program in OTHER_TOOLS:
        return ""
    if program not in PYTHONS:
        return f"unknown program {program!r} (check it, or add it to OTHER_TOOLS)"
    if args[:1] == ["-m"]:
        return "" if args[1:2] == ["pytest"] else f"unknown module {args[1:2]}"
    if not args or not args[0].endswith(".py"):
        return "python without a script"
    script, flags = args[0], args[1:]
    if not (ROOT / script).is_file():
        return f"no such script: {script}"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser_of(script).parse_args(flags)
    except SystemExit as e:
        return f"{script} refuses these arguments (exit {e.code}): {err.getvalue().strip()}"
    return ""


def all_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in USER_PAGES:
        for line, text in shell_blocks(page):
            found += [(f"{page.relative_to(ROOT)}:{line}", argv) for argv in commands(text)]
    return found


def test_every_command_in_the_guide_parses():
    found = all_commands()
    shown = {argv[1] for _, argv in found if argv[0] in PYTHONS}
    stages = {p.name for p in ROOT.glob("0[1-7]_*.py")}
    assert stages | {"run_all.py", "analyze.py", "play.py"} <= shown, "the guide should show every script"
    assert {"demo", "test"} <= {a for _, argv in found if argv[0] == "make" for a in argv[1:]}
    failures = [f"{where}: {' '.join(argv)}\n    {why}" for where, argv in found if (why := problem(argv))]
    assert not failures, "commands in the guide that would fail:\n" + "\n".join(failures)


def test_the_check_catches_a_broken_command():
    """The checker itself: a misspelled flag, a bad value, a missing script or target all fail it."""
    assert problem(["python", "02_train_vae.py", "--logdir", "runs/doom", "--epochs", "10"]) == ""
    assert "--epohcs" in problem(["python", "02_train_vae.py", "--logdir", "runs/doom", "--epohcs", "10"])
    assert "--epoch" in problem(["python", "02_train_vae.py", "--logdir", "runs/doom", "--epoch", "10"])
    assert problem(["python", "06_test_controller.py", "--logdir", "runs/doom", "--episodes", "many"])
    assert problem(["python", "analyze.py", "calibrate", "--logdir", "runs/doom"])
    assert problem(["python", "bench/bench_generate.py", "--episode", "60"])
    assert problem(["python", "08_not_a_stage.py"])
    assert problem(["make", "demos"]) and not problem(["make", "carracing", "SEED=1"])
    assert problem(["rm", "-rf", "runs"])
    assert commands("A=1 taskset -c 0 python x.py --a 'b c' \\\n  --d  # note\nmake demo && make test | tail") == [
        ["python", "x.py", "--a", "b c", "--d"], ["make", "demo"], ["make", "test"], ["tail"]]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_links_stay_in_the_repository_and_land():
    failures = []
    for page in USER_PAGES:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if ROOT not in path.parents or not path.exists():
                failures.append(f"{page.name}: {target} is not a file of this repository")
            elif anchor and path.suffix == ".md":
                anchors = {slug(h) for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M)}
                if anchor not in anchors:
                    failures.append(f"{page.name}: no heading #{anchor} in {path.name}")
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:  # the notebooks too
        if re.search(r"\bissues? #?\d+|\bissue-\d+", page.read_text(), re.I):
            failures.append(f"{page.name}: mentions an issue number; say what changed instead")
    assert not failures, "\n".join(failures)


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in (ROOT / "docs").glob("*.md") if f"docs/{p.name}" not in readme]
    assert not unlinked, unlinked


def test_an_old_python_gets_one_line_naming_both_versions(tmp_path):
    """README promises Python 3.11: an older one is refused in one line (exit 2) by make and by the scripts."""
    old = subprocess.run([sys.executable, "-c", "import sys; sys.version_info = (3, 10, 4, 'final', 0); "
                          "import common"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert old.returncode == 2 and old.stderr.count("\n") == 1, old.stderr
    assert "3.11" in old.stderr and "3.10.4" in old.stderr, old.stderr
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\necho 3.9.18\n")
    fake.chmod(0o755)
    made = subprocess.run(["make", "-s", "-C", str(ROOT), "check-python", f"PYTHON={fake}"], capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 2, made
    error = [line for line in made.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "3.11" in error[0] and "3.9.18" in error[0], made.stderr
    assert subprocess.run(["make", "-s", "-C", str(ROOT), "check-python", f"PYTHON={sys.executable}"],
                          capture_output=True, timeout=60).returncode == 0
