"""The power-loss filesystem's durability model, on a plain directory (no FUSE, no root).

``VolatileState`` is what the FUSE layer calls before each change; these tests make the same
calls as the filesystem does for each system call, then lose power (or stop cleanly) and look
at what is left. The same model through a real mount is in test_lazyfs_mount.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemesis.lazyfs import PAGE, VolatileState


class Disk:
    """A directory driven the way nemesis.lazyfs drives its backing directory."""

    def __init__(self, root: Path) -> None:
        self.root = root / "backing"
        self.root.mkdir()
        trash = root / "trash"
        trash.mkdir()
        self.state = VolatileState(str(trash))
        self.fds: dict[str, int] = {}

    def path(self, name: str) -> str:
        return str(self.root / name)

    def create(self, name: str) -> None:
        existed = os.path.lexists(self.path(name))
        self.fds[name] = os.open(self.path(name), os.O_RDWR | os.O_CREAT, 0o644)
        if not existed:
            self.state.created("create", self.path(name))

    def open(self, name: str) -> None:
        self.fds[name] = os.open(self.path(name), os.O_RDWR)

    def write(self, name: str, data: bytes, offset: int) -> None:
        self.state.before_write(self.fds[name], offset, len(data))
        os.pwrite(self.fds[name], data, offset)

    def truncate(self, name: str, size: int) -> None:
        self.state.before_truncate(self.fds[name], size)
        os.ftruncate(self.fds[name], size)

    def fsync(self, name: str) -> None:
        self.state.sync_file(self.fds[name])

    def fsync_dir(self) -> None:
        self.state.sync_metadata()

    def mkdir(self, name: str) -> None:
        os.mkdir(self.path(name))
        self.state.created("mkdir", self.path(name))

    def unlink(self, name: str) -> None:
        self.state.remove(self.path(name), "unlink")

    def rename(self, old: str, new: str) -> None:
        self.state.rename(self.path(old), self.path(new))

    def close_all(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def power_loss(self) -> dict[str, int]:
        self.close_all()
        return self.state.power_loss()

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def names(self) -> set[str]:
        return {p.name for p in self.root.iterdir()}


def test_a_write_without_fsync_is_gone_after_power_loss(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    disk.create("wal")
    disk.write("wal", b"header", 0)
    disk.fsync("wal")
    disk.write("wal", b"+record", 6)
    lost = disk.power_loss()
    assert disk.read("wal") == b"header"
    assert lost["dirty_files"] == 1
    assert lost["bytes_cut"] == 7


def test_a_write_with_fsync_survives_power_loss(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    disk.create("wal")
    disk.write("wal", b"header+record", 0)
    disk.fsync("wal")
    assert disk.power_loss()["dirty_files"] == 0
    assert disk.read("wal") == b"header+record"


def test_an_overwrite_and_a_truncate_without_fsync_are_rolled_back(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    disk.create("f")
    original = bytes(range(256)) * 40  # 10 KiB, three pages
    disk.write("f", original, 0)
    disk.fsync("f")
    disk.write("f", b"X" * 5000, 3000)  # crosses pages 0, 1 and 2
    disk.truncate("f", 100)
    disk.write("f", b"tail", 9000)  # extends again past the cut
    disk.power_loss()
    assert disk.read("f") == original


def test_a_new_file_needs_an_fsync_to_exist_after_power_loss(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    disk.create("lost")
    disk.write("lost", b"data", 0)
    disk.power_loss()
    assert disk.names() == set()


def test_an_fsync_of_the_directory_keeps_the_file_but_not_its_unsynced_data(
    tmp_path: Path,
) -> None:
    disk = Disk(tmp_path)
    disk.create("f")
    disk.write("f", b"never synced", 0)
    disk.fsync_dir()
    disk.power_loss()
    assert disk.names() == {"f"}
    assert disk.read("f") == b""


def test_any_fsync_commits_every_earlier_namespace_change_in_order(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    disk.create("a")
    disk.mkdir("d")
    disk.create("b")
    disk.fsync("b")  # commits the creation of a, d and b (an in-order journal)
    disk.create("c")  # after the last fsync: lost
    disk.power_loss()
    assert disk.names() == {"a", "b", "d"}


def _replace_snapshot(disk: Disk) -> None:
    """The atomic replacement servers do: write and fsync a temporary file, rename it over."""
    disk.create("snapshot")
    disk.write("snapshot", b"old", 0)
    disk.fsync("snapshot")
    disk.create("snapshot.tmp")
    disk.write("snapshot.tmp", b"new", 0)
    disk.fsync("snapshot.tmp")
    disk.rename("snapshot.tmp", "snapshot")


def test_a_rename_over_a_file_is_undone_without_a_later_fsync(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    _replace_snapshot(disk)
    disk.power_loss()
    # the rename was not made durable: the old snapshot is back, the new one under its old name
    assert disk.names() == {"snapshot", "snapshot.tmp"}
    assert disk.read("snapshot") == b"old"
    assert disk.read("snapshot.tmp") == b"new"


def test_a_rename_over_a_file_is_kept_after_an_fsync_of_the_directory(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    _replace_snapshot(disk)
    disk.fsync_dir()
    disk.power_loss()
    assert disk.names() == {"snapshot"}
    assert disk.read("snapshot") == b"new"


def test_rename_of_unsynced_data_keeps_the_name_and_loses_the_data(tmp_path: Path) -> None:
    """The classic zero-length file: write, rename, fsync the directory, crash."""
    disk = Disk(tmp_path)
    disk.create("config.tmp")
    disk.write("config.tmp", b"important", 0)
    disk.rename("config.tmp", "config")
    disk.fsync_dir()
    disk.power_loss()
    assert disk.names() == {"config"}
    assert disk.read("config") == b""


def test_an_unlink_without_fsync_comes_back_with_its_content(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    disk.create("f")
    disk.write("f", b"kept", 0)
    disk.fsync("f")
    disk.unlink("f")
    assert disk.names() == set()
    disk.power_loss()
    assert disk.read("f") == b"kept"


def test_an_unlink_made_durable_is_gone_and_its_trash_emptied(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    disk.create("f")
    disk.fsync("f")
    disk.unlink("f")
    disk.fsync_dir()
    disk.power_loss()
    assert disk.names() == set()
    assert list((tmp_path / "trash").iterdir()) == []


def test_a_clean_stop_keeps_everything(tmp_path: Path) -> None:
    disk = Disk(tmp_path)
    disk.create("f")
    disk.write("f", b"unsynced", 0)
    disk.mkdir("d")
    disk.close_all()
    kept = disk.state.keep_all()
    assert kept == {"dirty_files": 1, "journal_entries": 2}
    assert disk.names() == {"f", "d"}
    assert disk.read("f") == b"unsynced"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["write", "truncate", "fsync"]),
            st.integers(0, 4 * PAGE),
            st.integers(1, 2 * PAGE),
        ),
        max_size=25,
    )
)
def test_power_loss_restores_exactly_the_last_fsynced_content(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int, int]]
) -> None:
    """Any mix of writes, truncates and fsyncs: after a power loss the file holds what it held
    at its last fsync, byte for byte (a model in memory says what that is)."""
    disk = Disk(tmp_path_factory.mktemp("prop"))
    disk.create("f")
    disk.fsync("f")
    current = bytearray()
    durable = b""
    for number, (kind, offset, length) in enumerate(steps):
        if kind == "write":
            data = bytes([number % 251 + 1]) * length
            disk.write("f", data, offset)
            if offset > len(current):
                current.extend(b"\0" * (offset - len(current)))
            current[offset : offset + length] = data
        elif kind == "truncate":
            disk.truncate("f", offset)
            del current[offset:]
            current.extend(b"\0" * (offset - len(current)))
        else:
            disk.fsync("f")
            durable = bytes(current)
        assert disk.read("f") == bytes(current)
    disk.power_loss()
    assert disk.read("f") == durable
