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
