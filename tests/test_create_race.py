"""Imports racing to create the same new local store: each one imports or gets
StoreLockedError, and no commit is ever lost to a layout built over it.

The second importer is paused (SIGSTOP) at the moment that used to be fatal: it has seen a
half-made layout and is about to complete it; the first import finishes creating the
store and commits meanwhile. Natural-timing races run many rounds with a random offset
between the two starts (the slow test: 150 rounds)."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_file

import aacdata
from aacdata import AACStore, StoreLockedError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process state is read from /proc")

_CTX = multiprocessing.get_context("spawn")  # fresh processes, as imports started from a shell are


def _sources(root: Path, prefix: str, count: int = 2) -> Path:
    for i in range(count):
        make_file(root / f"{prefix}{i}.wav", ("chirp", "tone")[i % 2], 12_000 + 500 * i, seed=i)
    return root


def _contents(path: Path) -> dict[str, bytes]:
    with AACStore.open(path) as store:
        assert store.verify().ok
        return {rid: store.adts_bytes(rid) for rid in store.ids}


def _stopped(pid: int, seconds: float = 10.0) -> bool:
    """Wait until the process is stopped (state T in /proc)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] == "T":
            return True
        time.sleep(0.01)
    return False


def _outcome(sources: Path, store: Path) -> tuple[str, str]:
    try:
        report = aacdata.import_audio(sources, store, workers=0, progress=False)
    except StoreLockedError as e:
        return "locked", str(e)
    except BaseException as e:  # noqa: BLE001 - the test reports any other outcome
        return "raw", f"{type(e).__name__}: {e}"
    return ("ok" if report.ok else "failed"), ",".join(report.imported)


def _paused_import(sources: Path, store: Path, hook: str, conn: Any) -> None:
    """An import that stops itself (SIGSTOP) at one moment, telling the parent first.

    ``hook="create"``: before writing ``adts/zarr.json`` (the root exists, the arrays not).
    ``hook="complete"``: right after finding ``adts/zarr.json`` missing.
    """
    import zarr.storage._local as local

    state = {"paused": False}

    def pause() -> None:
        if not state["paused"]:
            state["paused"] = True
            conn.send("paused")
            # aimed at this thread: the whole process stops before this thread goes on
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)

    put = local._put

    def hooked_put(path: Path, value: Any, exclusive: bool = False) -> int:
        if hook == "create" and str(path).endswith(os.path.join("adts", "zarr.json")):
            pause()
        return put(path, value, exclusive)

    def found(key: str, value: Any) -> Any:
        if hook == "complete" and key == "adts/zarr.json" and value is None:
            pause()
        return value

    def hooked_get(get: Any) -> Any:
        async def hooked(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
            return found(key, await get(self, key, *args, **kwargs))

        return hooked

    def hooked_get_sync(get: Any) -> Any:
        def hooked(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
            return found(key, get(self, key, *args, **kwargs))

        return hooked

    import aacdata.store._layout  # noqa: F401 - its store classes (LocalStore and subclasses) are imported

    classes = [local.LocalStore]
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        if "get" in vars(cls):
            cls.get = hooked_get(vars(cls)["get"])  # type: ignore[method-assign]
        if "get_sync" in vars(cls):
            cls.get_sync = hooked_get_sync(vars(cls)["get_sync"])  # type: ignore[attr-defined]
    local._put = hooked_put  # type: ignore[assignment]
    conn.send(_outcome(sources, store))


def test_a_creator_paused_while_completing_the_layout_loses_no_commit(tmp_path: Path) -> None:
    # Invariant: an import that found the store half-made and was then paused while the
    # creating import finished and committed neither rebuilds the layout over that commit
    # nor fails: both imports land, and the store verifies.
    a = _sources(tmp_path / "a", "a")
    b = _sources(tmp_path / "b", "b")
    store = tmp_path / "new.zarr"
    pipes = [_CTX.Pipe(duplex=False) for _ in range(2)]
    first = _CTX.Process(target=_paused_import, args=(a, store, "create", pipes[0][1]))
    second = _CTX.Process(target=_paused_import, args=(b, store, "complete", pipes[1][1]))
    try:
        first.start()
        assert pipes[0][0].poll(60) and pipes[0][0].recv() == "paused"
        assert _stopped(first.pid)  # type: ignore[arg-type]
        second.start()
        assert pipes[1][0].poll(60) and pipes[1][0].recv() == "paused"
        assert _stopped(second.pid)  # type: ignore[arg-type]
        os.kill(first.pid, signal.SIGCONT)  # type: ignore[arg-type]
        assert pipes[0][0].poll(120)
        assert pipes[0][0].recv() == ("ok", "a0.wav,a1.wav")
        first.join(30)
        committed = _contents(store)
        os.kill(second.pid, signal.SIGCONT)  # type: ignore[arg-type]
        assert pipes[1][0].poll(120)
        assert pipes[1][0].recv() == ("ok", "b0.wav,b1.wav")
        second.join(30)
    finally:
        for p in (first, second):
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
    after = _contents(store)
    assert sorted(after) == ["a0.wav", "a1.wav", "b0.wav", "b1.wav"]
    assert {rid: after[rid] for rid in committed} == committed


def _racer(sources: Path, store: Path, delay: float, conn: Any) -> None:
    time.sleep(delay)
    conn.send(_outcome(sources, store))


def _race_rounds(tmp_path: Path, rounds: int, seed: int) -> None:
    # Invariant: two imports creating the same store, started within 40 ms of each other:
    # each imports or gets StoreLockedError naming the other (never a raw zarr or OS
    # error), the store verifies, and whatever was refused imports afterwards.
    a = _sources(tmp_path / "a", "a")
    b = _sources(tmp_path / "b", "b")
    rng = random.Random(seed)
    outcomes: list[tuple[str, str]] = []
    for r in range(rounds):
        store = tmp_path / f"s{r}.zarr"
        delays = [0.0, rng.uniform(0.0, 0.04)]
        rng.shuffle(delays)
        pipes = [_CTX.Pipe(duplex=False) for _ in range(2)]
        procs = [
            _CTX.Process(target=_racer, args=(src, store, d, w))
            for src, d, (_, w) in zip((a, b), delays, pipes, strict=True)
        ]
        for p in procs:
            p.start()
        got = [rd.recv() if rd.poll(120) else ("hung", "") for rd, _ in pipes]
        for p in procs:
            p.join(30)
        outcomes += got
        assert all(kind in ("ok", "locked") for kind, _ in got), got
        assert any(kind == "ok" for kind, _ in got), got
        for kind, text in got:
            if kind == "locked":
                assert "being written by another import" in text and str(store) in text, text
        for (kind, _), src in zip(got, (a, b), strict=True):
            if kind == "locked":
                assert aacdata.import_audio(src, store, workers=0, progress=False).ok
        assert sorted(_contents(store)) == ["a0.wav", "a1.wav", "b0.wav", "b1.wav"]
    print("outcomes:", {k: sum(1 for o, _ in outcomes if o == k) for k in ("ok", "locked")})


def test_racing_creators_get_a_store_or_a_lock_error(tmp_path: Path) -> None:
    _race_rounds(tmp_path, rounds=6, seed=1)


@pytest.mark.slow
def test_racing_creators_150_rounds(tmp_path: Path) -> None:
    _race_rounds(tmp_path, rounds=150, seed=2)
