"""``[rig]``: the config section that makes a recording rig (spec §9) the experiment's target."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Channels = Any
"""``None`` (mean of all channels), an int, or a list of ints and lists of ints."""

TIMEOUT_POLICIES = ("wait", "skip", "pause")
MATCH_POLICIES = ("strict", "loose")


@dataclass(frozen=True)
class RigSection:
    """``[rig]``: folders, file formats, blocks, channels, timeouts and safety of the rig loop.

    Relative folders are relative to the experiment's output folder, and made there; an
    absolute folder must exist (a rig's share not mounted is refused, not made).
    """

    write_dir: str = "stimuli"
    """Folder where xdream writes ``block{NNN}_{MMM}_{id}.png`` for the rig to show; a relative
    one is made in the experiment folder, an absolute one that does not exist is refused (but
    by the resume of a finished run, which has nothing to show)."""
    score_dir: str | None = None
    """Folder where the rig writes ``block{NNN}.mat`` (or ``.h5``, ``.json``, ``.csv``);
    ``None`` = ``write_dir`` (as XDream). Made or refused as ``write_dir``."""
    response_format: str = "auto"
    """Response reader: ``"auto"`` (by file extension), ``"mat"``, ``"h5"``, ``"json"``,
    ``"csv"`` or a plug-in's name."""
    image_format: str = "png"
    """Image writer: ``"png"``, ``"bmp"`` or a plug-in's name."""
    plugins: tuple[str, ...] = ()
    """Modules (importable names or absolute ``.py`` paths) imported first; they register
    extra readers and image writers (see ``examples/rig_plugin_npz.py``)."""
    block_size: int | None = None
    """Stimuli per block (blanks not counted); ``None`` = the whole generation in one block."""
    reps: int = 1
    """Times each image is shown; every showing is in a different block position and its
    responses are averaged."""
    shuffle: bool = True
    """Shuffle the presentation order (seeded; the order is journaled)."""
    require_response: bool = False
    """Show images that got no response (none, or only NaN) again, in extra blocks, up to
    ``max_reshows`` rounds."""
    max_reshows: int = 3
    """Rounds of re-showing for ``require_response``."""
    channels: Channels = None
    """``None`` = mean over all channels; ``3`` = channel 3 (0-based: the 4th row of
    ``tEvokedResp``); ``[3, 5]`` = mean of channels 3 and 5; ``[[0, 1], [4, 5]]`` = the mean
    over the groups of each group's mean. Every entry's own score is recorded too. A NaN or
    infinite value in a selected channel (any channel of a group; any at all for ``None``) makes
    the showing no response."""
    match: str = "strict"
    """``"strict"``: stimulus names must equal the written file names; ``"loose"``: folders,
    extension and the ``block{NNN}_{MMM}_`` prefix are ignored (the image id must match)."""
    cleanup: bool = True
    """Delete a block's images from ``write_dir`` once its response is in (as XDream)."""
    backup: bool = True
    """Copy every image and every response file into the experiment folder (``rig/``)."""
    blanks: int = 0
    """Blank (uniform grey) trials added to every block; their responses are recorded."""
    blank_value: float = 0.5
    """Grey level of blank trials, in [0, 1]."""
    subtract_blank: bool = False
    """Subtract the block's mean blank response (baseline) from every score in the block; NaN
    blanks are left out, and a block with no blank response takes the generation's mean blank
    (or the last generation's)."""
    timeout: float = 120.0
    """Seconds to wait for a block's response before ``on_timeout`` applies. The block times
    out at a look at ``score_dir`` after this deadline, so a file that came in time while
    xdream was busy (encoding the next block) is still taken."""
    on_timeout: str = "skip"
    """``"wait"`` (warn, keep waiting), ``"skip"`` (no response: NaN, go on; a late file is
    still recorded) or ``"pause"`` (stop; continue with ``xdream resume``)."""
    poll_interval: float = 0.005
    """Seconds between looks at ``score_dir``; a response file counts as complete once it
    parses and has stayed unchanged (size, modification time) this long."""
    settle: float = 2.0
    """A response file that stopped growing but still cannot be read is logged as malformed
    after this many seconds (it is read again if it changes); one that answers only some of
    its block's stimuli (or a CSV file without a final line end) is accepted only once it has
    stayed unchanged this long."""
    settle_always: bool = False
    """Accept every response file only once it has stayed unchanged for ``settle`` seconds,
    not only partial ones: for a rig that cannot rename its files into place and writes one
    in several steps that each answer every stimulus (a CSV file listing the names again for
    each pass), whose cut between two passes xdream cannot tell from a complete file."""
    manifest: bool = True
    """After a block's images, write ``block{NNN}.txt`` listing them: a rig that waits for it
    never sees a partial block."""
    image_size: int | None = None
    """Resize images to this many pixels before writing; ``None`` keeps the generator's size."""
    seed: int | None = None
    """Seed of the presentation order; ``None`` derives it from the experiment's seed."""

    def __post_init__(self) -> None:
        def positive_int(key: str, value: Any, allow_none: bool = False, minimum: int = 1) -> None:
            if value is None and allow_none:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"'{key}' must be an integer >= {minimum}, got {value!r}")

        positive_int("block_size", self.block_size, allow_none=True)
        positive_int("reps", self.reps)
        positive_int("max_reshows", self.max_reshows, minimum=0)
        positive_int("blanks", self.blanks, minimum=0)
        positive_int("image_size", self.image_size, allow_none=True)
        for key in ("timeout", "poll_interval", "settle"):
            value = getattr(self, key)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not math.isfinite(value)  # nan never times out, nor settles
                or value <= 0
            ):
                wait = (
                    '; to wait for a response for ever, set on_timeout = "wait" (it warns every '
                    "timeout seconds)"
                    if key == "timeout" and value == math.inf
                    else ""
                )
                raise ValueError(
                    f"'{key}' must be a positive finite number of seconds, got {value!r}{wait}"
                )
        if self.on_timeout not in TIMEOUT_POLICIES:
            raise ValueError(
                f"'on_timeout' must be one of {', '.join(TIMEOUT_POLICIES)}, "
                f"got {self.on_timeout!r}"
            )
        if self.match not in MATCH_POLICIES:
            raise ValueError(f"'match' must be 'strict' or 'loose', got {self.match!r}")
        if not 0.0 <= float(self.blank_value) <= 1.0:
            raise ValueError(f"'blank_value' must be in [0, 1], got {self.blank_value!r}")
        if self.subtract_blank and self.blanks == 0:
            raise ValueError("'subtract_blank' needs blank trials: set 'blanks' to 1 or more")
        for key in ("write_dir", "response_format", "image_format"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"'{key}' must be a non-empty string")
        if self.score_dir is not None and not isinstance(self.score_dir, str):
            raise ValueError(f"'score_dir' must be a folder name, got {self.score_dir!r}")
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0
        ):
            raise ValueError(f"'seed' must be an integer >= 0 (or none), got {self.seed!r}")
        channel_groups(self.channels)  # validates


def channel_groups(channels: Channels) -> list[list[int]] | None:
    """``channels`` as a list of groups (each averaged); ``None`` = all channels averaged."""
    if channels is None:
        return None

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    error = ValueError(
        "'channels' must be left out (the mean of all channels), a channel number (0-based), "
        f"a non-empty list of channel numbers, or a list of lists of them; got {channels!r}"
    )
    if is_int(channels):
        return [[channels]]
    if not isinstance(channels, (list, tuple)) or not channels:
        raise error
    groups = []
    for c in channels:
        if is_int(c):
            groups.append([c])
        elif isinstance(c, (list, tuple)) and c and all(is_int(x) for x in c):
            groups.append(list(c))
        else:
            raise error
    return groups
