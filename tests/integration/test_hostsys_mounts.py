"""hostsys's mount table questions on real mounts: paths that mountinfo escapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral_common import hostsys

pytestmark = [pytest.mark.root]


def test_umount_all_below_a_path_with_spaces_and_backslashes(tmp_path: Path) -> None:
    # mountinfo writes a space as \040 and a backslash as \134: the lines asked for are found
    # by the escaped path, and what is found is compared unescaped.
    top = tmp_path / "a dir\\x"
    inner = top / "m 1"
    inner.mkdir(parents=True)
    h = hostsys.host()
    try:
        h.mount("tmpfs", inner, "tmpfs")
        (inner / "n").mkdir()
        h.mount("tmpfs", inner / "n", "tmpfs")
        h.mount("tmpfs", inner / "n", "tmpfs")  # stacked
        assert hostsys.mounts_under(top) == [str(inner / "n"), str(inner)]
        assert hostsys.mounts_under(tmp_path / "a dir") == []  # a prefix of the name only
        hostsys.umount_all(top)
        assert hostsys.mounts_under(top) == []
    finally:
        for _ in range(4):
            for mp in hostsys.mounts_under(tmp_path):
                h.umount(mp)
