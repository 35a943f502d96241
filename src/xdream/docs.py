"""Reference tables of every registered component's parameters, for ``docs/config.md``.

``python -m xdream.docs`` prints the tables; ``python -m xdream.docs --write`` rewrites the
generated part of ``docs/config.md``, and ``--check`` exits with status 1 where that part is out
of date (changing nothing). A test fails when the file is out of date.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
from pathlib import Path
from typing import Any

BEGIN = "<!-- BEGIN GENERATED: python -m xdream.docs --write -->"
END = "<!-- END GENERATED -->"


def attribute_docs(cls: type[Any]) -> dict[str, str]:
    """Field descriptions from a Google-style ``Attributes:`` docstring section."""
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    if "Attributes:" not in doc:
        return out
    current = ""
    for line in doc.split("Attributes:", 1)[1].splitlines():
        m = re.match(r"^    (\w+)(?: \([^)]*\))?: (.*)$", line)
        if m:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif line.startswith("        ") and current:
            out[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break
    return out


def markdown(text: str) -> str:
    """``text`` with its Sphinx roles (``:attr:`a.b```) written as Markdown code (```a.b```);
    a ``~`` target keeps its last two parts (``:meth:`~a.b.C.d``` becomes ```C.d```)."""

    def code(m: re.Match[str]) -> str:
        target = m.group(2)
        if target.startswith("~"):
            target = ".".join(target[1:].split(".")[-2:])
        return f"`{target}`"

    return re.sub(r":(\w+):`([^`]*)`", code, text)


def _fmt(value: Any) -> str:
    return "none" if value is None else f"`{value!r}`".replace("|", "\\|")


def params_table(role: str, registry: Any) -> str:
    """A markdown section: one table per registered component of ``role``."""
    lines = []
    for name in registry.names():
        cls = registry.get(name)
        params_cls = getattr(cls, "Params", cls)
        docs = {**attribute_docs(params_cls), **attribute_docs(cls)}
        summary = markdown(registry.summary(name))
        lines += [
            f"### {role} `{name}`",
            "",
            summary,
            "",
            "| key | default | meaning |",
            "|---|---|---|",
        ]
        for f in dataclasses.fields(params_cls):
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (
                    f.default_factory()
                    if f.default_factory is not dataclasses.MISSING  # type: ignore[misc]
                    else None
                )
            )
            meaning = markdown(docs.get(f.name, "")).replace("|", "\\|")
            lines.append(f"| `{f.name}` | {_fmt(default)} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def generated() -> str:
    """The generated part of ``docs/config.md``."""
    from xdream import generators, optimizers, scorers

    return "\n".join(
        [
            BEGIN,
            "",
            "## Generator parameters (`[generator]`)",
            "",
            params_table("generator", generators.REGISTRY),
            "## Optimiser hyperparameters (`[optimizer]`)",
            "",
            params_table("optimizer", optimizers.REGISTRY),
            "## Noise models (`[noise]`)",
            "",
            params_table("noise", scorers.NOISE_REGISTRY),
            END,
        ]
    )


def config_doc_path() -> Path:
    return Path(__file__).resolve().parents[2] / "docs" / "config.md"


def updated(text: str) -> str:
    """``text`` (docs/config.md) with its generated part replaced by :func:`generated`."""
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return head + generated() + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xdream.docs",
        description="Print the parameter tables of docs/config.md (generated from the "
        "registered components), or write or check that file's generated part.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--write", action="store_true", help="rewrite the generated part of docs/config.md"
    )
    action.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 if docs/config.md is out of date (changes nothing)",
    )
    args = parser.parse_args(argv)
    if args.write or args.check:
        path = config_doc_path()
        text = path.read_text()
        if args.check:
            if text != updated(text):
                print(
                    f"{path} is out of date with the registered components' parameters: "
                    "run `python -m xdream.docs --write`",
                    file=sys.stderr,
                )
                return 1
            print(f"{path} is up to date")
            return 0
        path.write_text(updated(text))
        print(f"wrote {path}")
    else:
        print(generated())
    return 0


if __name__ == "__main__":
    sys.exit(main())
