"""One test run, start to verdict: set up, drive, fault, heal, tear down, check, store.

The order matters and is the same on every path (time limit, Ctrl-C, SIGTERM, a crash in the
middle): stop the generators, stop and heal the nemesis, let the cluster recover, run the
workload's final ops, close clients, fetch node logs, tear down (unless ``leave_running``), then
analyse the history and write results.json and report.html. Errors in healing or teardown are
reported in results.json and bench.log; they never suppress the verdict. The history is written
as it happens, so even a bench killed with SIGKILL leaves a valid prefix to check later.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.checking import check_history_file, run_checker_options
from bench.cluster.ssh_node import NodeUnreachable
from bench.runner.cluster_setup import TestCluster, open_test_cluster
from bench.runner.components import WorkloadSpec, create_backend, workload_spec
from bench.runner.config import TestConfig
from bench.runner.observer import observe_leader, wait_for_leader
from bench.runner.process import (
    ClientDriver,
    ClientProcess,
    HistorySink,
    RunStats,
    run_final_ops,
    sleep_unless,
)
from bench.runner.progress import ProgressView, show_progress
from lockbench.clock_preload import arm_clock, disarm_clock
from lockbench.clock_reach import require_clock_reach
from lockbench.daemon import fetch_logs
from lockbench.errors import (
    EXIT_CLUSTER,
    EXIT_INVALID,
    EXIT_UNKNOWN,
    EXIT_VALID,
    BenchError,
    ConfigError,
)
from lockbench.history import NEMESIS
from lockbench.history_writer import HistoryWriter
from lockbench.options import parse_options
from lockbench.parallel import NodesFailed
from lockbench.protocols import Backend, CheckResult, Cluster, Verdict, elects_leader
from lockbench.run_dir import (
    BENCH_LOG,
    HISTORY_FILE,
    NEMESIS_LOG,
    NODES_DIR,
    REPORT_FILE,
    RESOURCE_LOG,
    create_run_dir,
    never_valid_reason,
    unfinished_notes,
    write_results,
    write_test_file,
)
from nemesis.schedule import NemesisRunner
from reports.render import render_report
from workloads.base import BenchWorkload, WorkloadContext
from workloads.resource import ResourceClient, ResourceServer

log = logging.getLogger(__name__)

VERDICT_EXIT: Mapping[str, int] = {
    "valid": EXIT_VALID,
    "invalid": EXIT_INVALID,
    "unknown": EXIT_UNKNOWN,
}
# Bound on the nemesis noticing ``stop`` and returning, before it is cancelled and healed anyway.
NEMESIS_STOP_TIMEOUT_S = 30.0
# Bound on one leader poll (it may go over SSH to a partitioned node).
LEADER_POLL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run (not what to test): where to store, whether to keep the cluster, display."""

    store: Path = Path("store")
    leave_running: bool = False
    live_progress: bool | None = None  # None: a live display only when stdout is a terminal


class Interrupted(BenchError):
    """Ctrl-C or SIGTERM arrived before the test proper started."""

    exit_code = EXIT_UNKNOWN


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What a run produced; ``exit_code`` follows docs/history.md."""

    run_dir: Path
    verdict: Verdict
    exit_code: int
    errors: tuple[str, ...]
    interrupted: bool
    stats: RunStats


def run_test(config: TestConfig, options: RunOptions | None = None) -> RunOutcome:
    """Run a validated test to its verdict (blocking); see the module docstring for the order."""
    return asyncio.run(TestRun(config, options or RunOptions()).run())


class TestRun:
    """The state of one run; ``run`` is the whole life cycle."""

    __test__ = False

    def __init__(self, config: TestConfig, options: RunOptions) -> None:
        self.config = config
        self.options = options
        self.stats = RunStats()
        self.errors: list[str] = []
        self.interrupted = False
        self.stop = asyncio.Event()
        self.abort = asyncio.Event()
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._nemesis_lock = threading.Lock()
        self._nemesis_log: IO[str] | None = None
        self._nemesis: Any = None

    # -- signals ---------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self.interrupted:
            self.interrupted = True
            log.warning("%s: stopping the generators, then heal, tear down and check", name)
            self.stop.set()
            return
        log.warning("%s again: abandoning in-flight operations (recorded as unknown)", name)
        self.abort.set()
        for task in self._worker_tasks:
            task.cancel()

    @contextlib.contextmanager
    def _signal_handlers(self) -> Any:
        loop = asyncio.get_running_loop()
        installed = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    # -- life cycle ------------------------------------------------------------------------

    async def run(self) -> RunOutcome:
        config = self.config
        run_dir = create_run_dir(self.options.store, config.name)
        write_test_file(run_dir, config.to_data())
        write_results(run_dir, "unknown", {}, notes=unfinished_notes())
        with _bench_log(run_dir / BENCH_LOG), self._signal_handlers():
            log.info("run %s: %s", config.name, run_dir)
            return await self._run(run_dir)

    async def _run(self, run_dir: Path) -> RunOutcome:
        config = self.config
        backend = create_backend(config.backend, config.backend_options)
        writer = HistoryWriter(run_dir / HISTORY_FILE)
        history: HistorySink = writer
        try:
            test_cluster = await asyncio.to_thread(open_test_cluster, config, run_dir)
        except (BenchError, OSError, RuntimeError) as exc:
            writer.close()
            self._report(f"could not set up the cluster: {exc}")
            return self._setup_failed(run_dir, exc)
        setup_error: BaseException | None = None
        try:
            try:
                nemesis = self._make_nemesis(test_cluster.cluster, backend, history, run_dir)
                self._nemesis = nemesis
                await asyncio.to_thread(self._start_service, backend, test_cluster.cluster, nemesis)
            except (BenchError, OSError, RuntimeError) as exc:
                self._report(f"could not start {backend.name}: {exc}")
                setup_error = exc
            else:
                if self.interrupted:  # Ctrl-C while deploying: nothing was tested
                    self._report("interrupted during set-up: the test never started")
                    setup_error = Interrupted()
                else:
                    await self._drive(backend, test_cluster.cluster, history, nemesis, run_dir)
        finally:
            writer.close()
            if self._nemesis_log is not None:
                self._nemesis_log.close()
            unreachable = unreachable_nodes(setup_error)
            self.errors.extend(await self._teardown(backend, test_cluster, run_dir, unreachable))
        if setup_error is not None:
            return self._setup_failed(run_dir, setup_error)
        return self._analyse(run_dir)

    @property
    def has_clock_fault(self) -> bool:
        return any(spec.get("fault") == "clock" for spec in self.config.nemesis)

    def _report(self, message: str) -> None:
        log.error("%s", message)
        self.errors.append(message)

    def _setup_failed(self, run_dir: Path, exc: BaseException) -> RunOutcome:
        """The test never started: unknown (never valid), whoever reads the run later."""
        code = exc.exit_code if isinstance(exc, BenchError) else EXIT_CLUSTER
        notes: dict[str, Any] = {"started": False, "interrupted": self.interrupted}
        if not isinstance(exc, Interrupted):
            notes["setup_failed"] = True
        notes["reason"] = never_valid_reason(notes)
        write_results(run_dir, "unknown", {}, errors=self.errors, notes=notes)
        return RunOutcome(
            run_dir, "unknown", code, tuple(self.errors), self.interrupted, self.stats
        )

    def _make_nemesis(
        self, cluster: Cluster, backend: Backend, history: HistorySink, run_dir: Path
    ) -> Any:
        if not self.config.nemesis:
            return None
        nemesis_log = (run_dir / NEMESIS_LOG).open("a", encoding="utf-8")

        def record(type: str, f: str, value: Any) -> None:
            history.append(NEMESIS, type, f, None, value)  # type: ignore[arg-type]
            with self._nemesis_lock:
                entry = {"wall_time": time.time(), "type": type, "f": f, "value": value}
                nemesis_log.write(json.dumps(entry, default=str) + "\n")
                nemesis_log.flush()
            skipped = isinstance(value, Mapping) and "skipped" in value
            if f.startswith("start-") and type == "info" and not skipped:
                self.stats.active_faults[f.removeprefix("start-")] = value
            elif f.startswith("stop-") and type == "info":
                self.stats.active_faults.pop(f.removeprefix("stop-"), None)

        runner = NemesisRunner(
            [dict(spec) for spec in self.config.nemesis],
            cluster,
            backend,
            seed=self.config.seed or 0,
            record=record,
        )
        try:
            runner.validate()
        except BaseException:
            nemesis_log.close()
            raise
        self._nemesis_log = nemesis_log
        return runner

    def _start_service(self, backend: Backend, cluster: Cluster, nemesis: Any = None) -> None:
        clock_fault = self.has_clock_fault and cluster.runtime != "none"
        if clock_fault:
            # A server whose clock cannot be moved is refused before anything is installed
            # (programs the deploy installs are checked after it, below).
            require_clock_reach(backend, cluster, missing_ok=True)
            log.info("arming %d node(s) for clock faults", len(cluster.nodes))
            arm_clock(cluster)
        elif cluster.runtime != "none":
            # Servers run under the wall-clock library only when this test has a clock fault.
            disarm_clock(cluster)
        log.info("deploying %s to %d node(s)", backend.name, len(cluster.nodes))
        backend.deploy(cluster)
        if clock_fault:
            require_clock_reach(backend, cluster)
        if nemesis is not None:
            # e.g. the power-loss filesystem under each server's data, before the servers start
            nemesis.prepare_nodes()
        for node in cluster.nodes:
            backend.start(node)

    async def _drive(
        self,
        backend: Backend,
        cluster: Cluster,
        history: HistorySink,
        nemesis: Any,
        run_dir: Path,
    ) -> None:
        """The test proper: the workload's clients against the service while the nemesis runs,
        then recovery and the final ops. Each role is its own step below."""
        config = self.config
        # a leaderless service (lockbench.protocols.elects_leader) has no leader to wait for
        has_leader = cluster.runtime != "none" and elects_leader(backend)
        if has_leader:
            leader = await wait_for_leader(backend, cluster, bound=config.recovery_bound)
            log.info("service up; leader: %s", leader or "none reported")
        spec = workload_spec(config.workload)
        async with self._protected_resource(spec.uses_resource, run_dir) as resource:
            workload = self._workload(spec, cluster, resource)
            driver = ClientDriver(
                workload=workload,
                backend=backend,
                cluster=cluster,
                history=history,
                stats=self.stats,
                concurrency=config.concurrency,
                op_timeout=config.op_timeout,
                ttl=config.ttl,
                stop=self.stop,
                rate=config.rate,
            )
            history.start_ns = time.monotonic_ns()  # time 0 is the start of the test proper
            try:
                async with self._observers(backend, cluster, history, has_leader):
                    await self._run_clients(driver, backend, cluster, nemesis, has_leader)
            finally:
                await driver.drain()

    @contextlib.asynccontextmanager
    async def _protected_resource(
        self, uses_resource: bool, run_dir: Path
    ) -> AsyncIterator[ResourceClient | None]:
        """The protected resource the workload's critical sections touch, if it uses one."""
        if not uses_resource:
            yield None
            return
        config = self.config
        server = ResourceServer(config.resource_mode, run_dir / RESOURCE_LOG)
        await server.start(config.resource_host, config.resource_port)
        resource = ResourceClient(*server.address)
        try:
            yield resource
        finally:
            await resource.close()
            await server.stop()

    def _workload(
        self, spec: WorkloadSpec, cluster: Cluster, resource: ResourceClient | None
    ) -> BenchWorkload:
        config = self.config
        context = WorkloadContext(
            seed=config.seed or 0,
            concurrency=config.concurrency,
            ttl=config.ttl,
            nodes=tuple(node.name for node in cluster.nodes),
            resource=resource,
        )
        options = parse_options(spec.options, config.workload_options, where="workload_options")
        return spec.build(options, context)

    @contextlib.asynccontextmanager
    async def _observers(
        self, backend: Backend, cluster: Cluster, history: HistorySink, has_leader: bool
    ) -> AsyncIterator[None]:
        """The progress view and, with a leader, the leader observer, for the whole block."""
        config = self.config
        loop = asyncio.get_running_loop()
        observer_stop = asyncio.Event()
        view = ProgressView(self.stats, config.time_limit, config.name)
        tasks = [
            loop.create_task(show_progress(view, observer_stop, live=self.options.live_progress))
        ]
        if has_leader:
            tasks.append(
                loop.create_task(
                    observe_leader(
                        backend,
                        cluster,
                        history,
                        self.stats,
                        observer_stop,
                        interval=config.leader_poll,
                        timeout=LEADER_POLL_TIMEOUT_S,
                    )
                )
            )
        try:
            yield
        finally:
            observer_stop.set()
            for task in tasks:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task

    async def _run_clients(
        self,
        driver: ClientDriver,
        backend: Backend,
        cluster: Cluster,
        nemesis: Any,
        has_leader: bool,
    ) -> None:
        """The client processes and the nemesis until the time limit (or a stop), then the
        nemesis stopped and, unless aborted, recovery and the final ops."""
        config = self.config
        loop = asyncio.get_running_loop()
        timer = loop.call_later(config.time_limit, self.stop.set)
        nemesis_task = loop.create_task(nemesis.run(self.stop)) if nemesis is not None else None
        processes = [ClientProcess(driver, slot) for slot in range(config.concurrency)]
        self.stats.phase = "running"
        self._worker_tasks = [loop.create_task(p.run()) for p in processes]
        try:
            results = await asyncio.gather(*self._worker_tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    log.error("a client process crashed: %r", result)
                    self.errors.append(f"client process crashed: {result!r}")
            self.stop.set()
            self.stats.phase = "stopping"
            log.info("generators stopped after %.1fs", driver.history.now() / 1e9)
            for process in processes:
                process.check_leases_at_end()
            await asyncio.gather(*(p.close() for p in processes))
            await self._stop_nemesis(nemesis, nemesis_task)
            if not self.abort.is_set():
                next_id = max(p.process for p in processes) + 1  # no client process used it
                await self._recover_and_finish(
                    backend, cluster, driver, driver.workload, has_leader, next_id
                )
        finally:
            timer.cancel()
            self.stop.set()
            await asyncio.gather(*(p.close() for p in processes), return_exceptions=True)

    async def _stop_nemesis(self, nemesis: Any, task: asyncio.Task[None] | None) -> None:
        if nemesis is None or task is None:
            return
        try:
            async with asyncio.timeout(NEMESIS_STOP_TIMEOUT_S):
                await task
        except TimeoutError:
            self.errors.append("nemesis did not stop within its bound; cancelled")
        except Exception as exc:
            log.error("nemesis failed: %s", exc)
            self.errors.append(f"nemesis failed: {exc}")
        log.info("healing every fault")
        self.stats.phase = "healing"
        heal_errors = await asyncio.to_thread(nemesis.heal_all)
        self.stats.active_faults.clear()
        for error in heal_errors:
            log.error("heal: %s", error)
            self.errors.append(f"heal: {error}")

    async def _recover_and_finish(
        self,
        backend: Backend,
        cluster: Cluster,
        driver: ClientDriver,
        workload: BenchWorkload,
        has_leader: bool,
        final_process: int,
    ) -> None:
        config = self.config
        final_ops = workload.final_ops()
        if not final_ops:
            return
        self.stats.phase = "recovering"
        await sleep_unless(self.abort, config.quiet_period)
        if self.abort.is_set():
            return
        if has_leader:
            leader = await wait_for_leader(backend, cluster, bound=config.recovery_bound)
            if leader is None:
                log.warning("no leader within %.1fs of healing", config.recovery_bound)
        self.stats.phase = "final reads"
        final_driver = dataclasses.replace(driver, stop=asyncio.Event())
        bound = config.recovery_bound + 3 * config.op_timeout
        try:
            async with asyncio.timeout(bound):
                await run_final_ops(final_driver, final_process, final_ops)
        except TimeoutError:
            self.errors.append(f"final reads did not finish within {bound:g}s")
        finally:
            final_driver.stop.set()

    async def _teardown(
        self,
        backend: Backend,
        test_cluster: TestCluster,
        run_dir: Path,
        unreachable: frozenset[str] = frozenset(),
    ) -> list[str]:
        """Fetch logs, stop the service, release the cluster; every failure is a string.

        Nodes in ``unreachable`` (setup could not reach them; that error is reported already)
        are left out, so one refused SSH port is one error, not one per teardown step.
        """
        errors: list[str] = []
        cluster = test_cluster.cluster
        reachable = [node for node in cluster.nodes if node.name not in unreachable]
        if unreachable:
            log.info("teardown: leaving out unreachable node(s) %s", ", ".join(sorted(unreachable)))
        if cluster.runtime != "none" and reachable:
            try:
                await asyncio.to_thread(fetch_logs, cluster, run_dir / NODES_DIR, nodes=reachable)
            except Exception as exc:
                errors.append(f"could not fetch node logs: {exc}")
        if not self.options.leave_running:
            for node in reachable:
                try:
                    await asyncio.to_thread(backend.stop, node)
                except Exception as exc:
                    errors.append(f"could not stop {backend.name} on {node.name}: {exc}")
            if self._nemesis is not None:
                errors.extend(await asyncio.to_thread(self._nemesis.release_nodes))
        errors.extend(
            await asyncio.to_thread(test_cluster.close, leave_running=self.options.leave_running)
        )
        for error in errors:
            log.error("teardown: %s", error)
        return errors

    # -- analysis --------------------------------------------------------------------------

    def _analyse(self, run_dir: Path) -> RunOutcome:
        config = self.config
        notes = {
            "started": True,
            "finished": True,
            "interrupted": self.interrupted,
            "ops": {
                "invoke": self.stats.invokes,
                "ok": self.stats.ok,
                "fail": self.stats.fail,
                "info": self.stats.info,
            },
            "retired_processes": self.stats.retired,
        }
        verdict, results, reason = check_history(
            run_dir / HISTORY_FILE, config.resolved_checkers, checker_options(config)
        )
        if reason:
            notes["reason"] = reason
            self.errors.append(reason)
        write_results(run_dir, verdict, results, errors=self.errors, notes=notes)
        render(run_dir)
        code = VERDICT_EXIT[verdict]
        log.info("verdict: %s (exit %d); %s", verdict, code, run_dir)
        return RunOutcome(run_dir, verdict, code, tuple(self.errors), self.interrupted, self.stats)


def unreachable_nodes(error: BaseException | None) -> frozenset[str]:
    """The nodes a setup error says could not be reached at all (SSH refused, timed out)."""
    if not isinstance(error, NodesFailed):
        return frozenset()
    return frozenset(
        name for name, cause in error.failures.items() if isinstance(cause, NodeUnreachable)
    )


def checker_options(config: TestConfig) -> dict[str, Any]:
    """The checkers' options: the test's ``checker_options`` plus what the run itself knows."""
    return run_checker_options(config.ttl, config.checker_options)


def check_history(
    path: Path, names: tuple[str, ...], options: Mapping[str, Any]
) -> tuple[Verdict, dict[str, CheckResult], str | None]:
    """Run the checkers on a stored history (the pipeline ``lockbench check RUN_DIR`` runs too);
    a history or options the checkers refuse give unknown, with the reason."""
    try:
        verdict, results = check_history_file(path, names, options)
    except ConfigError as exc:
        return "unknown", {}, f"the checkers refused the run: {exc}"
    except Exception as exc:
        log.exception("checking failed")
        return "unknown", {}, f"checking failed: {type(exc).__name__}: {exc}"
    return verdict, dict(results), None


def render(run_dir: Path) -> None:
    """Write report.html; a failing report is logged, never fatal."""
    try:
        render_report(run_dir)
        log.info("report: %s", run_dir / REPORT_FILE)
    except Exception as exc:
        log.error("report.html could not be written: %s: %s", type(exc).__name__, exc)


@contextlib.contextmanager
def _bench_log(path: Path) -> Any:
    """Copy the bench's log records (INFO and up) into the run's bench.log."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous = root.level
    if previous > logging.INFO or previous == logging.NOTSET:
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()
