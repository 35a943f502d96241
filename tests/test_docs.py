"""Documentation that is generated or promised stays true."""

from __future__ import annotations

import re
from pathlib import Path

from xdream import cli, docs

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_up_to_date() -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    assert text == docs.updated(text), (
        "docs/config.md is out of date with the registered components' parameters: "
        "regenerate it with `python -m xdream.docs --write`"
    )


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
