"""The memory file: one .npz (no pickles) with a JSON header, written atomically, refused when it does not fit.

Saving writes a temporary file beside the target, fsyncs it and renames it over the target, so a
crash mid-save leaves the previous file whole. Loading checks the size, the container, the
header (format, version, encoder, token size, frame) and every array's shape and values before
anything is used; a file that fails is refused with the reason, and the caller keeps it untouched.
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
import zipfile
from typing import Any, Dict, Optional

import numpy as np

from .objects import MemoryObject
from .store import ObjectMemory

FORMAT, VERSION = "textregion_ros object memory", 1
MAX_FILE_BYTES = 1 << 30  # a file larger than this is refused before it is read
MAX_HEADER_BYTES = 64 << 20
ARRAYS = ("ids", "tokens", "voxel_size", "counts", "stamps", "offsets", "keys", "sums", "weights")


class MemoryFileError(ValueError):
    """A memory file that cannot be used (the reason says why); the file itself is left as it is."""


def save_memory(path: str, memory: ObjectMemory, header: Dict[str, Any]) -> None:
    objs = [memory.objects[i] for i in sorted(memory.objects)]
    dim = int(header["token_dim"])
    meta = dict(header, format=FORMAT, version=VERSION, objects=len(objs), next_id=memory.next_id,
                frames=memory.frames,
                labels=[o.label_votes for o in objs], cameras=[o.camera for o in objs],
                # Pairs seen apart (never merged as duplicates). Added in place of a new version: a file without
                # it loads with no marks, and an older reader ignores the key.
                apart=sorted([o.id, b] for o in objs for b in o.apart if o.id < b and b in memory.objects))
    sizes = np.array([len(o.keys) for o in objs], np.int64)
    meta["voxels"] = int(sizes.sum())  # with ``objects``, bounds what each array may unpack to (load_memory)
    arrays = {
        "ids": np.array([o.id for o in objs], np.int64),
        "tokens": np.stack([o.token for o in objs]).astype(np.float32) if objs else np.zeros((0, dim), np.float32),
        "voxel_size": np.array([o.voxel_size for o in objs], np.float64),
        "counts": np.array([[o.observations, o.first_frame, o.last_frame, o.misses] for o in objs],
                           np.int64).reshape(-1, 4),
        "stamps": np.array([[o.first_seen_ns, o.last_seen_ns] for o in objs], np.int64).reshape(-1, 2),
        "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "keys": np.concatenate([o.keys for o in objs]) if objs else np.zeros(0, np.int64),
        "sums": np.concatenate([o.sums for o in objs]) if objs else np.zeros((0, 3)),
        "weights": np.concatenate([o.weights for o in objs]) if objs else np.zeros(0),
        "header": np.frombuffer(json.dumps(meta).encode(), np.uint8),
    }
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".memory-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: the old file stays whole until the new one is complete
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # the rename itself survives a power cut once the directory is synced
        dfd = os.open(directory, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    except OSError:
        pass


def load_memory(path: str, expected: Dict[str, Any], memory: ObjectMemory) -> int:
    """Fill ``memory`` from ``path`` -> objects loaded; MemoryFileError when the file does not fit."""
    problem = path_problem(path)
    if problem:  # a FIFO or a device is never opened: reading it could block or never end
        raise MemoryFileError(problem)
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise MemoryFileError(f"{path} is {size / 2**20:.0f} MB, above the {MAX_FILE_BYTES >> 20} MB a memory "
                              f"file may have")
    try:
        with np.load(path, allow_pickle=False) as z:
            # Sizes come from the zip directory, before anything is unpacked: a small file can unpack to GBs.
            if "header" not in z.files or z.zip.getinfo("header.npy").file_size > MAX_HEADER_BYTES + NPY_SLACK:
                raise MemoryFileError(f"{path} has no memory header")
            meta = json.loads(z["header"].tobytes().decode())
            _check_header(path, meta, expected)
            for name, limit in unpacked_limits(path, meta, int(expected["token_dim"]), memory.config).items():
                size = z.zip.getinfo(name + ".npy").file_size
                if size > limit:
                    raise MemoryFileError(f"{path}: {name} would unpack to {size} bytes, more than its header's "
                                          f"{meta.get('objects')} objects allow ({limit}); refused unread")
            arrays = {k: z[k] for k in ARRAYS}
    except MemoryFileError:
        raise
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise MemoryFileError(f"{path} is not a readable memory file (truncated or corrupt?): "
                              f"{type(exc).__name__}: {exc}") from exc
    objs = _objects(path, meta, arrays, int(expected["token_dim"]))
    memory.replace(objs, max([int(meta.get("next_id", 1))] + [o.id + 1 for o in objs]), int(meta.get("frames", 0)))
    return len(objs)


NPY_SLACK = 1 << 16  # a .npy member's own header and padding
MAX_OBJECTS_FACTOR = 4  # a file may hold this many times memory_max_objects (one saved under a larger setting)


def unpacked_limits(path: str, meta: Dict[str, Any], dim: int, config) -> Dict[str, int]:
    """Each array's largest unpacked size that the header's counts allow (8 bytes an element, the widest dtype
    written). A file from before ``voxels`` was in the header is allowed memory_max_points x 4 voxels an object."""
    n, k = meta.get("objects"), meta.get("voxels")
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_OBJECTS_FACTOR * config.max_objects:
        raise MemoryFileError(f"{path} says it holds {n!r} objects; this node takes at most "
                              f"{MAX_OBJECTS_FACTOR * config.max_objects} ({MAX_OBJECTS_FACTOR} x memory_max_objects)")
    if k is None:
        k = n * config.max_points * 4
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise MemoryFileError(f"{path} has an impossible voxel count {k!r}")
    rows = {"ids": n, "tokens": n * dim, "voxel_size": n, "counts": 4 * n, "stamps": 2 * n, "offsets": n + 1,
            "keys": k, "sums": 3 * k, "weights": k}
    return {name: 8 * count + NPY_SLACK for name, count in rows.items()}


def _check_header(path: str, meta: Any, expected: Dict[str, Any]) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MemoryFileError(f"{path} is not a textregion_ros memory file")
    if meta.get("version") != VERSION:
        raise MemoryFileError(f"{path} has format version {meta.get('version')!r}; this node reads {VERSION}")
    for key in ("encoder", "token_dim", "frame"):
        if meta.get(key) != expected[key]:
            raise MemoryFileError(f"{path} was written with {key} {meta.get(key)!r}, this node uses "
                                  f"{expected[key]!r}: its tokens or poses would not mean the same")


def _objects(path: str, meta: Dict[str, Any], a: Dict[str, np.ndarray], dim: int):
    n = int(meta.get("objects", -1))
    shapes = {"ids": (n,), "tokens": (n, dim), "voxel_size": (n,), "counts": (n, 4), "stamps": (n, 2),
              "offsets": (n + 1,)}
    for k, shape in shapes.items():
        if a[k].shape != shape:
            raise MemoryFileError(f"{path}: {k} has shape {a[k].shape}, expected {shape}")
    off = a["offsets"]
    total = int(off[-1]) if n >= 0 else -1
    if off[0] != 0 or (np.diff(off) <= 0).any() or a["keys"].shape != (total,) or a["sums"].shape != (total, 3) \
            or a["weights"].shape != (total,) or meta.get("voxels", total) != total:
        raise MemoryFileError(f"{path}: the voxel arrays do not match the offsets")
    rising = np.diff(a["keys"]) > 0
    rising[off[1:-1] - 1] = True  # one object's last key and the next one's first need no order
    if not rising.all():
        raise MemoryFileError(f"{path}: an object's voxel keys are not sorted and unique")
    finite = all(np.isfinite(a[k]).all() for k in ("tokens", "voxel_size", "sums", "weights"))
    if not finite or (a["weights"] <= 0).any() or (a["voxel_size"] <= 0).any() or len(set(a["ids"])) != n:
        raise MemoryFileError(f"{path}: non-finite or impossible values")
    labels, cameras = meta.get("labels"), meta.get("cameras")
    if not isinstance(labels, list) or not isinstance(cameras, list) or len(labels) != n or len(cameras) != n:
        raise MemoryFileError(f"{path}: labels or cameras do not match the objects")
    if not all(isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()) for v in labels):
        raise MemoryFileError(f"{path}: label scores must be numbers per label")
    out = []
    apart = _apart(path, meta, set(int(i) for i in a["ids"]))
    for i in range(n):
        s = slice(int(off[i]), int(off[i + 1]))
        obs, first_f, last_f, misses = (int(v) for v in a["counts"][i])
        out.append(MemoryObject(int(a["ids"][i]), a["tokens"][i].astype(np.float32), float(a["voxel_size"][i]),
                                a["keys"][s].astype(np.int64), a["sums"][s].astype(np.float64),
                                a["weights"][s].astype(np.float64), {str(k): float(v) for k, v in labels[i].items()},
                                obs, int(a["stamps"][i, 0]), int(a["stamps"][i, 1]), first_f, last_f,
                                str(cameras[i]), misses, apart.get(int(a["ids"][i]), set())))
    return out


MAX_APART_PER_OBJECT = 64  # seen-apart marks a file may hold per object


def _apart(path: str, meta: Dict[str, Any], ids: set) -> Dict[int, set]:
    """The header's seen-apart pairs -> id -> the ids it was seen apart from (none in a file from before)."""
    pairs = meta.get("apart", [])
    if not isinstance(pairs, list) or len(pairs) > MAX_APART_PER_OBJECT * max(len(ids), 1) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v in ids
                                                        for v in p) for p in pairs):
        raise MemoryFileError(f"{path}: its seen-apart pairs are not pairs of its object ids")
    out: Dict[int, set] = {}
    for a, b in pairs:
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    return out


MAX_RECOVERED = 100  # recovered files tried after a refused memory file (.recovered.npz, .recovered.1.npz, ...)


def recovered_paths(path: str):
    """Where a memory goes when its file was refused, in the order they are tried and then used."""
    yield path + ".recovered.npz"
    for k in range(1, MAX_RECOVERED):
        yield f"{path}.recovered.{k}.npz"


def open_memory(path: str, expected: Dict[str, Any], memory: ObjectMemory):
    """Fill ``memory`` from ``path`` or, when that is refused or gone, from its recovered files -> (the path saves
    go to, the path loaded or None, [(refused path, reason)]).

    When ``path`` is refused, its recovered files are tried in order and the first that loads is where saves
    go, so what was gathered after a refusal comes back at every later start; when none loads, saves go to the
    first recovered name that does not exist. When ``path`` does not exist (the refused file was moved away),
    a recovered file still loads, and saves go to ``path``. A save never targets an existing file that was not
    loaded whole: a refused file stays as it is."""
    refused = []
    main_exists = os.path.exists(path)
    if main_exists:
        try:
            load_memory(path, expected, memory)
            return path, path, refused
        except (MemoryFileError, OSError) as exc:
            refused.append((path, str(exc)))
    for candidate in recovered_paths(path):
        target = candidate if main_exists else path
        if not os.path.exists(candidate):
            return target, None, refused
        try:
            load_memory(candidate, expected, memory)
            return target, candidate, refused
        except (MemoryFileError, OSError) as exc:
            refused.append((candidate, str(exc)))
    raise MemoryFileError(f"{path} and its {MAX_RECOVERED} recovered files were all refused; move them away")


SYSTEM_TREES = ("/dev", "/proc", "/sys")  # never a memory file: reading may hang or never end, writing harms


def path_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be a memory file, or None: it must be a regular file, or absent in a directory this
    process can write, and outside /dev, /proc and /sys. Checked without opening it (a FIFO would block)."""
    real = os.path.realpath(os.path.expanduser(path))
    tree = next((t for t in SYSTEM_TREES if real == t or real.startswith(t + "/")), None)
    if tree:
        return f"{path} is under {tree}, not a place for a memory file"
    try:
        st = os.stat(real)
    except (FileNotFoundError, NotADirectoryError):
        parent = os.path.dirname(real) or "."
        if not os.path.isdir(parent):
            return f"{path}: its directory {parent} does not exist or is not a directory"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"{path}: its directory {parent} is not writable by this process"
        return None
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket"
                if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        return f"{path} is {kind}, not a regular file"
    return None
