"""Documentation that is generated or promised stays true."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from xdream import cli, docs

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_up_to_date() -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    assert text == docs.updated(text), (
        "docs/config.md is out of date with the registered components' parameters: "
        "regenerate it with `python -m xdream.docs --write`"
    )


def test_the_docs_module_checks_the_file_and_refuses_unknown_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m xdream.docs --check` printed the tables and exited 0 whatever the file held,
    and so did a misspelt `--wirte`: now --check says whether docs/config.md is current (status
    1 if not, the file unchanged) and an unknown option is an error."""
    doc = tmp_path / "config.md"
    stale = f"# head\n\n{docs.BEGIN}\nstale tables\n{docs.END}\n"
    doc.write_text(stale)
    monkeypatch.setattr(docs, "config_doc_path", lambda: doc)
    assert docs.main(["--check"]) == 1
    assert "python -m xdream.docs --write" in capsys.readouterr().err
    assert doc.read_text() == stale
    assert docs.main(["--write"]) == 0
    assert docs.main(["--check"]) == 0
    assert doc.read_text() == docs.updated(stale) != stale
    with pytest.raises(SystemExit) as exit_:
        docs.main(["--wirte"])
    assert exit_.value.code == 2


def test_every_generated_key_has_a_meaning() -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    generated = text.split(docs.BEGIN, 1)[1]
    empty = [
        line for line in generated.splitlines() if re.fullmatch(r"\| `\w+` \| .* \|\s*\|", line)
    ]
    assert not empty, f"parameters without a description (an Attributes: docstring entry): {empty}"


def test_generated_tables_show_no_sphinx_roles() -> None:
    """docs/config.md is Markdown: a raw :data:`X` there means nothing to its reader."""
    roles = re.findall(r":\w+:`[^`]*`", docs.generated())
    assert not roles, f"Sphinx roles in the generated tables: {roles}"
    assert docs.markdown("see :meth:`~a.b.C.d` and :attr:`x.y`") == "see `C.d` and `x.y`"


def test_every_section_key_is_documented() -> None:
    import dataclasses

    from xdream.config import ExperimentSection, TargetSection

    text = (ROOT / "docs" / "config.md").read_text()
    for section in (ExperimentSection, TargetSection):
        for field in dataclasses.fields(section):
            assert f"`{field.name}`" in text, field.name


def test_readme_documents_every_command() -> None:
    readme = (ROOT / "README.md").read_text()
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        assert re.search(rf"`xdream {name}\b", readme), f"README lacks `xdream {name}`"


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in readme and "python -m pytest" in ci
    install = re.search(r"^pip install (.*?)\s+#", readme, re.M)
    assert install is not None and f"pip install --quiet {install.group(1)}" in ci


def _quoted_calls(text: str) -> list[tuple[str, str]]:
    """``(dotted name, argument text)`` of each ``xdream.a.b(...)`` in code: fenced blocks and
    inline spans."""
    blocks = re.findall(r"^```\w*\n(.*?)^```", text, re.M | re.S)
    prose = re.sub(r"^```\w*\n.*?^```", "", text, flags=re.M | re.S)
    found = []
    for span in [*blocks, *re.findall(r"`([^`]+)`", prose)]:
        for match in re.finditer(r"\b(xdream(?:\.\w+)+)\(", span):
            depth, start = 1, match.end()
            for end in range(start, len(span)):
                depth += {"(": 1, ")": -1}.get(span[end], 0)
                if depth == 0:
                    found.append((match.group(1), span[start:end]))
                    break
    return found


def _resolve(dotted: str) -> object:
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise AssertionError(dotted)


def _shape(arguments: str) -> tuple[int, list[str]]:
    """How many positional arguments and which keywords the README's text passes: a call
    (``make("pixels", size=64)``) or a signature (``make_unit(network, *, layer, ...)``, whose
    parameters with a default are read as keywords)."""
    import ast

    text = re.sub(r",?\s*\.\.\.\s*", "", arguments)  # "..." stands for more options
    try:  # a signature
        args = ast.parse(f"def f({text}): pass").body[0].args  # type: ignore[attr-defined]
        plain = [*args.posonlyargs, *args.args]
        positional = len(plain) - len(args.defaults)
        return positional, [a.arg for a in [*plain[positional:], *args.kwonlyargs]]
    except SyntaxError:
        call = ast.parse(f"f({text})", mode="eval").body
        assert isinstance(call, ast.Call)
        keywords = [k.arg for k in call.keywords if k.arg is not None]
        return sum(not isinstance(a, ast.Starred) for a in call.args), keywords


def test_the_readmes_calls_and_signatures_fit_the_code() -> None:
    """README gave make_unit(network, layer, channel, ...), whose layer and channel are
    keyword-only: the positional call it suggested raised TypeError."""
    import inspect

    readme = (ROOT / "README.md").read_text()
    calls = _quoted_calls(readme)
    assert any(name == "xdream.scorers.make_unit" for name, _ in calls)
    wrong = []
    for name, arguments in calls:
        positional, keywords = _shape(arguments)
        signature = inspect.signature(_resolve(name))
        bind = signature.bind_partial if "..." in arguments else signature.bind
        try:
            bind(*[None] * positional, **dict.fromkeys(keywords))
        except TypeError as err:
            wrong.append(f"{name}({arguments}): {err}")
    assert not wrong, wrong


DOCS = (
    "README.md",
    "docs/config.md",
    "docs/records.md",
    "docs/optimizers.md",
    "docs/benchmarks.md",
)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return dict(action.choices) if action is not None else {}


def _commands_quoted(text: str) -> list[str]:
    """Each ``xdream CMD ...`` command line the text quotes: inline code that starts with it
    (the Commands table included) and the lines of code blocks that do (continuation lines
    joined)."""
    blocks = re.findall(r"^```\w*\n(.*?)^```", text, re.M | re.S)
    prose = re.sub(r"^```\w*\n.*?^```", "", text, flags=re.M | re.S)
    lines = [*re.findall(r"`([^`\n]+)`", prose)]
    for block in blocks:
        lines += block.replace("\\\n", " ").splitlines()
    return [m.group(1) for line in lines if (m := re.match(r"\s*(xdream [a-z][^|;&#]*)", line))]


def test_every_option_the_docs_give_a_command_is_one_it_has() -> None:
    """README.md and docs/ name commands and their options (`xdream report DIR --out OUT`):
    each command must exist and take each option, so a renamed or removed option fails here
    rather than for the user who copies the line."""
    parser = cli.build_parser()
    commands = _subcommands(parser)
    wrong = []
    for name in DOCS:
        for quoted in _commands_quoted((ROOT / name).read_text()):
            words = quoted.split()
            command = commands.get(words[1])
            if command is None:
                # "xdream demo", "xdream sweep", ... are commands; other words ("xdream's",
                # a module path) are not quotes of a command line
                if re.fullmatch(r"[a-z]+(-[a-z]+)*", words[1]) and len(words) > 2:
                    wrong.append(f"{name}: {quoted!r}: no command {words[1]!r}")
                continue
            sub = _subcommands(command)
            if sub:  # xdream bench throughput ...
                if len(words) < 3 or words[2] not in sub:
                    continue
                command = sub[words[2]]
            options = {o for a in command._actions for o in a.option_strings}
            for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", quoted):
                if option not in options:
                    wrong.append(f"{name}: {quoted!r}: {option} is no option of it")
    assert not wrong, wrong


def _literal(cell: str) -> tuple[bool, Any]:
    """The value of a table cell that starts with a quoted literal (`` `2.0` ``, `` `"auto"` ``,
    `` `[0]` ``), or ``none``; ``(False, None)`` for a default given in words."""
    if cell.startswith("none"):
        return True, None
    m = re.match(r"`([^`]+)`", cell)
    if m is None:
        return False, None
    try:
        return True, json.loads(m.group(1))
    except json.JSONDecodeError:  # `[optimizer]`, `[experiment].seed`: a default in words
        return False, None


def test_the_hand_written_config_tables_state_the_defaults_of_the_code() -> None:
    """docs/config.md's tables of `[experiment]`, `[target]`, `[rig]`, `[sweep]` and `[tune]`
    are written by hand: each key of the section's dataclass is there, and a default given
    as a value is the dataclass's."""
    import dataclasses

    from xdream.config import ExperimentSection, TargetSection
    from xdream.rig.section import RigSection
    from xdream.sweep import SweepSection
    from xdream.tune import TuneSection

    text = (ROOT / "docs" / "config.md").read_text().split(docs.BEGIN)[0]
    sections = {
        "[experiment]": ExperimentSection(),
        "[target]": TargetSection(),
        "[rig]": RigSection(),
        "[sweep]": SweepSection,
        "[tune]": TuneSection,
    }
    wrong = []
    for heading, section in sections.items():
        part = re.split(rf"^## `{re.escape(heading)}`.*$", text, flags=re.M)[1]
        part = re.split(r"^## ", part, flags=re.M)[0]
        rows = re.findall(r"^\| (`[^|]+`) \| ([^|]*) \|", part, re.M)
        documented = {}
        for keys, default in rows:
            for key in re.findall(r"`(\w+)`", keys):
                documented[key] = default.strip()
        for field in dataclasses.fields(section):
            if field.name == "derived":  # SweepSection's, set from the budget, not a key
                continue
            if field.name not in documented:
                wrong.append(f"{heading} {field.name}: not in docs/config.md")
                continue
            given, value = _literal(documented[field.name])
            if not given:
                continue
            if isinstance(section, type):
                actual = field.default if field.default is not dataclasses.MISSING else None
            else:
                actual = getattr(section, field.name)
            if isinstance(actual, tuple):
                actual = list(actual)
            if value != actual or type(value) is bool is not type(actual):
                wrong.append(f"{heading} {field.name}: docs say {value!r}, the code {actual!r}")
    assert not wrong, wrong


def test_records_md_names_every_key_of_summary_json() -> None:
    """summary.json's keys (``experiment.Summary``) each have a row in docs/records.md, and
    every row names a key it has: `best_image_id`, `best_generation`, `code_dim` and
    `xdream_version` were written without a word about them."""
    from xdream.experiment import Summary

    text = (ROOT / "docs" / "records.md").read_text()
    assert "\n## `summary.json`\n" in text, "docs/records.md has no section `summary.json`"
    part = re.split(r"^## `summary\.json`$", text, flags=re.M)[1]
    part = re.split(r"^## ", part, flags=re.M)[0]
    rows = {
        k
        for cell in re.findall(r"^\| ([^|]+) \|", part, re.M)
        for k in re.findall(r"`(\w+)`", cell)
    }
    keys = set(Summary.__required_keys__ | Summary.__optional_keys__)
    assert rows == keys, (sorted(keys - rows), sorted(rows - keys))


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, code marks and punctuation other
    than ``-`` and ``_`` dropped, spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_in_the_docs_reach_their_files_and_headings() -> None:
    """A heading renamed (or a file moved) leaves the links to it pointing nowhere."""
    files = [ROOT / name for name in DOCS]
    anchors = {}
    for path in files:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
        anchors[path] = {_anchor(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}
    wrong = []
    for path in files:
        for link in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if re.match(r"\w+:", link):  # https:, mailto:
                continue
            target, _, anchor = link.partition("#")
            file = (path.parent / target).resolve() if target else path
            if not file.exists():
                wrong.append(f"{path.name}: ({link}): no file {target}")
            elif anchor and file.suffix == ".md" and anchor not in anchors.get(file, set()):
                wrong.append(f"{path.name}: ({link}): no heading #{anchor}")
    assert not wrong, wrong
