"""A FUSE filesystem that forgets what was not fsynced: the disk of the ``power-loss`` fault.

Plain ``kill -9`` keeps the page cache, so a server that skips fsync survives it. This filesystem
is mounted over a server's data directory (``Backend.state_dir``) and, on a simulated power loss,
puts the directory back to its last *durable* state. The model (docs/nemeses.md, "Power loss"):

- **File data** (contents and size) written to a file is volatile until that file is fsynced
  (fsync or fdatasync on any descriptor of it, or a write through a descriptor opened with
  O_SYNC/O_DSYNC). Per file, as Linux's page cache is per inode.
- **Namespace changes** (create, mkdir, unlink, rmdir, rename) are journaled in order and become
  durable, all of them up to that moment, at the next fsync of *any* file or directory of this
  filesystem: an in-order metadata journal committed by any fsync, as ext4's (data=ordered)
  is. So ``write tmp; rename tmp f; crash`` loses the rename, ``create; fsync(dir)`` keeps the
  file but not data written to it and never fsynced (the zero-length-file-after-crash case).
- Everything else (attributes, times, permissions) takes effect at once and is never undone.

It is a passthrough to a *backing* directory beside the mount point that always holds the current
(volatile) state, so reads need no cache; what may be lost is kept as an undo record instead:
the original bytes of every 4 KiB page a write or truncate changes (saved once per page between
fsyncs) and the file's size when it became dirty, plus a trash directory holding what unlinks,
rmdirs and renames replaced. A power loss (SIGUSR1) unmounts, then rolls every dirty file back
and undoes the namespace journal newest first; a clean stop (SIGTERM) keeps everything. Both then
move the backing directory back to the mount point, so without the fault the data sits where the
backend expects it. The filesystem is only the bench's: fsync is passed through to the backing
file (the server's fsync latency stays real); hard links, symlinks, special files, xattrs and
fallocate are refused (ENOSYS/EPERM).

Standard library only (it runs on nodes under their system Python), speaking the kernel's FUSE
protocol on /dev/fuse directly: mounting needs root (CAP_SYS_ADMIN). One request at a time.

Run: ``python3 lazyfs.py DIR`` (mounts over DIR; backing ``DIR.lazyfs-backing``, trash
``DIR.lazyfs-trash``, report ``DIR.lazyfs-report.json`` written at exit).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import json
import os
import select
import shutil
import signal
import stat
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field

PAGE = 4096
FUSE_ROOT_ID = 1
FSTYPE = "fuse.lockbench-lazyfs"
BACKING_SUFFIX = ".lazyfs-backing"
TRASH_SUFFIX = ".lazyfs-trash"
REPORT_SUFFIX = ".lazyfs-report.json"
MAX_WRITE = 128 * 1024
READ_BUFFER = MAX_WRITE + 64 * 1024
# How long the kernel may cache names and attributes (seconds). Only this process changes the
# backing directory while mounted, and every power loss remounts, so any positive value is safe.
CACHE_SECONDS = 1
MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2
O_SYNC_FLAGS = os.O_SYNC | os.O_DSYNC
# Flags the backing descriptor must not get: the kernel sends explicit offsets (O_APPEND would
# override them), truncation goes through the undo record, sync writes are committed by hand.
STRIPPED_OPEN_FLAGS = (
    os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_APPEND | os.O_NOCTTY | O_SYNC_FLAGS | os.O_DIRECT
)

# Opcodes (include/uapi/linux/fuse.h)
LOOKUP, FORGET, GETATTR, SETATTR = 1, 2, 3, 4
MKNOD, MKDIR, UNLINK, RMDIR, RENAME = 8, 9, 10, 11, 12
OPEN, READ, WRITE, STATFS, RELEASE = 14, 15, 16, 17, 18
FSYNC, FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, FSYNCDIR = 20, 25, 26, 27, 28, 29, 30
ACCESS, CREATE, INTERRUPT, DESTROY, BATCH_FORGET, RENAME2 = 34, 35, 36, 38, 42, 45
NO_REPLY = frozenset({FORGET, BATCH_FORGET, INTERRUPT})

IN_HEADER = struct.Struct("<IIQQIIIHH")
OUT_HEADER = struct.Struct("<IiQ")
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
ENTRY_OUT = struct.Struct("<QQQQII")
ATTR_OUT = struct.Struct("<QII")
OPEN_OUT = struct.Struct("<QII")
INIT_IN = struct.Struct("<IIII")
INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")
READ_IN = struct.Struct("<QQIIQII")
WRITE_IN = struct.Struct("<QQIIQII")
WRITE_OUT = struct.Struct("<II")
SETATTR_IN = struct.Struct("<IIQQQQQQIIIIIIII")
GETATTR_IN = struct.Struct("<IIQ")
OPEN_IN = struct.Struct("<II")
CREATE_IN = struct.Struct("<IIII")
MKNOD_IN = struct.Struct("<IIII")
MKDIR_IN = struct.Struct("<II")
RENAME_IN = struct.Struct("<Q")
RENAME2_IN = struct.Struct("<QII")
FSYNC_IN = struct.Struct("<QII")
RELEASE_IN = struct.Struct("<QIIQ")
FORGET_IN = struct.Struct("<Q")
BATCH_FORGET_IN = struct.Struct("<II")
FORGET_ONE = struct.Struct("<QQ")
DIRENT = struct.Struct("<QQII")
KSTATFS = struct.Struct("<QQQQQIIII24x")

FATTR_MODE, FATTR_UID, FATTR_GID, FATTR_SIZE = 1, 2, 4, 8
FATTR_ATIME, FATTR_MTIME, FATTR_FH, FATTR_ATIME_NOW, FATTR_MTIME_NOW = 16, 32, 64, 128, 256
FUSE_GETATTR_FH = 1
FUSE_FSYNC_FDATASYNC = 1
FUSE_BIG_WRITES = 1 << 5
FUSE_KERNEL_MINOR = 31


# ------------------------------------------------------------------------------------------------
# The durability model, independent of FUSE (unit-tested on a plain directory)


FileKey = tuple[int, int]


def file_key(fd: int) -> FileKey:
    """What identifies a file whatever its name: (device, inode), as the page cache does."""
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


@dataclass(slots=True)
class DirtyFile:
    """A file with writes since its last fsync: its size then and the pages changed since."""

    fd: int
    size: int
    pages: dict[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One namespace change not yet made durable; ``trash`` holds what it removed or replaced."""

    kind: str  # create | mkdir | unlink | rmdir | rename
    path: str
    target: str | None = None
    trash: str | None = None


class VolatileState:
    """What a power loss would undo, and the undo itself. Paths are absolute backing paths."""

    def __init__(self, trash_dir: str) -> None:
        self.trash_dir = trash_dir
        self.dirty: dict[tuple[int, int], DirtyFile] = {}
        self.journal: list[JournalEntry] = []
        self._trash_counter = 0
        self.synced_files = 0

    # -- file data ---------------------------------------------------------------------------

    def _dirty(self, fd: int, key: FileKey | None) -> DirtyFile:
        if key is None:
            key = file_key(fd)
        record = self.dirty.get(key)
        if record is None:
            record = DirtyFile(os.dup(fd), os.fstat(fd).st_size)
            self.dirty[key] = record
        return record

    def _save_pages(self, record: DirtyFile, first: int, last: int) -> None:
        last = min(last, (record.size - 1) // PAGE)
        for page in range(first, last + 1):
            if page not in record.pages:
                # only the bytes the file had: the rest of the page may have been written since
                start = page * PAGE
                record.pages[page] = os.pread(record.fd, min(PAGE, record.size - start), start)

    def before_write(self, fd: int, offset: int, length: int, key: FileKey | None = None) -> None:
        """Save what the write is about to change (called before every write). ``key``: the
        file's ``file_key``, if the caller knows it (saves an fstat per write)."""
        if length <= 0:
            return
        record = self._dirty(fd, key)
        self._save_pages(record, offset // PAGE, (offset + length - 1) // PAGE)

    def before_truncate(self, fd: int, size: int) -> None:
        """Save what a truncate to ``size`` is about to cut off (called before it)."""
        record = self._dirty(fd, None)
        current = os.fstat(fd).st_size
        if size < current:
            self._save_pages(record, size // PAGE, (current - 1) // PAGE)

    def sync_file(self, fd: int, key: FileKey | None = None) -> None:
        """fsync of a file: its data and every namespace change so far become durable."""
        record = self.dirty.pop(key or file_key(fd), None)
        if record is not None:
            os.close(record.fd)
            self.synced_files += 1
        self.sync_metadata()

    # -- the namespace ---------------------------------------------------------------------

    def trash_path(self) -> str:
        self._trash_counter += 1
        return os.path.join(self.trash_dir, str(self._trash_counter))

    def created(self, kind: str, path: str) -> None:
        self.journal.append(JournalEntry(kind, path))

    def remove(self, path: str, kind: str) -> str:
        """Unlink or rmdir ``path`` undoably: it moves to the trash until the change is durable."""
        trash = self.trash_path()
        os.rename(path, trash)
        self.journal.append(JournalEntry(kind, path, trash=trash))
        return trash

    def rename(self, old: str, new: str) -> str | None:
        """Rename undoably; a replaced ``new`` goes to the trash. Returns its trash path."""
        trash = None
        if os.path.lexists(new):
            trash = self.trash_path()
            os.rename(new, trash)
        try:
            os.rename(old, new)
        except OSError:
            if trash is not None:
                os.rename(trash, new)
            raise
        self.journal.append(JournalEntry("rename", old, target=new, trash=trash))
        return trash

    def sync_metadata(self) -> None:
        """Any fsync commits the journal: removed things are gone for good."""
        for entry in self.journal:
            if entry.trash is not None:
                _remove_tree(entry.trash)
        self.journal.clear()

    # -- the two ends ------------------------------------------------------------------------

    def keep_all(self) -> dict[str, int]:
        """A clean stop: everything written stays (as after a clean shutdown's sync)."""
        kept = {"dirty_files": len(self.dirty), "journal_entries": len(self.journal)}
        for record in self.dirty.values():
            os.close(record.fd)
        self.dirty.clear()
        self.sync_metadata()
        return kept

    def power_loss(self) -> dict[str, int]:
        """Put every file and the namespace back to their durable state; returns what was lost."""
        lost = {
            "dirty_files": len(self.dirty),
            "bytes_cut": 0,
            "pages_restored": 0,
            "journal_entries": len(self.journal),
            "errors": 0,
        }
        for record in self.dirty.values():
            try:
                current = os.fstat(record.fd).st_size
                lost["bytes_cut"] += max(0, current - record.size)
                os.ftruncate(record.fd, record.size)
                for page, content in record.pages.items():
                    os.pwrite(record.fd, content, page * PAGE)
                lost["pages_restored"] += len(record.pages)
            except OSError:
                lost["errors"] += 1
            finally:
                os.close(record.fd)
        self.dirty.clear()
        for entry in reversed(self.journal):
            try:
                _undo(entry)
            except OSError:
                lost["errors"] += 1
        self.journal.clear()
        return lost


def _undo(entry: JournalEntry) -> None:
    if entry.kind == "create":
        os.unlink(entry.path)
    elif entry.kind == "mkdir":
        _remove_tree(entry.path)
    elif entry.kind in ("unlink", "rmdir"):
        assert entry.trash is not None
        os.rename(entry.trash, entry.path)
    else:
        assert entry.target is not None
        os.rename(entry.target, entry.path)
        if entry.trash is not None:
            os.rename(entry.trash, entry.target)


def _remove_tree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# ------------------------------------------------------------------------------------------------
# The FUSE side


class FuseError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(slots=True)
class Inode:
    path: str
    lookups: int = 0


@dataclass(slots=True)
class Handle:
    fd: int
    key: FileKey
    sync: bool = False


def _attr(info: os.stat_result) -> bytes:
    return ATTR.pack(
        info.st_ino,
        info.st_size,
        info.st_blocks,
        int(info.st_atime),
        int(info.st_mtime),
        int(info.st_ctime),
        info.st_atime_ns % 1_000_000_000,
        info.st_mtime_ns % 1_000_000_000,
        info.st_ctime_ns % 1_000_000_000,
        info.st_mode,
        info.st_nlink,
        info.st_uid,
        info.st_gid,
        info.st_rdev,
        info.st_blksize,
        0,
    )


def _name(data: bytes | memoryview) -> str:
    return os.fsdecode(bytes(data).split(b"\0", 1)[0])


def _two_names(data: bytes | memoryview) -> tuple[str, str]:
    first, second = bytes(data).split(b"\0")[:2]
    return os.fsdecode(first), os.fsdecode(second)


class LazyFS:
    """Serves FUSE requests from /dev/fuse over ``backing``; ``state`` records what may be lost."""

    def __init__(self, backing: str, state: VolatileState) -> None:
        self.backing = backing
        self.state = state
        self.inodes: dict[int, Inode] = {FUSE_ROOT_ID: Inode(backing, 1)}
        self.by_path: dict[str, int] = {backing: FUSE_ROOT_ID}
        self.handles: dict[int, Handle] = {}
        self.dir_handles: dict[int, list[tuple[str, int, int]] | None] = {}
        self.dir_fds: dict[int, int] = {}
        self._next_inode = FUSE_ROOT_ID + 1
        self._next_handle = 1
        self.root = os.geteuid() == 0
        self.destroyed = False
        self.requests = 0

    # -- bookkeeping -------------------------------------------------------------------------

    def path(self, nodeid: int) -> str:
        inode = self.inodes.get(nodeid)
        if inode is None:
            raise FuseError(errno.ESTALE)
        return inode.path

    def child(self, nodeid: int, name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise FuseError(errno.EINVAL)
        return os.path.join(self.path(nodeid), name)

    def entry(self, path: str) -> bytes:
        info = os.lstat(path)
        nodeid = self.by_path.get(path)
        if nodeid is None:
            nodeid = self._next_inode
            self._next_inode += 1
            self.inodes[nodeid] = Inode(path)
            self.by_path[path] = nodeid
        self.inodes[nodeid].lookups += 1
        return ENTRY_OUT.pack(nodeid, 0, CACHE_SECONDS, CACHE_SECONDS, 0, 0) + _attr(info)

    def forget(self, nodeid: int, count: int) -> None:
        inode = self.inodes.get(nodeid)
        if inode is None or nodeid == FUSE_ROOT_ID:
            return
        inode.lookups -= count
        if inode.lookups <= 0:
            del self.inodes[nodeid]
            if self.by_path.get(inode.path) == nodeid:
                del self.by_path[inode.path]

    def moved(self, old: str, new: str) -> None:
        """Paths under ``old`` are now under ``new`` (after a rename or a move to the trash)."""
        prefix = old + "/"
        for nodeid, inode in self.inodes.items():
            if inode.path == old or inode.path.startswith(prefix):
                if self.by_path.get(inode.path) == nodeid:
                    del self.by_path[inode.path]
                inode.path = new + inode.path[len(old) :]
                self.by_path[inode.path] = nodeid

    def open_handle(self, fd: int, flags: int) -> int:
        fh = self._next_handle
        self._next_handle += 1
        self.handles[fh] = Handle(fd, file_key(fd), bool(flags & O_SYNC_FLAGS))
        return fh

    def handle(self, fh: int) -> Handle:
        found = self.handles.get(fh)
        if found is None:
            raise FuseError(errno.EBADF)
        return found

    def _chown(self, path: str, uid: int, gid: int) -> None:
        if self.root:
            os.lchown(path, uid, gid)

    def _open_backing(self, path: str, flags: int, mode: int = 0, *, create: bool = False) -> int:
        # Read access too, whatever the caller asked for: the undo record reads old pages.
        extra = os.O_CREAT if create else 0
        base = flags & ~STRIPPED_OPEN_FLAGS & ~os.O_ACCMODE
        try:
            return os.open(path, base | extra | os.O_RDWR, mode)
        except PermissionError:
            return os.open(path, flags & ~STRIPPED_OPEN_FLAGS | extra, mode)

    def _truncate(self, fd: int, size: int) -> None:
        self.state.before_truncate(fd, size)
        os.ftruncate(fd, size)

    # -- requests ------------------------------------------------------------------------------

    def dispatch(self, request: memoryview) -> bytes | None:  # noqa: C901, PLR0912, PLR0915 - one branch per FUSE opcode
        """One request in, the reply's body out (None: no reply). Errors raise FuseError."""
        _, opcode, _, nodeid, uid, gid, _, _, _ = IN_HEADER.unpack_from(request)
        body = request[IN_HEADER.size :]
        if opcode == INIT:
            major, minor, readahead, _ = INIT_IN.unpack_from(body)
            if major != 7:
                raise FuseError(errno.EPROTO)
            return INIT_OUT.pack(
                7,
                min(minor, FUSE_KERNEL_MINOR),
                readahead,
                FUSE_BIG_WRITES,
                0,
                0,
                MAX_WRITE,
                1,
                0,
                0,
                0,
            )
        if opcode == LOOKUP:
            try:
                return self.entry(self.child(nodeid, _name(body)))
            except FileNotFoundError:
                raise FuseError(errno.ENOENT) from None
        if opcode == FORGET:
            self.forget(nodeid, FORGET_IN.unpack_from(body)[0])
            return None
        if opcode == BATCH_FORGET:
            count, _ = BATCH_FORGET_IN.unpack_from(body)
            for i in range(count):
                forgotten, lookups = FORGET_ONE.unpack_from(
                    body, BATCH_FORGET_IN.size + i * FORGET_ONE.size
                )
                self.forget(forgotten, lookups)
            return None
        if opcode == GETATTR:
            flags, _, fh = GETATTR_IN.unpack_from(body)
            if flags & FUSE_GETATTR_FH and fh in self.handles:
                info = os.fstat(self.handles[fh].fd)
            else:
                info = os.lstat(self.path(nodeid))
            return ATTR_OUT.pack(CACHE_SECONDS, 0, 0) + _attr(info)
        if opcode == SETATTR:
            return self.setattr(nodeid, body)
        if opcode in (OPEN, OPENDIR):
            flags, _ = OPEN_IN.unpack_from(body)
            path = self.path(nodeid)
            if opcode == OPENDIR:
                fh = self._next_handle
                self._next_handle += 1
                self.dir_handles[fh] = None
                return OPEN_OUT.pack(fh, 0, 0)
            fd = self._open_backing(path, flags)
            try:
                if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
                    self._truncate(fd, 0)
            except OSError:
                os.close(fd)
                raise
            return OPEN_OUT.pack(self.open_handle(fd, flags), 0, 0)
        if opcode == READ:
            fh, offset, size, _, _, _, _ = READ_IN.unpack_from(body)
            return os.pread(self.handle(fh).fd, size, offset)
        if opcode == WRITE:
            return self.write(body)
        if opcode in (FSYNC, FSYNCDIR):
            fh, flags, _ = FSYNC_IN.unpack_from(body)
            if opcode == FSYNC:
                handle = self.handle(fh)
                self.state.sync_file(handle.fd, handle.key)
                (os.fdatasync if flags & FUSE_FSYNC_FDATASYNC else os.fsync)(handle.fd)
            else:
                self.state.sync_metadata()
                dir_fd = os.open(self.path(nodeid), os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            return b""
        if opcode == FLUSH:
            return b""
        if opcode == RELEASE:
            fh = RELEASE_IN.unpack_from(body)[0]
            released = self.handles.pop(fh, None)
            if released is not None:
                os.close(released.fd)
            return b""
        if opcode == READDIR:
            fh, offset, size, _, _, _, _ = READ_IN.unpack_from(body)
            return self.readdir(nodeid, fh, offset, size)
        if opcode == RELEASEDIR:
            self.dir_handles.pop(RELEASE_IN.unpack_from(body)[0], None)
            return b""
        if opcode == STATFS:
            vfs = os.statvfs(self.backing)
            return KSTATFS.pack(
                vfs.f_blocks,
                vfs.f_bfree,
                vfs.f_bavail,
                vfs.f_files,
                vfs.f_ffree,
                vfs.f_bsize,
                vfs.f_namemax,
                vfs.f_frsize,
                0,
            )
        if opcode == ACCESS:
            return b""
        if opcode == CREATE:
            flags, mode, umask, _ = CREATE_IN.unpack_from(body)
            path = self.child(nodeid, _name(body[CREATE_IN.size :]))
            existed = os.path.lexists(path)
            if existed and flags & os.O_EXCL:
                raise FuseError(errno.EEXIST)
            fd = self._open_backing(path, flags, mode & ~umask & 0o7777, create=True)
            if not existed:
                self.state.created("create", path)
                self._chown(path, uid, gid)
            elif flags & os.O_TRUNC:
                self._truncate(fd, 0)
            return self.entry(path) + OPEN_OUT.pack(self.open_handle(fd, flags), 0, 0)
        if opcode == MKNOD:
            mode, _, umask, _ = MKNOD_IN.unpack_from(body)
            if not stat.S_ISREG(mode):
                raise FuseError(errno.EPERM)
            path = self.child(nodeid, _name(body[MKNOD_IN.size :]))
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode & ~umask & 0o7777))
            self.state.created("create", path)
            self._chown(path, uid, gid)
            return self.entry(path)
        if opcode == MKDIR:
            mode, umask = MKDIR_IN.unpack_from(body)
            path = self.child(nodeid, _name(body[MKDIR_IN.size :]))
            os.mkdir(path, mode & ~umask & 0o7777)
            self.state.created("mkdir", path)
            self._chown(path, uid, gid)
            return self.entry(path)
        if opcode in (UNLINK, RMDIR):
            path = self.child(nodeid, _name(body))
            info = os.lstat(path)
            if opcode == RMDIR:
                if not stat.S_ISDIR(info.st_mode):
                    raise FuseError(errno.ENOTDIR)
                if os.listdir(path):
                    raise FuseError(errno.ENOTEMPTY)
            elif stat.S_ISDIR(info.st_mode):
                raise FuseError(errno.EISDIR)
            trash = self.state.remove(path, "rmdir" if opcode == RMDIR else "unlink")
            self.moved(path, trash)
            return b""
        if opcode in (RENAME, RENAME2):
            if opcode == RENAME2:
                newdir, flags, _ = RENAME2_IN.unpack_from(body)
                if flags:
                    raise FuseError(errno.EINVAL)
                names = body[RENAME2_IN.size :]
            else:
                newdir = RENAME_IN.unpack_from(body)[0]
                names = body[RENAME_IN.size :]
            old_name, new_name = _two_names(names)
            self.rename(self.child(nodeid, old_name), self.child(newdir, new_name))
            return b""
        if opcode == DESTROY:
            self.destroyed = True
            return b""
        raise FuseError(errno.ENOSYS)

    def setattr(self, nodeid: int, body: memoryview) -> bytes:
        fields = SETATTR_IN.unpack_from(body)
        valid, _, fh, size = fields[0], fields[1], fields[2], fields[3]
        atime, mtime = fields[5], fields[6]
        atime_ns, mtime_ns = fields[8], fields[9]
        mode, uid, gid = fields[11], fields[13], fields[14]
        path = self.path(nodeid)
        if valid & FATTR_SIZE:
            if valid & FATTR_FH and fh in self.handles:
                self._truncate(self.handles[fh].fd, size)
            else:
                fd = self._open_backing(path, os.O_WRONLY)
                try:
                    self._truncate(fd, size)
                finally:
                    os.close(fd)
        if valid & FATTR_MODE:
            os.chmod(path, stat.S_IMODE(mode))
        if valid & (FATTR_UID | FATTR_GID):
            os.lchown(path, uid if valid & FATTR_UID else -1, gid if valid & FATTR_GID else -1)
        if valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW):
            info = os.lstat(path)
            now = time.time_ns()
            new_atime = info.st_atime_ns
            new_mtime = info.st_mtime_ns
            if valid & FATTR_ATIME_NOW:
                new_atime = now
            elif valid & FATTR_ATIME:
                new_atime = atime * 1_000_000_000 + atime_ns
            if valid & FATTR_MTIME_NOW:
                new_mtime = now
            elif valid & FATTR_MTIME:
                new_mtime = mtime * 1_000_000_000 + mtime_ns
            os.utime(path, ns=(new_atime, new_mtime), follow_symlinks=False)
        return ATTR_OUT.pack(CACHE_SECONDS, 0, 0) + _attr(os.lstat(path))

    def write(self, body: memoryview) -> bytes:
        fh, offset, size, _, _, flags, _ = WRITE_IN.unpack_from(body)
        handle = self.handle(fh)
        data = body[WRITE_IN.size : WRITE_IN.size + size]
        self.state.before_write(handle.fd, offset, len(data), handle.key)
        written = 0
        while written < len(data):
            written += os.pwrite(handle.fd, data[written:], offset + written)
        if handle.sync or flags & O_SYNC_FLAGS:
            self.state.sync_file(handle.fd, handle.key)
            os.fdatasync(handle.fd)
        return WRITE_OUT.pack(written, 0)

    def rename(self, old: str, new: str) -> None:
        if old == new:
            return
        source = os.lstat(old)
        try:
            target = os.lstat(new)
        except FileNotFoundError:
            target = None
        if target is not None:
            if stat.S_ISDIR(source.st_mode) and not stat.S_ISDIR(target.st_mode):
                raise FuseError(errno.ENOTDIR)
            if not stat.S_ISDIR(source.st_mode) and stat.S_ISDIR(target.st_mode):
                raise FuseError(errno.EISDIR)
            if stat.S_ISDIR(target.st_mode) and os.listdir(new):
                raise FuseError(errno.ENOTEMPTY)
        if stat.S_ISDIR(source.st_mode) and (new + "/").startswith(old + "/"):
            raise FuseError(errno.EINVAL)
        trash = self.state.rename(old, new)
        if trash is not None:
            self.moved(new, trash)
        self.moved(old, new)

    def readdir(self, nodeid: int, fh: int, offset: int, size: int) -> bytes:
        entries = self.dir_handles.get(fh)
        if entries is None or offset == 0:
            path = self.path(nodeid)
            entries = [(".", 1, 4), ("..", 1, 4)]
            with os.scandir(path) as scan:
                for item in scan:
                    if item.is_dir(follow_symlinks=False):
                        kind = 4
                    elif item.is_file(follow_symlinks=False):
                        kind = 8
                    elif item.is_symlink():
                        kind = 10
                    else:
                        kind = 0
                    entries.append((item.name, item.inode(), kind))
            self.dir_handles[fh] = entries
        out = bytearray()
        for index in range(offset, len(entries)):
            name, ino, kind = entries[index]
            raw = os.fsencode(name)
            record = DIRENT.pack(ino, index + 1, len(raw), kind) + raw
            record += b"\0" * (-len(record) % 8)
            if len(out) + len(record) > size:
                break
            out += record
        return bytes(out)


# ------------------------------------------------------------------------------------------------
# Mounting and the serving loop


@functools.cache
def _libc() -> ctypes.CDLL:
    """Loaded once, at the mount: find_library runs ldconfig, which a stop should not wait for."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def mount(device_fd: int, mountpoint: str) -> None:
    options = (
        f"fd={device_fd},rootmode=40000,user_id={os.getuid()},group_id={os.getgid()},"
        "default_permissions,allow_other"
    )
    libc = _libc()
    result = libc.mount(
        b"lockbench-lazyfs",
        os.fsencode(mountpoint),
        FSTYPE.encode(),
        MS_NOSUID | MS_NODEV,
        options.encode(),
    )
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mounting {FSTYPE} on {mountpoint}: {os.strerror(code)}")


def unmount(mountpoint: str) -> None:
    """Detach the mount (lazily: a process still inside cannot keep it)."""
    if _libc().umount2(os.fsencode(mountpoint), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):  # not mounted (any more)
            raise OSError(code, f"unmounting {mountpoint}: {os.strerror(code)}")


def is_mounted(mountpoint: str) -> bool:
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[1].replace("\\040", " ") == target:
                return True
    return False


def prepare_layout(directory: str) -> str:
    """Move the directory's contents aside to the backing directory; returns its path."""
    backing = directory + BACKING_SUFFIX
    if is_mounted(directory):
        raise SystemExit(f"lazyfs: {directory} is already a mount point")
    if os.path.isdir(backing):
        if os.path.isdir(directory) and os.listdir(directory):
            raise SystemExit(
                f"lazyfs: both {directory} and {backing} hold data (left by a crash?); "
                "move one of them away"
            )
    elif os.path.isdir(directory):
        os.rename(directory, backing)
    else:
        os.makedirs(backing)
    os.makedirs(directory, exist_ok=True)
    trash = directory + TRASH_SUFFIX
    shutil.rmtree(trash, ignore_errors=True)
    os.makedirs(trash)
    return backing


def restore_layout(directory: str) -> None:
    """After unmounting: the backing directory becomes the directory again."""
    backing = directory + BACKING_SUFFIX
    if os.path.isdir(backing) and not is_mounted(directory):
        os.rmdir(directory)
        os.rename(backing, directory)
    shutil.rmtree(directory + TRASH_SUFFIX, ignore_errors=True)


# What each stop signal asks for: SIGTERM and SIGINT a clean stop, SIGUSR1 a power loss.
STOP_SIGNALS = {signal.SIGTERM: "clean", signal.SIGINT: "clean", signal.SIGUSR1: "power-loss"}


def _ignore_signal(_signum: int, _frame: object) -> None:
    """The Python-level handler does nothing: the stop is read from the wakeup pipe."""


class StopSignals:
    """The stop signals as bytes on a pipe, so that waiting for a request cannot miss one.

    A flag set by a Python handler and checked before a blocking read of /dev/fuse has a window:
    a signal delivered after the check and before the read enters the kernel (at the exit of the
    mmap that allocates the read buffer) runs only the C-level handler (the Python one waits for
    the next bytecode boundary, after the read), and the read then blocks until some request
    comes, which during a stop never does: stuck in fuse_dev_do_read, the Python handler never
    run (1 stop in 300 at load average 8; every time when strace holds that mmap's exit, see
    tests/nemesis/test_lazyfs_mount.py). Here the C-level handler itself writes the signal number
    to a pipe (``signal.set_wakeup_fd``) and the serving loop polls that pipe together with
    /dev/fuse: a signal that came at any moment before or during the wait makes the poll return.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        for fd in (self.read_fd, self.write_fd):
            os.set_blocking(fd, False)
        self.wanted: str | None = None
        self._previous = {sig: signal.signal(sig, _ignore_signal) for sig in STOP_SIGNALS}
        self._previous_wakeup = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)

    def mode(self) -> str | None:
        """The first stop asked for so far ("clean" or "power-loss"), or None; never blocks."""
        while True:
            try:
                data = os.read(self.read_fd, 64)
            except BlockingIOError:
                return self.wanted
            for number in data:
                if self.wanted is None and number in STOP_SIGNALS:
                    self.wanted = STOP_SIGNALS[signal.Signals(number)]

    def close(self) -> None:
        """Put the previous handlers and wakeup descriptor back (tests run this in-process)."""
        signal.set_wakeup_fd(self._previous_wakeup)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self.read_fd)
        os.close(self.write_fd)


class RequestSource:
    """Requests from /dev/fuse (opened O_NONBLOCK) until a stop signal: one poll waits for both."""

    def __init__(self, device: int, stop: StopSignals) -> None:
        self.device = device
        self.stop = stop
        self._poller = select.poll()
        self._poller.register(stop.read_fd, select.POLLIN)
        self._poller.register(device, select.POLLIN)

    def next(self) -> bytes | None:
        """The next request, or None when a stop signal came or the connection is gone. A stop
        wins over a pending request (closing the device aborts it)."""
        while True:
            ready = {fd for fd, _ in self._poller.poll()}
            if self.stop.read_fd in ready and self.stop.mode() is not None:
                return None
            if self.device not in ready:
                continue
            try:
                raw = os.read(self.device, READ_BUFFER)
            except BlockingIOError:
                continue  # the request was interrupted and withdrawn before we read it
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EINTR):
                    continue  # an interrupted request; nothing to answer
                if exc.errno == errno.ENODEV:
                    return None  # unmounted or aborted from outside
                raise
            return raw or None  # end of file: the device is gone


def serve_requests(fs: LazyFS, device: int, stop: StopSignals) -> None:
    """Answer requests one at a time until a stop signal, an unmount from outside or DESTROY."""
    source = RequestSource(device, stop)
    while not fs.destroyed:
        raw = source.next()
        if raw is None:
            return
        fs.requests += 1
        request = memoryview(raw)
        _, opcode, unique, *_ = IN_HEADER.unpack_from(request)
        try:
            reply = fs.dispatch(request)
            error = 0
        except FuseError as exc:
            reply, error = b"", -exc.code
        except OSError as exc:
            reply, error = b"", -(exc.errno or errno.EIO)
        except Exception:  # a bug here must not leave a dead mount under a live server
            traceback.print_exc()
            reply, error = b"", -errno.EIO
        if opcode in NO_REPLY:
            continue
        out = reply or b""
        try:
            os.write(device, OUT_HEADER.pack(OUT_HEADER.size + len(out), error, unique) + out)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # the request was interrupted meanwhile
                raise


def serve(directory: str) -> int:
    """Mount, serve until told to stop, then unmount, keep or roll back, and put the data back.

    The mount never outlives this function: whatever ends the serving loop (a stop signal, an
    unmount from outside, an error), the mount is detached and the device closed, which aborts
    any request still waiting, before the data is put back in place."""
    directory = os.path.abspath(directory)
    os.umask(0)  # modes come from the caller (the kernel has applied its umask)
    # Before the mount: a stop signal that comes early is kept, never the default (fatal) action.
    stop = StopSignals()
    backing = prepare_layout(directory)
    state = VolatileState(directory + TRASH_SUFFIX)
    fs = LazyFS(backing, state)
    device = os.open("/dev/fuse", os.O_RDWR | os.O_NONBLOCK)
    try:
        mount(device, directory)
    except OSError as exc:
        os.close(device)
        restore_layout(directory)
        print(f"lazyfs: {exc}", file=sys.stderr)
        return 1
    print(f"lazyfs: mounted {backing} on {directory}", flush=True)
    failed = False
    try:
        serve_requests(fs, device, stop)
    except Exception:  # the mount must still go and the data be put back: keep every write
        traceback.print_exc()
        failed = True
    # Detach first (a process still inside cannot keep it), then close the device: that aborts
    # requests still queued, so no client of the old mount waits for an answer.
    unmount(directory)
    os.close(device)
    for handle in fs.handles.values():
        os.close(handle.fd)
    mode = "failed" if failed else stop.mode() or "unmounted"
    outcome = state.power_loss() if mode == "power-loss" else state.keep_all()
    restore_layout(directory)
    report = {"mode": mode, "requests": fs.requests, "synced_files": state.synced_files, **outcome}
    temporary = directory + REPORT_SUFFIX + ".tmp"
    with open(temporary, "w", encoding="utf-8") as out_file:
        json.dump(report, out_file)
    os.replace(temporary, directory + REPORT_SUFFIX)
    print(f"lazyfs: {json.dumps(report)}", flush=True)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "lockbench-helper"]
    if len(args) != 1:
        print("usage: lazyfs.py DIRECTORY", file=sys.stderr)
        return 2
    return serve(args[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
