"""The Ray engine: a job's batches sharded across model replicas on a Ray cluster.

Each replica is a Ray actor holding one loaded model (``num_cpus``/``num_gpus`` each). Batches go
to the replica with the fewest in flight, a few queued per replica so none idles between batches;
results come back as they finish and the job checkpoints them, then writes its output in the run's
order, so the file is byte-identical to the local engine's for any number of workers.

Failures: a replica whose process dies is restarted by Ray (``max_restarts``) and the batches it
held are sent again (``max_task_retries``); a batch whose computation raises is retried up to
``attempts`` times, then the job stops naming the batch and the cause, its finished batches
checkpointed. Without an address the engine starts a local cluster and shuts it down when the job
ends (Ctrl-C included); ``auto`` or ``ray://HOST:PORT`` joins a running one, which is left running.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, field
from typing import Any

from data.errors import BackendError, RerankError
from data.optional import optional_import
from data.records import Candidate, Query, Ranking, RerankRequest
from rerank.base import RerankResult
from rerank.cost import Cost
from rerank.engine import Batch, Finished, Work

FORWARDED_ENVIRONMENT = ("RERANK_", "HF_", "TRANSFORMERS_", "SENTENCE_TRANSFORMERS_")


class BatchFailedError(BackendError):
    """A batch failed on every attempt; the job stops with what finished checkpointed."""


class Replica:
    """One loaded ``Work`` (a model, an index) in a Ray worker process; loaded again after Ray restarts it."""

    def __init__(self, work: Work):
        self.work = work
        self.apply: Any = None

    def load(self) -> int:
        if self.apply is None:  # torch uses as many threads as CPUs Ray reserved (OMP_NUM_THREADS)
            self.apply = self.work.load()
        return os.getpid()

    def run(self, packed: list[Any]) -> list[Any]:
        self.load()
        return pack_results(self.apply(unpack_items(packed)))


@dataclass
class RayEngine:
    """``workers`` model replicas on a Ray cluster: a local one started here (``address=None``), or
    the one at ``address`` (``auto``, ``ray://HOST:PORT``)."""

    workers: int = 1
    address: str | None = None
    num_cpus: float | None = None  # CPUs per replica; None: the cluster's shared among the workers
    num_gpus: float = 0.0
    attempts: int = 3  # tries per batch (computation errors), and restarts per replica (deaths)
    queued: int = 2  # batches in flight per replica
    runner: RayRunner | None = field(default=None, init=False)

    started: bool = field(default=False, init=False)  # this engine started the cluster, and shuts it down

    def connect(self) -> None:
        """Join the cluster at ``address``, or start a local one; a process already connected stays so."""
        ray = self.ray()
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if self.address is None:
            options["num_cpus"] = os.cpu_count()
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError) as err:
            raise BackendError(f"--address {self.address}: no Ray cluster answers there ({err})") from None
        self.started = self.address is None

    def shutdown(self) -> None:
        """Stop the local cluster this engine started (a joined one keeps running)."""
        if self.started:
            self.ray().shutdown()
            self.started = False

    @staticmethod
    def ray() -> Any:
        return optional_import("ray")

    def task_options(self) -> dict[str, Any]:
        """Resources of one replica or task, and the environment it sees."""
        options: dict[str, Any] = {"num_cpus": self.cpus_per_worker(), "num_gpus": self.num_gpus}
        if not str(self.address or "").startswith("ray://"):
            # Workers on this machine see this process's data, cache and offline settings (a remote
            # cluster's nodes keep their own).
            forwarded = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENVIRONMENT)}
            options["runtime_env"] = {"env_vars": forwarded}
        return options

    def cpus_per_worker(self) -> float:
        """``num_cpus``, or the cluster's CPUs shared among the workers (at most one node's, at least one):
        one worker on a machine uses all of it, as the local engine does."""
        if self.num_cpus is not None:
            return self.num_cpus
        ray = self.ray()
        total = ray.cluster_resources().get("CPU", 1)
        largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=total)
        return float(max(1, min(largest, total // self.workers)))

    def start(self, work: Work) -> RayRunner:
        self.connect()
        ray = self.ray()
        replica = ray.remote(Replica).options(
            max_restarts=self.attempts, max_task_retries=self.attempts, **self.task_options()
        )
        actors = [replica.remote(work) for _ in range(self.workers)]
        runner = RayRunner(ray, actors, self)
        try:
            runner.pids = get_unwrapped(ray, [a.load.remote() for a in actors])  # they load side by side
        except BaseException:
            runner.close()
            raise
        self.runner = runner
        return runner


@dataclass
class RayRunner:
    ray: Any
    actors: list[Any]
    engine: RayEngine
    pids: list[int] = field(default_factory=list)  # the replicas' processes, when they loaded

    def run(self, batches: Iterable[Batch]) -> Iterator[Finished]:
        ray = self.ray
        pending = iter(batches)
        in_flight: dict[Any, tuple[int, list[Any], int, int]] = {}  # ref: (position, items, actor, attempt)
        load = [0] * len(self.actors)

        def submit(position: int, items: list[Any], attempt: int) -> None:
            actor = min(range(len(self.actors)), key=load.__getitem__)
            load[actor] += 1
            in_flight[self.actors[actor].run.remote(pack_items(items))] = (position, items, actor, attempt)

        def refill() -> None:
            while len(in_flight) < self.engine.queued * len(self.actors):
                batch = next(pending, None)
                if batch is None:
                    return
                submit(*batch, 1)

        refill()
        while in_flight:
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            position, items, actor, attempt = in_flight.pop(ref)
            load[actor] -= 1
            try:
                results = ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                if attempt >= self.engine.attempts:
                    first, last = qid(items[0]), qid(items[-1])
                    raise BatchFailedError(
                        f"batch {position} (queries {first} to {last}) failed {attempt} times; last: {cause(err)}"
                    ) from None
                submit(position, items, attempt + 1)
                continue
            except ray.exceptions.RayActorError as err:
                raise BatchFailedError(
                    f"batch {position}: its replica died more than {self.engine.attempts} times ({err})"
                ) from None
            yield position, unpack_results(results)
            refill()

    def close(self) -> None:
        """Stop the replicas (their models leave memory); the cluster stays up for the job's next stage."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []


def qid(item: Any) -> str:
    """The query id of a batch item: a request's query, or a query."""
    return str(getattr(item, "query", item).qid)


def cause(err: Any) -> str:
    """The message of the exception a Ray task raised, without Ray's traceback."""
    inner = getattr(err, "cause", None)
    return f"{type(inner).__name__}: {inner}" if inner is not None else str(err).splitlines()[0]


def get_unwrapped(ray: Any, refs: list[Any]) -> Any:
    """``ray.get(refs)``, re-raising what a task raised as itself (so a model that cannot load is the
    same one-line error as in a local run)."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as err:
        inner = getattr(err, "cause", None)
        if isinstance(inner, Exception):
            raise inner from None
        raise RerankError(cause(err)) from None


# Batches travel as plain tuples: pickling thousands of frozen records one by one cost more than the
# bi-encoder's own work per batch (about 90 ms against 15 ms for 100 queries of 100 candidates).


def pack_items(items: list[Any]) -> list[Any]:
    """Requests (query and candidates with texts) or queries, as tuples."""
    if items and isinstance(items[0], RerankRequest):
        return [(r.query.qid, r.query.text, [(c.docid, c.score, c.text) for c in r.candidates]) for r in items]
    return items


def unpack_items(packed: list[Any]) -> list[Any]:
    if packed and isinstance(packed[0], tuple):
        return [RerankRequest(Query(qid, text), tuple(Candidate(*c) for c in cs)) for qid, text, cs in packed]
    return packed


def pack_results(results: list[RerankResult]) -> list[Any]:
    return [(r.ranking.qid, [(c.docid, c.score) for c in r.ranking.candidates], astuple(r.cost)) for r in results]


def unpack_results(packed: list[Any]) -> list[RerankResult]:
    return [RerankResult(Ranking(qid, tuple(Candidate(d, s) for d, s in cs)), Cost(*cost)) for qid, cs, cost in packed]
