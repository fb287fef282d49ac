"""Which input file or array is which channel of a trained network: matched by name.

A network trained on ``t1, t1ce, t2, flair`` must get those four in that order. Datasets
name the same sequences differently (BraTS 2021 ``t1ce``, BraTS 2023 ``t1c``, others
``t1gd``; nnU-Net numbers its channels and names them in ``dataset.json``), so inputs are
matched to the run's channels by name, through one alias table (:data:`MODALITY_ALIASES`).
Inputs whose names do not match are refused, naming them; taking inputs in the order
given is done only when asked for (``channel_order="positional"``,
``--channel-order positional``), because a silent swap gives a wrong mask without any
sign of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from ..errors import CalfConfigError, CalfInputError

T = TypeVar("T")

#: The one alias table: a modality -> every name it goes by (compared after
#: :func:`normalise_name`). Each alias belongs to exactly one modality.
MODALITY_ALIASES: dict[str, tuple[str, ...]] = {
    "t1": ("t1", "t1n", "t1w", "t1native"),
    "t1ce": ("t1ce", "t1c", "t1gd", "t1post", "t1contrast"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2f", "t2flair"),
}

#: ``channel_order`` values: match by name (default), or take inputs in the order given.
CHANNEL_ORDERS: tuple[str, ...] = ("names", "positional")

_ALIAS_TO_MODALITY = {alias: m for m, aliases in MODALITY_ALIASES.items() for alias in aliases}
_DROP = re.compile(r"[\s_\-.]+")


def normalise_name(name: str) -> str:
    """``"T1-Gd"`` -> ``"t1gd"``: lower case, without spaces, ``-``, ``_`` or dots."""
    return _DROP.sub("", str(name).strip().lower())


def canonical_modality(name: str) -> str:
    """The modality a name stands for (``"T2f"`` -> ``"flair"``); unknown names stay
    themselves, normalised (``"DWI"`` -> ``"dwi"``, ``"0000"`` -> ``"0000"``)."""
    key = normalise_name(name)
    return _ALIAS_TO_MODALITY.get(key, key)


def alias_help() -> str:
    """The alias table in one line, for messages and help texts."""
    return "; ".join(f"{m} = {'/'.join(a)}" for m, a in MODALITY_ALIASES.items())


def check_channel_order(channel_order: str) -> str:
    if channel_order not in CHANNEL_ORDERS:
        raise CalfConfigError(
            f"channel_order={channel_order!r} is not a valid choice. Fix: use "
            f"{' or '.join(CHANNEL_ORDERS)}."
        )
    return channel_order


def file_modality_token(path: str | Path) -> str:
    """The modality part of a NIfTI file name: what follows its last ``_`` or ``-``
    (``BraTS-GLI-00000-000-t1c.nii.gz`` -> ``t1c``, ``case_0001.nii.gz`` -> ``0001``)."""
    from ..io._nifti import nifti_stem

    stem = nifti_stem(Path(path))
    cut = max(stem.rfind("_"), stem.rfind("-"))
    return stem[cut + 1:] if 0 <= cut < len(stem) - 1 else stem


def match_channels(
    given: Mapping[str, T],
    wanted: Sequence[str],
    *,
    given_names: Mapping[str, str] | None = None,
    wanted_names: Mapping[str, str] | None = None,
    channel_order: str = "names",
    where: str | Path | None = None,
    describe: Mapping[str, str] | None = None,
) -> list[T]:
    """Values of ``given`` in the order of the run's channels ``wanted``.

    Parameters
    ----------
    given : mapping key -> value
        The inputs, keyed by their own names (file tokens, modality keys, nnU-Net channel
        numbers), in the order the user gave them.
    wanted : sequence of str
        The run's channels, in the network's order. Empty: nothing to match against (a
        bare network), the inputs are used as given.
    given_names, wanted_names : mapping, optional
        Human names of keys where known (nnU-Net ``dataset.json``: ``"0001" -> "T1Gd"``).
    channel_order : {"names", "positional"}
        ``"positional"`` takes the inputs in the order given, only checking their count.
    where : path, optional
        The case or file named in errors.
    describe : mapping, optional
        Key -> how to name that input in messages (e.g. its file name).

    Raises
    ------
    CalfInputError
        The counts differ, or an input matches no channel, two inputs match one channel,
        or a channel has no input: the message names each and the aliases understood.
    """
    check_channel_order(channel_order)
    keys = list(given)
    if wanted and len(keys) != len(wanted):
        raise CalfInputError(
            where,
            f"has {len(keys)} modalities ({', '.join(keys)}), but the model was trained on "
            f"{len(wanted)} ({', '.join(wanted)}).",
            "give the same modalities the model was trained with.",
        )
    if not wanted or channel_order == "positional":
        return [given[k] for k in keys]
    given_names = dict(given_names or {})
    wanted_names = dict(wanted_names or {})
    describe = dict(describe or {})

    def identity(key: str, names: Mapping[str, str]) -> str:
        return canonical_modality(names.get(key, key))

    def shown_wanted(w: str) -> str:
        return w if w not in wanted_names else f"{w} ({wanted_names[w]})"

    chosen: dict[str, str] = {}
    problems: list[str] = []
    claimed: set[str] = set()
    for w in wanted:
        hits = [k for k in keys if identity(k, given_names) == identity(w, wanted_names)]
        if not hits and w in given and (w not in given_names or w not in wanted_names):
            # the same raw key (e.g. nnU-Net "0001") where one side has no human name
            hits = [w]
        claimed.update(hits)
        if len(hits) == 1:
            chosen[w] = hits[0]
        elif hits:
            problems.append(f"channel {shown_wanted(w)} is matched by several inputs: "
                            + ", ".join(_shown(k, given_names, describe) for k in hits))
        else:
            problems.append(f"no input for channel {shown_wanted(w)}")
    taken = list(chosen.values())
    for k in sorted({k for k in taken if taken.count(k) > 1}):
        problems.append(f"{_shown(k, given_names, describe)} matches several channels")
    unmatched = [k for k in keys if k not in claimed]
    if unmatched:
        problems.append("not matched to any channel: "
                        + ", ".join(_shown(k, given_names, describe) for k in unmatched))
    if problems:
        order = ", ".join(wanted_names.get(w, w) for w in wanted)
        raise CalfInputError(
            where,
            f"its inputs cannot be matched to the run's channels ({order}) by name: "
            + "; ".join(problems) + f". Names understood as the same modality: {alias_help()}.",
            "name the files after the modality (e.g. case_t1ce.nii.gz), or, if the inputs "
            f"are already in the run's order ({order}), ask for that with "
            "--channel-order positional (channel_order='positional' in Python).",
        )
    return [given[chosen[w]] for w in wanted]


def _shown(key: str, names: Mapping[str, str], describe: Mapping[str, str]) -> str:
    text = describe.get(key, key)
    return f"{text} ({names[key]})" if key in names else text


def files_by_token(paths: Sequence[Path]) -> tuple[dict[str, Path], dict[str, str], dict[str, str]]:
    """Files keyed by their modality token, with names (for tokens made unique) and how
    to show each in messages: ``(files, names, shown)`` for :func:`match_channels`."""
    keyed: dict[str, Path] = {}
    names: dict[str, str] = {}
    shown: dict[str, str] = {}
    for p in paths:
        token = file_modality_token(p)
        key, n = token, 2
        while key in keyed:  # two files with one token: both stay, and the match refuses
            key, n = f"{token}#{n}", n + 1
        if key != token:
            names[key] = token
        keyed[key] = Path(p)
        shown[key] = Path(p).name
    return keyed, names, shown
