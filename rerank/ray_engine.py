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

Starting is overlapped with the job's own preparation: a local cluster starts in a background thread
(and the replicas of ``warm`` load there too) while the inputs are checked and fingerprinted, and
after the job's last batch the cluster stops while the output is written.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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


# libgomp's threads spin 300,000 times waiting for one another before they sleep. On the driver's node
# that spinning takes the core the driver reads, fetches and checkpoints on; a short spin hands it
# back (the 1M-line job on 2 cores: 62.5 s against 70 s, benchmarks/RESULTS.md).
SHARED_NODE_SPINCOUNT = "2000"


def compute_like_the_local_engine() -> None:
    """Give this worker as many intra-op threads as the local engine has on this node (all its CPUs), rather
    than the CPUs Ray reserved for it.

    Some processors' kernels sum in another order with another thread count (on an AVX-512 Xeon, MiniLM's
    scores differ in the last digits between 1 and 2 threads), and the output must be the same bytes
    whatever the engine. Several replicas on one node then share its cores (oversubscribed)."""
    count = str(os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = count  # read when torch first loads
    torch = sys.modules.get("torch")
    if torch is not None:  # a pooled worker that ran torch before
        torch.set_num_threads(int(count))


class Replica:
    """One loaded ``Work`` (a model, an index) in a Ray worker process; loaded again after Ray restarts it."""

    def __init__(self, work: Work, driver_node: str | None = None):
        self.work = work
        self.driver_node = driver_node  # the node the job's driver runs on
        self.apply: Any = None

    def load(self) -> int:
        if self.apply is None:
            compute_like_the_local_engine()
            tuned = "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ
            if not tuned and optional_import("ray").get_runtime_context().get_node_id() == self.driver_node:
                os.environ["GOMP_SPINCOUNT"] = SHARED_NODE_SPINCOUNT  # read when torch first loads, just below
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
    stop_after_job: bool = False  # the next runner closed is the last: closing it stops the local cluster
    runner: RayRunner | None = field(default=None, init=False)

    started: bool = field(default=False, init=False)  # this engine started the cluster, and shuts it down
    warmed: tuple[Work, list[Any], list[Any]] | None = field(default=None, init=False)  # work, replicas, loads
    thread: ThreadPoolExecutor | None = field(default=None, init=False)  # starts and stops the local cluster
    pending: list[Future[None]] = field(default_factory=list, init=False)  # its steps not waited for yet
    failure: BaseException | None = field(default=None, init=False)  # what a step there raised

    def connect(self) -> None:
        """Join the cluster at ``address`` (one that does not answer fails here), or start a local one in
        the background, ready when first used; a process already connected stays so."""
        ray = optional_import("ray")
        if self.address is not None:
            self.probe()  # first: a process already joined to a cluster must not hide a wrong address
        if self.started or ray.is_initialized():
            return
        if self.address is not None:
            self.init(ray)
            return
        self.started = True
        self.in_background(lambda: self.init(ray))

    def probe(self) -> None:
        """An address where nothing listens fails in seconds, naming ``--address``: Ray's own client retries
        for many minutes and logs dozens of lines about an address of its own making."""
        import re
        import socket

        found = re.fullmatch(r"(?:ray://)?([\w.\-]+):(\d+)", str(self.address))
        if found is None:  # "auto": Ray finds the local cluster itself
            return
        host, port = found.group(1), int(found.group(2))
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as err:
            raise BackendError(
                f"--address {self.address}: nothing answers at {host}:{port} ({err.strerror or err}); "
                "give the address of a running Ray cluster (ray start --head prints it)"
            ) from None

    def init(self, ray: Any) -> None:
        # Ray's own log lines (its token warning, "Started a local Ray instance") would interleave with
        # the job's; errors still show.
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if self.address is None:
            options["num_cpus"] = os.cpu_count()
        quiet = logging.getLogger("ray._private.worker")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "SIGTERM handler is not set" when started off the main thread
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError) as err:
            where = (
                f"--address {self.address}: no Ray cluster answers there" if self.address else "no local Ray cluster"
            )
            raise BackendError(f"{where} ({err})") from None
        finally:
            quiet.setLevel(level)

    def in_background(self, step: Callable[[], None], *, always: bool = False) -> None:
        """Run ``step`` on the engine's thread, after the steps already there; ``ready`` waits for them.

        One thread, alive until ``shutdown``: Ray's processes die with the thread that started them
        (their parent-death signal), so the cluster is started, used and stopped from it.
        """
        if self.thread is None:
            self.thread = ThreadPoolExecutor(1, thread_name_prefix="rerank-ray")

        def run() -> None:
            if always or self.failure is None:  # a cluster that did not start is not used
                try:
                    step()
                except BaseException as err:  # raised where the cluster is next used
                    self.failure = err

        self.pending.append(self.thread.submit(run))

    def ready(self) -> None:
        """Wait for the background steps (the local cluster starting); raise what they raised."""
        pending, self.pending = self.pending, []
        for step in pending:
            step.result()
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure

    def warm(self, work: Work) -> None:
        """Start the replicas of ``work`` loading now (in the background, once the cluster is up), so
        the job's ``start(work)`` finds them loaded or loading."""
        ray = optional_import("ray")

        def create() -> None:
            if self.warmed is None and ray.is_initialized():  # (Ray would start a cluster of its own)
                actors = self.replicas(ray, work)
                self.warmed = (work, actors, [a.load.remote() for a in actors])

        self.in_background(create)

    def shutdown(self) -> None:
        """Stop the local cluster this engine started (a joined one keeps running)."""
        self.stop()
        for step in self.pending:
            step.result()
        self.pending, self.failure = [], None
        if self.thread is not None:
            self.thread.shutdown()
            self.thread = None

    def stop(self) -> None:
        """Stop the local cluster in the background (the job's output is written meanwhile); ``shutdown`` waits."""
        if self.started:
            self.started = False
            self.in_background(optional_import("ray").shutdown, always=True)  # even one that failed half-way

    def ray(self) -> Any:
        """The ``ray`` module, the cluster up."""
        self.ready()
        return optional_import("ray")

    def task_options(self, ray: Any = None) -> dict[str, Any]:
        """Resources of one replica or task, and the environment it sees."""
        options: dict[str, Any] = {"num_cpus": self.cpus_per_worker(ray), "num_gpus": self.num_gpus}
        if not self.started and not str(self.address or "").startswith("ray://"):
            # Workers of a cluster on this machine see this process's data, cache and offline settings
            # (a local cluster started here has them already: its processes inherit this environment,
            # and its pooled workers serve replicas at once; a remote cluster's nodes keep their own).
            forwarded = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENVIRONMENT)}
            options["runtime_env"] = {"env_vars": forwarded}
        return options

    def cpus_per_worker(self, ray: Any = None) -> float:
        """``num_cpus``, or the cluster's CPUs shared among the workers (at most one node's, at least one):
        one worker on a machine uses all of it, as the local engine does."""
        if self.num_cpus is not None:
            return self.num_cpus
        ray = ray or self.ray()
        total = ray.cluster_resources().get("CPU", 1)
        largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=total)
        return float(max(1, min(largest, total // self.workers)))

    def replicas(self, ray: Any, work: Work) -> list[Any]:
        """``workers`` replicas of ``work``, created (their loading is asked for separately)."""
        replica = ray.remote(Replica).options(
            max_restarts=self.attempts, max_task_retries=self.attempts, **self.task_options(ray)
        )
        node = driver_node(ray)
        return [replica.remote(work, node) for _ in range(self.workers)]

    def start(self, work: Work) -> RayRunner:
        ray = self.ray()
        warmed, self.warmed = self.warmed, None
        if warmed is not None and warmed[0] == work:
            actors, loads = warmed[1], warmed[2]
        else:
            for actor in warmed[1] if warmed is not None else []:
                ray.kill(actor)
            actors = self.replicas(ray, work)
            loads = [a.load.remote() for a in actors]
        runner = RayRunner(ray, actors, self)
        try:
            runner.pids = get_unwrapped(ray, loads)  # they load side by side
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
        """Stop the replicas (their models leave memory); the cluster stays up for the job's next stage,
        unless this was the job's last (``stop_after_job``)."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self.engine.stop_after_job:
            self.engine.stop()


def driver_node(ray: Any) -> str | None:
    """The id of the node this process (the job's driver) runs on; None through Ray Client (``ray://``)."""
    try:
        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # Ray Client's context has no node
        return None


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
        # a title travels too: split puts it on every window
        return [(r.query.qid, r.query.text, [(c.docid, c.score, c.text, c.title) for c in r.candidates]) for r in items]
    return items


def unpack_items(packed: list[Any]) -> list[Any]:
    if packed and isinstance(packed[0], tuple):
        return [RerankRequest(Query(qid, text), tuple(Candidate(*c) for c in cs)) for qid, text, cs in packed]
    return packed


def pack_results(results: list[RerankResult]) -> list[Any]:
    return [(r.ranking.qid, [(c.docid, c.score) for c in r.ranking.candidates], astuple(r.cost)) for r in results]


def unpack_results(packed: list[Any]) -> list[RerankResult]:
    return [RerankResult(Ranking(qid, tuple(Candidate(d, s) for d, s in cs)), Cost(*cost)) for qid, cs, cost in packed]
