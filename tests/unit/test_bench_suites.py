"""The logic of the image and network suites, without root: the synthetic image is
deterministic, and cycles are interleaved, split into setup/teardown/total and paired."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench import image, network
from bench.model import Sample

SPEC = image.ImageSpec(layers=2, files=6, file_size=1000, seed=3)


def test_layers_are_deterministic_and_mixed() -> None:
    a, b = image.layer_tars(SPEC), image.layer_tars(SPEC)
    assert a == b and len(a) == 2 and a[0] != a[1]
    other = image.layer_tars(image.ImageSpec(layers=2, files=6, file_size=1000, seed=4))
    assert other != a
    files = image.layer_entries(SPEC, 0)
    assert len(files) == 6 and all(500 <= len(d) <= 1500 for _, d in files)
    assert files[1][1].isascii() and not files[0][1].isascii()  # text and random halves


def test_build_writes_the_same_archives_twice(tmp_path: Path) -> None:
    def digest(p: Path) -> str:
        if p.is_file():
            return hashlib.sha256(p.read_bytes()).hexdigest()
        return "".join(digest(c) for c in sorted(p.rglob("*")) if c.is_file())

    one, two = image.build(SPEC, tmp_path / "1"), image.build(SPEC, tmp_path / "2")
    assert digest(one.docker_archive) == digest(two.docker_archive)
    assert digest(one.oci_layout) == digest(two.oci_layout)
    assert one.layer_bytes > 2 * 6 * 500
    assert one.label == f"2-layer, {one.layer_bytes / 1e6:.1f} MB"


def _phases(setup: float, teardown: float) -> network.Phases:
    return network.Phases(Sample(setup, setup / 2, 0), Sample(teardown, teardown / 2, 0))


def test_phases_total() -> None:
    assert _phases(1.0, 2.0).total == Sample(3.0, 1.5, 0)


def test_collect_warms_up_then_interleaves() -> None:
    calls: list[tuple[str, int]] = []

    def cycle(label: str, setup: float) -> network.Cycle:
        def run(i: int) -> network.Phases:
            calls.append((label, i))
            return _phases(setup, 2 * setup)

        return run

    c = network.collect([("a", cycle("a", 1.0)), ("b", cycle("b", 4.0))], rounds=3, warmup=1)
    assert [label for label, _ in calls] == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert [i for _, i in calls] == list(range(8))  # every pod id is new
    assert [len(c.phases[x]) for x in ("a", "b")] == [3, 3]
    setup, teardown, total = network.cases(c, warmup=1, notes=("n",))
    assert [x.title for x in (setup, teardown, total)] == [
        "pod network setup", "pod network teardown", "pod network setup + teardown",
    ]  # fmt: skip
    assert setup.ratios[0].peer == "b" and setup.ratios[0].wall == 0.25
    assert total.runners[0].samples[0] == Sample(3.0, 1.5, 0)
    assert total.notes == ("n",)


def test_cni_conflist_is_bridge_and_host_local() -> None:
    conf = network.cni_conflist("/x/ipam")
    types = [p["type"] for p in conf["plugins"]]
    assert types == ["loopback", "bridge"]
    assert conf["plugins"][1]["ipam"]["type"] == "host-local"
    assert conf["plugins"][1]["ipam"]["dataDir"] == "/x/ipam"
