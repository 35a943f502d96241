"""The generator that draws a run's images from its recorded codes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py

from xdream import records
from xdream.errors import ConfigError, UnknownNameError, XDreamError
from xdream.generators.base import Generator


def load_generator(run: str | Path, record: records.Record | None = None) -> Generator:
    """The generator that rendered a run's codes, rebuilt from its ``config.yaml``.

    Runs built in Python (no ``config.yaml``) are rebuilt from the generator's name and
    parameters in the record. An earlier xdream recorded the generator's name only: such a run's
    generator is rebuilt with default parameters, with a :class:`UserWarning` saying so, and
    refused if its code dimension differs from the recorded codes.
    """
    import dataclasses
    import warnings

    from xdream import generators

    folder = records.RunFolder(run)
    named_only = False
    if folder.config.exists():
        spec = _generator_section(folder)
    else:
        record = record or records.read(run, codes=False)
        name = record.config.get("generator")
        if isinstance(name, dict):
            spec = dict(name)
        else:
            spec, named_only = {"name": name}, True
        if not isinstance(spec.get("name"), str):
            raise XDreamError(f"{str(folder.path)!r} records no generator name")
    name = spec.pop("name")
    gen = generators.make(name, **spec)
    if folder.record.exists():
        try:
            with h5py.File(folder.record, "r", locking=False) as f:
                code_dim = int(f.attrs["code_dim"])
        except records.UNREADABLE as err:
            raise records.unreadable(folder.path, err) from err
        if code_dim != gen.code_dim:
            raise XDreamError(
                f"{str(folder.path)!r} holds codes of dimension {code_dim}, but generator "
                f"{name!r} with {'default' if named_only else 'the recorded'} parameters takes "
                f"{gen.code_dim}; the run was built in Python with other generator parameters, "
                "which its record does not hold (no config.yaml to rebuild it)"
            )
    if named_only:
        defaults = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(gen.params).items())
        warnings.warn(
            f"{str(folder.path)!r} was built in Python by an earlier xdream, whose record names "
            f"the generator ({name!r}) but not its parameters: its images are drawn with the "
            f"default parameters ({defaults}), which may differ from what the run showed "
            "(best.png and images/ hold what it showed)",
            UserWarning,
            stacklevel=2,
        )
    return gen


def _generator_section(folder: records.RunFolder) -> dict[str, Any]:
    """``config.yaml``'s ``[generator]``, validated on its own: drawing the images needs the
    generator alone, so a run whose other sections name a component that this process does not
    know (a network registered from the user's own code) is drawn too. A file without such a
    section, or one that does not parse, is read whole, for its error."""
    from xdream import config as config_mod

    try:
        section = config_mod.read(folder.config).get("generator")
    except ConfigError:
        section = None  # the whole file's reading says what is wrong, and how to put it back
    if isinstance(section, Mapping):
        try:
            return dict(config_mod.from_dict({"generator": section}).generator)
        except UnknownNameError as err:
            raise folder.unregistered(err) from None
        except ConfigError:
            pass
    return dict(folder.load_config().generator)
