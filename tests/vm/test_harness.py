"""The VM harness: its pure parts without a VM, then timeout and cleanup with one."""

from __future__ import annotations

import lzma
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from tests.vm import harness
from tests.vm.conftest import Runner

ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 57 + b"kernel text" * 100


def test_extract_vmlinux_finds_the_elf_after_false_matches() -> None:
    xz = lzma.compress(ELF, format=lzma.FORMAT_XZ)
    # A setup header, a stray xz magic that is no stream, then the payload and a trailer.
    image = b"MZ" + b"\0" * 500 + b"\xfd7zXZ\x00garbage" + b"\0" * 100 + xz + b"\0" * 64
    assert harness.extract_vmlinux(image) == ELF
    assert harness.extract_vmlinux(ELF) == ELF
    with pytest.raises(harness.VMUnavailable):
        harness.extract_vmlinux(b"MZ" + b"\0" * 1000)


def test_module_order_puts_dependencies_first() -> None:
    dep = (
        "kernel/fs/netfs/netfs.ko:\n"
        "kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko\n"
        "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko "
        "kernel/fs/netfs/netfs.ko\n"
        "kernel/net/9p/9pnet.ko:\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/gpu/unrelated.ko:\n"
    )
    order = harness.module_order(dep, ["9pnet_virtio", "9p", "not_there"])
    names = [os.path.basename(p) for p in order]
    assert names == [
        "virtio_ring.ko",
        "virtio.ko",
        "9pnet.ko",
        "9pnet_virtio.ko",
        "netfs.ko",
        "fscache.ko",
        "9p.ko",
    ]


def test_cpio_is_newc_with_aligned_entries() -> None:
    cpio = harness.Cpio()
    cpio.dir("bin")
    cpio.file("bin/x", b"abcde", 0o755)
    cpio.symlink("sh", "bin/x")
    data = cpio.finish()
    entries = []
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701" and pos % 4 == 0
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        body_at = pos + 110 + namesize
        body_at += -body_at % 4
        entries.append((name, mode, data[body_at : body_at + size]))
        pos = body_at + size
        pos += -pos % 4
        if name == "TRAILER!!!":
            break
    assert pos == len(data)
    assert entries[0][:2] == ("bin", stat.S_IFDIR | 0o755)
    assert entries[1] == ("bin/x", stat.S_IFREG | 0o755, b"abcde")
    assert entries[2] == ("sh", stat.S_IFLNK | 0o777, b"bin/x")


def test_tsc_frequency() -> None:
    dmesg = (
        "[0.000066] tsc: Detected 2596.120 MHz processor\n"
        "[1.2] tsc: Refined TSC clocksource calibration: 2596.991 MHz\n"
    )
    assert harness.parse_tsc_khz(dmesg) == 2596991
    assert harness.parse_tsc_khz("tsc: Detected 2596.1 MHz processor") == 2596100
    vm_cpu = "flags\t\t: fpu tsc constant_tsc tsc_known_freq\ncpu MHz\t\t: 2596.120\n"
    assert harness.parse_tsc_khz("", vm_cpu) == 2596120
    scaling = "flags\t\t: fpu tsc constant_tsc\ncpu MHz\t\t: 1200.000\n"
    assert harness.parse_tsc_khz("", scaling) is None  # the current clock, not the TSC's


def test_kvm_only_when_a_real_one_is_loaded(tmp_path: Path) -> None:
    mods = tmp_path / "module"
    (mods / "kvm").mkdir(parents=True)
    (mods / "kvm_pvm").mkdir()
    dev = tmp_path / "kvm"
    dev.touch()
    assert not harness.kvm_usable(mods, str(dev))  # a paravirtual flavour: not usable
    (mods / "kvm_amd").mkdir()
    assert harness.kvm_usable(mods, str(dev))
    assert not harness.kvm_usable(mods, str(tmp_path / "missing"))
    assert harness.accel(False).args == ("-accel", "tcg,thread=multi", "-cpu", "max")
    assert harness.accel(True).name == "kvm"


def test_find_kernel_wants_its_modules(tmp_path: Path) -> None:
    boot, mods = tmp_path / "boot", tmp_path / "modules"
    boot.mkdir()
    (boot / "vmlinuz-6.1.0-9-amd64").write_bytes(b"x")
    (boot / "vmlinuz-6.1.0-10-amd64").write_bytes(b"x")
    (boot / "vmlinuz-9.9.9-nomods").write_bytes(b"x")
    with pytest.raises(harness.VMUnavailable, match="linux-image-amd64"):
        harness.find_kernel(boot, mods)
    for version in ("6.1.0-9-amd64", "6.1.0-10-amd64"):
        (mods / version).mkdir(parents=True)
        (mods / version / "modules.dep").write_text("")
    assert harness.find_kernel(boot, mods).version == "6.1.0-10-amd64"


def test_qemu_command_shares_the_root_read_only_and_has_no_network(tmp_path: Path) -> None:
    files = harness.BootFiles(
        tmp_path / "vmlinux", tmp_path / "initrd", harness.Kernel(tmp_path, "6.1", tmp_path)
    )
    for machine, device in (("microvm", "virtio-9p-device"), ("pc", "virtio-9p-pci")):
        cmd = harness.qemu_command(
            "qemu",
            files,
            tmp_path / "out",
            tmp_path / "console",
            machine=machine,
            acc=harness.accel(False),
            tsc_khz=2596120 if machine == "microvm" else None,
            memory_mib=512,
            cpus=2,
            disk=None,
        )
        joined = " ".join(cmd)
        assert cmd[cmd.index("-M") + 1].split(",")[0] == machine
        assert "path=/,security_model=none,readonly=on" in joined
        assert f"{device},fsdev=fsroot" in joined and "-nic none" in joined
        assert "-no-reboot" in cmd and "-drive" not in cmd
        append = cmd[cmd.index("-append") + 1].split()
        assert "cgroup_no_v1=all" in append
        assert ("tsc_early_khz=2596120" in append) == (machine == "microvm")


def test_the_arm64_guest_boots_its_own_root_on_virt_with_the_source_shared(
    tmp_path: Path,
) -> None:
    files = harness.BootFiles(
        tmp_path / "Image",
        tmp_path / "initrd",
        harness.Kernel(tmp_path / "Image", "6.1.0-50-arm64", tmp_path),
        harness.AARCH64,
        tmp_path / "rootfs",
    )
    acc = harness.accel(arch=harness.AARCH64)
    assert acc.args == ("-accel", "tcg,thread=multi", "-cpu", "cortex-a57")
    machine = harness.choose_machine(None, acc, harness.AARCH64)
    cmd = harness.qemu_command(
        "qemu-system-aarch64",
        files,
        tmp_path / "out",
        tmp_path / "console",
        machine=machine,
        acc=acc,
        tsc_khz=None,
        memory_mib=1024,
        cpus=2,
        disk=None,
        src=Path("/work/checkout"),
    )
    joined = " ".join(cmd)
    assert cmd[cmd.index("-M") + 1] == "virt"
    assert f"path={tmp_path / 'rootfs'},security_model=none,readonly=on" in joined
    assert "path=/work/checkout,security_model=none,readonly=on" in joined
    assert f"virtio-9p-pci,fsdev=fssrc,mount_tag={harness.SRC_TAG}" in joined
    append = cmd[cmd.index("-append") + 1].split()
    assert "console=ttyAMA0" in append and "cgroup_no_v1=all" in append
    assert not any(a.startswith(("tsc_early_khz", "i8042")) for a in append)


def test_qemu_for_arm64_is_qemu_system_aarch64(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness.shutil, "which", lambda name: None)
    with pytest.raises(harness.VMUnavailable, match="apt-get install qemu-system-arm"):
        harness.qemu_binary(harness.AARCH64)
    monkeypatch.setattr(harness.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert harness.qemu_binary(harness.AARCH64) == "/usr/bin/qemu-system-aarch64"


def test_command_script_quotes() -> None:
    script = harness._command_script(["echo", "a b", "$HOME"], "/work dir", {"X": "1 2"})
    assert "export X='1 2'" in script
    assert "cd '/work dir'" in script
    assert script.rstrip().endswith("exec echo 'a b' '$HOME'")


def test_paths_under_the_fresh_tmp_and_run_are_kept() -> None:
    assert harness.hidden_paths(["/tmp/ci/repo", "/work/main", "/run", "/tmpx", "/tmp/a/../b"]) == [
        "/tmp/ci/repo",
        "/run",
        "/tmp/b",
    ]


def test_a_cwd_under_tmp_is_seen_in_the_guest(vm: Runner, tmp_path: Path) -> None:
    d = Path(tempfile.mkdtemp(prefix="corral-vm-keep-", dir="/tmp"))
    try:
        (d / "marker").write_text("from the host\n")
        res = vm(["/bin/sh", "-c", "cat marker && echo new > made"], cwd=str(d), scratch_disk=False)
        assert (res.rc, res.out) == (0, "from the host\n"), res.err
        assert not (d / "made").exists()  # writes stay in the guest
    finally:
        shutil.rmtree(d)


def test_a_hung_guest_is_killed_and_cleaned_up(vm: Runner, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(harness.VMError, match="did not finish within"):
        vm(["sleep", "1000"], timeout=10, workdir=work, scratch_disk=False)
    assert list(work.iterdir()) == []  # results share, console log: all gone
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert str(work).encode() not in cmdline, f"qemu {pid} left running"
