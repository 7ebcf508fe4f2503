"""Nemesis: the faults injected into a lab zone, and a deterministic schedule of them.

Kinds (each has inject and heal, and describes itself for the `faults` log):

- ``kill``: SIGKILL the leader, a random front-end or a majority; heal restarts them.
- ``pause``: SIGSTOP a front-end (often the leader) for 1-3 s, longer than the election
  timeout; heal sends SIGCONT. Scope ``frontend``: every process of the front-end (oned
  and its API worker: oned's process group); ``raft``: the raft process alone, while its
  API worker keeps serving. A paused old leader must neither complete writes nor serve
  stale linearizable reads after it resumes (the linearizability checker catches that).
- ``partition``: raft messages dropped between front-ends through the fault files
  (``<data_dir>/fault/blocked``: raft addresses, one a line, whose messages that
  front-end drops both ways; the zone must run with ``fault_injection``). Patterns:
  ``isolate-leader``, ``majority-minority``, ``bridge`` (two sides that only a middle
  front-end connects), ``ring`` (each front-end sees its two ring neighbours; 4+
  front-ends). Heal deletes the files. gRPC between front-ends (forwarding) still works.
- ``restart``: SIGKILL every front-end at once, then start them all.
- ``membership``: ServerDel of a follower (then it is stopped: it is no longer in the
  zone); heal adds a new server with ``Lab.add_frontend()`` (a new id: ids are never
  reused) and waits until it serves.
- ``disk``: a full disk on one front-end: its data dir lives on a small tmpfs (set up once,
  by ``setup()`` before the run or on first use), filled with a ballast file; heal removes
  the ballast. ``cleanup()`` (after the lab is down) unmounts every tmpfs.

``make_schedule(seed, kinds, duration, frontends)`` gives a deterministic list of
``Step(at, kind, params)``: the same seed gives the same schedule. Targets that depend on
the zone at run time (who leads) are named symbolically ("leader", "follower") with a
``pick`` number that chooses among the candidates then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from zones.api.gen import zone_pb2

log = logging.getLogger(__name__)

KINDS = ("kill", "pause", "partition", "restart", "membership", "disk")
PARTITION_PATTERNS = ("isolate-leader", "majority-minority", "bridge", "ring")
TMPFS_SIZE = "128m"
# The lab's min_free_bytes when the disk nemesis is used (the tmpfs is small).
DISK_MIN_FREE_BYTES = 4 << 20
BALLAST = "ballast"


@dataclass(frozen=True)
class Step:
    """One scheduled fault: inject at `at` s after the start, heal `params["duration"]` later."""

    at: float
    kind: str
    params: dict

    def as_tuple(self) -> tuple:
        return (self.at, self.kind, dict(self.params))


def _params(kind: str, rng: random.Random, frontends: int) -> dict:
    pick = rng.randrange(1 << 30)
    if kind == "kill":
        mode = rng.choices(("leader", "random", "majority"), weights=(2, 2, 1))[0]
        return {"mode": mode, "pick": pick, "duration": round(rng.uniform(0.3, 2.0), 3)}
    if kind == "pause":
        target = "leader" if rng.random() < 0.7 else "random"
        # frontend: every process of the front-end (raft and API worker); raft: the raft
        # process alone, its API worker keeps answering.
        scope = "frontend" if rng.random() < 0.7 else "raft"
        duration = round(rng.uniform(1.0, 3.0), 3)
        return {"target": target, "scope": scope, "pick": pick, "duration": duration}
    if kind == "partition":
        patterns = [p for p in PARTITION_PATTERNS if p != "ring" or frontends >= 4]
        pattern = rng.choice(patterns)
        return {"pattern": pattern, "pick": pick, "duration": round(rng.uniform(1.0, 3.0), 3)}
    if kind == "restart":
        return {"pick": pick, "duration": round(rng.uniform(0.2, 1.0), 3)}
    if kind == "membership":
        return {"target": "follower", "pick": pick, "duration": round(rng.uniform(1.0, 3.0), 3)}
    if kind == "disk":
        target = "follower" if rng.random() < 0.7 else "leader"
        return {"target": target, "pick": pick, "duration": round(rng.uniform(1.0, 3.0), 3)}
    raise ValueError(f"unknown nemesis kind {kind!r} (known: {', '.join(KINDS)})")


def make_schedule(
    seed: int,
    kinds: list[str] | tuple[str, ...],
    duration: float,
    frontends: int = 3,
    first_at: float = 1.0,
    gap: tuple[float, float] = (1.0, 2.5),
    lanes: int = 1,
) -> list[Step]:
    """The faults of a run of `duration` s: deterministic in (seed, kinds, duration, n,
    lanes). One lane: one fault at a time. More lanes: independent timelines whose faults
    may overlap (a partition during a kill, a membership change during a pause...); each
    step's params name its "lane" then, and the steps come sorted by time."""
    kinds = list(kinds)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown nemesis kind {k!r} (known: {', '.join(KINDS)})")
    if not kinds:
        return []
    steps: list[Step] = []
    for lane in range(lanes):
        rng = random.Random(f"nemesis:{seed}" if lane == 0 else f"nemesis:{seed}:lane{lane}")
        at = first_at if lane == 0 else first_at + rng.uniform(*gap)
        while True:
            kind = rng.choice(kinds)
            params = _params(kind, rng, frontends)
            if at + params["duration"] > duration:
                break
            if lanes > 1:
                params["lane"] = lane
            steps.append(Step(round(at, 3), kind, params))
            at += params["duration"] + rng.uniform(*gap)
    steps.sort(key=lambda s: (s.at, s.params.get("lane", 0)))
    return steps


def lanes_of(steps: list[Step]) -> list[list[Step]]:
    """The schedule split into its lanes (each one fault at a time)."""
    out: dict[int, list[Step]] = {}
    for step in steps:
        out.setdefault(step.params.get("lane", 0), []).append(step)
    return [out[k] for k in sorted(out)]


# --- partitions -----------------------------------------------------------------------


def partition_groups(pattern: str, members: list[int], leader: int | None, pick: int) -> dict:
    """The blocked pairs of a pattern: {member: set of members it must not talk to}."""
    rng = random.Random(pick)
    order = list(members)
    rng.shuffle(order)
    n = len(order)
    blocked: dict[int, set[int]] = {m: set() for m in members}

    def cut(a: list[int], b: list[int]) -> None:
        for x in a:
            for y in b:
                blocked[x].add(y)
                blocked[y].add(x)

    if pattern == "isolate-leader":
        victim = leader if leader in members else order[0]
        cut([victim], [m for m in members if m != victim])
    elif pattern == "majority-minority":
        major = order[: n // 2 + 1]
        cut(major, order[n // 2 + 1 :])
    elif pattern == "bridge":
        # order[mid] talks to everyone; the two sides do not talk to each other.
        mid = n // 2
        cut(order[:mid], order[mid + 1 :])
    elif pattern == "ring":
        for k, m in enumerate(order):
            neighbours = {order[(k - 1) % n], order[(k + 1) % n]}
            blocked[m] |= {x for x in order if x != m and x not in neighbours}
    else:
        raise ValueError(f"unknown partition pattern {pattern!r}")
    return blocked


def fault_file(lab, i: int) -> Path:
    return Path(lab.fes[i].data_dir) / "fault" / "blocked"


def write_fault_file(lab, i: int, addresses: list[str]) -> None:
    path = fault_file(lab, i)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("blocked.tmp")
    tmp.write_text("".join(a + "\n" for a in sorted(addresses)))
    os.replace(tmp, path)


def clear_fault_file(lab, i: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        fault_file(lab, i).unlink()


# --- the faults -----------------------------------------------------------------------


@dataclass
class Fault:
    """An injected fault (what the `faults` log of a run holds)."""

    kind: str
    params: dict
    scheduled_at: float
    description: str = ""
    targets: list[int] = field(default_factory=list)
    injected_at: float | None = None
    healed_at: float | None = None
    recovery_s: float | None = None
    error: str | None = None
    state: dict = field(default_factory=dict)  # what heal needs (not logged)

    def log_entry(self) -> dict:
        d = asdict(self)
        d.pop("state")
        return d


def process_state(pid: int | None) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, T, Z...), None if there is none."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def group_members(pgid: int) -> list[int]:
    """Pids of the processes in process group `pgid` (from /proc)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == pgid:
            out.append(int(name))
    return sorted(out)


def _wait_stopped(pid: int | None, stopped: bool, timeout: float = 1.0) -> bool:
    """Wait until the process is (not) stopped by a signal; SIGSTOP is asynchronous."""
    deadline = time.monotonic() + timeout
    while True:
        state = process_state(pid)
        if state is None or (state == "T") == stopped:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def _rpc_retry(fn, timeout: float, what: str):
    """Call fn() until it does not raise UNAVAILABLE/DEADLINE_EXCEEDED, up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except grpc.RpcError as e:
            if (
                e.code()
                not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
                or time.monotonic() >= deadline
            ):
                raise RuntimeError(f"{what}: {e.code().name}: {e.details()}") from None
            time.sleep(0.1)


class Nemesis:
    """Injects and heals faults in a `zones.lab.Lab` (see the module docstring)."""

    def __init__(self, lab, clock=None) -> None:
        self.lab = lab
        self.clock = clock or time.monotonic
        self.removed: set[int] = set()  # lab indexes deleted from the zone
        self.tmpfs: dict[int, str] = {}  # lab index -> mount point (its data dir)
        self.active: list[Fault] = []
        self.log: list[Fault] = []
        self._lock = threading.Lock()  # the bookkeeping (lanes inject and heal in threads)
        self._membership_busy = False
        # Membership changes never shrink the zone below its size at the start.
        self.min_members = getattr(lab, "n", None) or len(lab.fes)

    # --- the zone as it is now --------------------------------------------------------

    def members(self) -> list[int]:
        return [i for i in range(len(self.lab.fes)) if i not in self.removed]

    def targets(self) -> list[tuple[int, str]]:
        """(index, gRPC endpoint) of every front-end in the zone (for the clients)."""
        return [(i, self.lab.fes[i].grpc) for i in self.members()]

    def leader(self, timeout: float = 5.0) -> int | None:
        members = set(self.members())
        try:
            i = self.lab.leader_index(timeout=timeout)
        except Exception:
            return None
        return i if i in members else None

    def _choose(self, target: str, pick: int) -> int:
        members = self.members()
        if target == "leader":
            leader = self.leader()
            if leader is not None:
                return leader
        if target == "follower":
            leader = self.leader()
            followers = [m for m in members if m != leader]
            if followers:
                return followers[pick % len(followers)]
        return members[pick % len(members)]

    # --- inject / heal ----------------------------------------------------------------

    def inject(self, step: Step) -> Fault:
        fault = Fault(kind=step.kind, params=dict(step.params), scheduled_at=step.at)
        fault.injected_at = self.clock()
        with self._lock:
            self.active.append(fault)
            self.log.append(fault)
        try:
            getattr(self, f"_inject_{step.kind}")(fault)
        except Exception as e:
            log.exception("inject %s failed", step.kind)
            fault.error = f"inject: {type(e).__name__}: {e}"
        log.info("nemesis: %s", fault.description or fault.kind)
        return fault

    def heal(self, fault: Fault) -> None:
        with self._lock:
            if fault not in self.active:
                return
        try:
            getattr(self, f"_heal_{fault.kind}")(fault)
        except Exception as e:
            log.exception("heal %s failed", fault.kind)
            fault.error = (fault.error + "; " if fault.error else "") + (
                f"heal: {type(e).__name__}: {e}"
            )
        fault.healed_at = self.clock()
        with self._lock:
            if fault in self.active:
                self.active.remove(fault)

    def heal_all(self) -> None:
        """Heal every active fault, then make sure nothing is left behind: every member
        running and not paused, no fault file, no ballast."""
        for fault in list(reversed(self.active)):
            self.heal(fault)
        for i in self.members():
            clear_fault_file(self.lab, i)
            pid = self.lab.fes[i].pid
            if self.lab.running(i):
                for p in group_members(pid) if pid else ():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGCONT)
            else:
                self.lab.start(i)
        for mount in self.tmpfs.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(mount, BALLAST))

    # kill ------------------------------------------------------------------------------

    def _inject_kill(self, fault: Fault) -> None:
        mode, pick = fault.params["mode"], fault.params["pick"]
        members = [m for m in self.members() if self.lab.running(m)]
        if mode == "majority":
            leader = self.leader()
            rng = random.Random(pick)
            order = list(members)
            rng.shuffle(order)
            count = len(self.members()) // 2 + 1
            victims = sorted(order[:count])
            fault.description = f"SIGKILL a majority {victims} (leader was {leader})"
        else:
            victim = self._choose("leader" if mode == "leader" else "random", pick)
            victims = [victim]
            fault.description = f"SIGKILL the {mode} front-end {victim}"
        fault.targets = victims
        self._kill_all(victims)

    def _heal_kill(self, fault: Fault) -> None:
        for i in fault.targets:
            if not self.lab.running(i) and i not in self.removed:
                self.lab.start(i)

    def _kill_all(self, victims: list[int]) -> None:
        # Every SIGKILL first (at once), then reap each.
        for i in victims:
            pid = self.lab.fes[i].pid
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for i in victims:
            self.lab.kill(i, signal.SIGKILL)

    # pause -----------------------------------------------------------------------------

    def _inject_pause(self, fault: Fault) -> None:
        i = self._choose(fault.params["target"], fault.params["pick"])
        scope = fault.params.get("scope", "frontend")
        was_leader = i == self.leader(timeout=1.0)
        fault.targets = [i]
        fault.description = (
            f"SIGSTOP front-end {i}{' (the leader)' if was_leader else ''}"
            f"{' (raft process only)' if scope == 'raft' else ''} "
            f"for {fault.params['duration']} s"
        )
        fault.state["pids"] = self._stop(i, scope)

    def _heal_pause(self, fault: Fault) -> None:
        for pid in fault.state.get("pids", ()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for pid in fault.state.get("pids", ()):
            _wait_stopped(pid, False)

    def _stop(self, i: int, scope: str) -> list[int]:
        """SIGSTOP front-end i: its raft process, or (scope "frontend") every process of
        its process group (the lab starts oned in a session of its own: the API worker)."""
        pid = self.lab.fes[i].pid
        if pid is None:
            return []
        pids = [pid]
        if scope == "frontend":
            pids += [p for p in group_members(pid) if p != pid]
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
        for p in pids:
            _wait_stopped(p, True)
        return pids

    # partition -------------------------------------------------------------------------

    def _inject_partition(self, fault: Fault) -> None:
        pattern, pick = fault.params["pattern"], fault.params["pick"]
        members = self.members()
        leader = self.leader() if pattern == "isolate-leader" else None
        if pattern == "ring" and len(members) < 4:
            pattern = "bridge"  # a ring of 3 is fully connected
        blocked = partition_groups(pattern, members, leader, pick)
        problems = self.apply_partition(blocked)
        fault.targets = members
        fault.state["blocked"] = {i: sorted(b) for i, b in blocked.items()}
        cuts = sorted({tuple(sorted((a, b))) for a, bs in blocked.items() for b in bs})
        fault.description = (
            f"partition {pattern}"
            + (f" (leader {leader})" if leader is not None else "")
            + ": cut "
            + ", ".join(f"{a}-{b}" for a, b in cuts)
        )
        fault.params = {**fault.params, "cuts": [list(c) for c in cuts]}
        if problems:
            fault.description += f" (fault file not written, cut from the other end: {problems})"

    def apply_partition(self, blocked: dict[int, set[int]]) -> list[str]:
        """Write every front-end's fault file. A front-end whose disk is full (the disk
        nemesis) cannot get its file: its links are still cut, from the other end (each
        end drops both directions). Returns what could not be written."""
        lab = self.lab
        problems = []
        for i, others in blocked.items():
            try:
                if others:
                    write_fault_file(lab, i, [lab.fes[o].raft for o in others])
                else:
                    clear_fault_file(lab, i)
            except OSError as e:
                problems.append(f"fe{i}: {e}")
        return problems

    def _heal_partition(self, fault: Fault) -> None:
        for i in fault.state.get("blocked", {}):
            clear_fault_file(self.lab, i)

    # restart ---------------------------------------------------------------------------

    def _inject_restart(self, fault: Fault) -> None:
        victims = [m for m in self.members() if self.lab.running(m)]
        fault.targets = victims
        fault.description = f"SIGKILL every front-end {victims} at once, restart after " + (
            f"{fault.params['duration']} s"
        )
        self._kill_all(victims)

    def _heal_restart(self, fault: Fault) -> None:
        for i in fault.targets:
            if not self.lab.running(i) and i not in self.removed:
                self.lab.start(i)

    # membership ------------------------------------------------------------------------

    def _inject_membership(self, fault: Fault) -> None:
        with self._lock:
            # One change at a time, never below the zone's size: with overlapping lanes two
            # removals would leave one server, and adding to a one-server zone needs the new
            # server up before ServerAdd returns (tests/fault/test_regressions.py).
            busy = self._membership_busy or len(self.members()) < self.min_members
            if not busy:
                self._membership_busy = True
        if busy:
            fault.params = {**fault.params, "skipped": True}
            fault.description = "membership change skipped: another one is in progress"
            return
        try:
            self._remove_one(fault)
        except BaseException:
            self._membership_busy = False
            raise

    def _remove_one(self, fault: Fault) -> None:
        lab = self.lab
        leader = self.leader()
        if leader is None:
            raise RuntimeError("no leader to remove a server through")
        i = self._choose("follower", fault.params["pick"])
        if i == leader:
            raise RuntimeError("no follower to remove")
        server_id = lab.fes[i].id
        fault.targets = [i]
        fault.description = f"ServerDel front-end {i} (server id {server_id}), then add a new one"
        rid = f"nemesis-del-{server_id}-{fault.params['pick']}"
        try:
            _rpc_retry(
                lambda: lab.client(None, 5.0).zone.ServerDel(
                    zone_pb2.ServerDelRequest(id=server_id, request_id=rid), timeout=5.0
                ),
                15.0,
                f"ServerDel {server_id}",
            )
        except Exception:
            # The outcome may be unknown: if the zone no longer lists it, it is gone (a
            # front-end out of the zone must not be read as if it were in it).
            if server_id in self._zone_server_ids():
                raise
        self._retire(i)

    def _retire(self, i: int) -> None:
        """Front-end i is out of the zone: stop it, never start it again."""
        self.removed.add(i)
        clear_fault_file(self.lab, i)
        if self.lab.running(i):
            self.lab.kill(i, signal.SIGKILL)

    def _zone_server_ids(self) -> set[int]:
        info = _rpc_retry(
            lambda: self.lab.client(None, 10.0).zone.Info(zone_pb2.ZoneInfoRequest(), timeout=5.0),
            15.0,
            "zone Info",
        )
        return {s.id for s in info.servers}

    def _heal_membership(self, fault: Fault) -> None:
        if fault.params.get("skipped"):
            return
        try:
            self._add_one(fault)
        finally:
            self._membership_busy = False

    def _add_one(self, fault: Fault) -> None:
        if not fault.targets or fault.targets[0] not in self.removed:
            return  # the deletion did not happen
        errors: list[str] = []
        for _attempt in range(3):
            before = len(self.lab.fes)
            try:
                # Wait for a leader here: Lab.add_frontend holds the lab's lock while it
                # looks for one, and another lane may need the lab to start front-ends.
                self.lab.leader_index(timeout=20.0)
                j = self.lab.add_frontend(timeout=20.0)
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
                log.warning("membership: adding a server failed (%s); cleaning up", e)
                for k in range(before, len(self.lab.fes)):
                    self._retire(k)  # half-added by the lab
                self._remove_strangers()
                continue
            fault.state["added"] = j
            fault.description += f" (added front-end {j}, server id {self.lab.fes[j].id})"
            fault.params = {**fault.params, "added": j}
            if errors:
                fault.params["add_retried_after"] = errors
            return
        raise RuntimeError(f"could not add a server: {'; '.join(errors)}")

    def _remove_strangers(self) -> None:
        """ServerDel every server of the zone that no running lab front-end is (left by
        an add whose outcome was unknown: it would count in every majority)."""
        known = {fe.raft for k, fe in enumerate(self.lab.fes) if k not in self.removed}
        info = _rpc_retry(
            lambda: self.lab.client(None, 10.0).zone.Info(zone_pb2.ZoneInfoRequest(), timeout=5.0),
            15.0,
            "zone Info",
        )
        for server in info.servers:
            if server.raft_endpoint in known:
                continue
            sid = server.id
            _rpc_retry(
                lambda sid=sid: self.lab.client(None, 5.0).zone.ServerDel(
                    zone_pb2.ServerDelRequest(id=sid, request_id=f"nemesis-stranger-{sid}"),
                    timeout=5.0,
                ),
                15.0,
                f"ServerDel {sid} (stranger)",
            )

    # disk ------------------------------------------------------------------------------

    def setup_disk(self, i: int, size: str = TMPFS_SIZE) -> str:
        """Stop front-end i, move its data dir onto a tmpfs of `size`, start it again."""
        lab = self.lab
        if i in self.tmpfs:
            return self.tmpfs[i]
        data = lab.fes[i].data_dir
        was_running = lab.running(i)
        if was_running:
            lab.stop(i)
        keep = data + ".keep"
        shutil.move(data, keep)
        os.makedirs(data)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", data],
            check=True,
        )
        self.tmpfs[i] = data
        for name in os.listdir(keep):
            src = os.path.join(keep, name)
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(data, name))
        shutil.rmtree(keep)
        if was_running:
            lab.start(i)
            lab.wait_serving(i, 20.0)
        return data

    def setup(self, kinds) -> None:
        """Before the run: every front-end's data on a tmpfs if the disk nemesis is used."""
        if "disk" in kinds:
            for i in self.members():
                self.setup_disk(i)
            self.lab.leader_index(timeout=20.0)

    def _inject_disk(self, fault: Fault) -> None:
        i = self._choose(fault.params["target"], fault.params["pick"])
        fault.targets = [i]
        mount = self.setup_disk(i)
        ballast = os.path.join(mount, BALLAST)
        fault.state["ballast"] = ballast
        with open(ballast, "wb") as f:
            chunk = b"\0" * (1 << 20)
            with contextlib.suppress(OSError):
                while True:
                    f.write(chunk)
                    f.flush()
        st = os.statvfs(mount)
        fault.description = (
            f"full disk on front-end {i} ({fault.params['target']}): "
            f"{st.f_bavail * st.f_frsize // 1024} KiB free"
        )

    def _heal_disk(self, fault: Fault) -> None:
        ballast = fault.state.get("ballast")
        if ballast:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ballast)

    # --- the end ----------------------------------------------------------------------

    def cleanup(self) -> None:
        """Unmount every tmpfs (call after the lab is down)."""
        for i, mount in list(self.tmpfs.items()):
            if self.lab.running(i):
                with contextlib.suppress(Exception):
                    self.lab.stop(i)
            subprocess.run(["umount", "-l", mount], check=False)
            del self.tmpfs[i]
