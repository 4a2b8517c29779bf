"""A whole Flower deployment on one machine: a SuperLink, N SuperNodes and `flwr run`.

For trying the deployment runtime before spreading it over machines, and for the tests: the
processes are the real `flower-superlink` / `flower-supernode` executables talking over
127.0.0.1, optionally with TLS and SuperNode authentication (test certificates from
`lada.federation.certs`). Every process is started in its own session and stopped with its
children on `stop()` (or when the `with` block ends).

With `simulation=True` the SuperLink runs Flower's simulation runtime instead (what `flwr run`
starts for a local simulation): no SuperNode processes; each run submitted with `simulate`
gets N simulated SuperNodes, its ServerApp and ClientApps in a process of the SuperLink's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from lada.federation.certs import DeploymentKeys, generate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _executable(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name}: not found next to {sys.executable} or on PATH")
    return found


class LocalDeployment:
    """Start, use and stop a local SuperLink with `n_supernodes` SuperNodes."""

    def __init__(
        self,
        workdir: Path,
        n_supernodes: int,
        *,
        tls: bool = False,
        authenticate: bool = False,
        node_configs: list[str] | None = None,
        simulation: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        """`env`: variables added to the environment of every process started here."""
        if authenticate and not tls:
            raise ValueError("SuperNode authentication needs TLS")
        self.workdir = workdir
        self.n_supernodes = n_supernodes
        self.simulation = simulation
        self.tls = tls
        self.authenticate = authenticate
        self.node_configs = node_configs or [
            f"partition-id={i} num-partitions={n_supernodes}" for i in range(n_supernodes)
        ]
        self.port = free_port()
        self.keys: DeploymentKeys | None = None
        self.superlink: subprocess.Popen | None = None
        self.supernodes: list[subprocess.Popen] = []
        self._logs: list[IO[bytes]] = []
        # Flower's processes start their helpers (flower-superexec, flwr-clientapp) by name.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        self.env = {
            **os.environ,
            **(env or {}),
            "FLWR_HOME": str(workdir / "flwr-home"),
            "PATH": path,
        }
        # Flower's SuperExec checks for a new app process to start once a second by default;
        # every message of a deployment waits for that check (docs/deployment.md).
        self.env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.1")

    # ---------------------------------------------------------------- start
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("wb")
        self._logs.append(log)
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _write_cli_config(self) -> None:
        home = self.workdir / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        security = f'root-certificates = "{self.keys.ca_cert}"' if self.keys else "insecure = true"
        (home / "config.toml").write_text(
            '[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "127.0.0.1:{self.port}"\n{security}\n'
        )

    def start(self) -> LocalDeployment:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.tls:
            self.keys = generate(self.workdir / "keys", n_supernodes=self.n_supernodes)
        self._write_cli_config()
        link = [_executable("flower-superlink"), "--port", str(self.port)]
        link.append("--disable-runtime-dependency-installation")
        if self.keys:
            link += ["--ssl-ca-certfile", str(self.keys.ca_cert)]
            link += ["--ssl-certfile", str(self.keys.server_cert)]
            link += ["--ssl-keyfile", str(self.keys.server_key)]
        else:
            link.append("--insecure")
        if self.authenticate:
            link.append("--enable-supernode-auth")
        if self.simulation:
            link.append("--simulation")
        self.superlink = self._spawn("superlink", link)
        self._wait_for_port()
        if self.simulation:
            return self
        if self.authenticate:
            for _, public in self.keys.supernodes:  # type: ignore[union-attr]
                self.flwr("supernode", "register", str(public), "local")
        for i in range(self.n_supernodes):
            self.supernodes.append(self._spawn(f"supernode-{i}", self._supernode_args(i)))
        return self

    def _supernode_args(self, i: int) -> list[str]:
        args = [_executable("flower-supernode"), "--superlink", f"127.0.0.1:{self.port}"]
        args += ["--port", str(free_port()), "--node-config", self.node_configs[i]]
        if self.keys:
            args += ["--root-certificates", str(self.keys.ca_cert)]
            if self.authenticate:
                args += ["--auth-supernode-private-key", str(self.keys.supernodes[i][0])]
        else:
            args.append("--insecure")
        return args

    def _wait_for_port(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.superlink is not None and self.superlink.poll() is not None:
                raise RuntimeError(f"flower-superlink exited:\n{self.log('superlink')[-3000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"flower-superlink did not listen on port {self.port}")

    # ------------------------------------------------------------------ use
    def flwr(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> str:
        """Run the `flwr` CLI against this SuperLink; its output, or an error with it."""
        done = subprocess.run(
            [_executable("flwr"), *args],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"flwr {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def submit(
        self,
        app_dir: Path,
        config: Path,
        run_dir: Path,
        overrides: str = "",
        *,
        resume: bool = False,
    ) -> str:
        """`flwr run` the app in `app_dir` with an experiment config; returns the CLI output.

        `resume`: continue `run_dir` from its last complete round (`resume=true`)."""
        run_config = f"config='{config}' run-dir='{run_dir}' wait-for-clients-s=120"
        if overrides:
            run_config += f" overrides='{overrides}'"
        if resume:
            run_config += " resume=true"
        return self.flwr("run", str(app_dir), "local", "--run-config", run_config, cwd=app_dir)

    def simulate(
        self,
        app_dir: Path,
        run_config: Path,
        federation_config: str,
        echo: Callable[[str], None] | None = None,
    ) -> tuple[str, str]:
        """`flwr run` the app on the simulation runtime and wait for the run to end.

        `run_config` is a TOML file of run config entries, `federation_config` the simulation's
        `--federation-config` (`num-supernodes=N ...`). Each line of the run's log goes to
        `echo` as it comes. Returns the run's final status (`finished:completed` when it went
        well) and its details.
        """
        if not self.simulation:
            raise ValueError("simulate: start the deployment with simulation=True")
        command = [_executable("flwr"), "run", str(app_dir), "local", "--stream"]
        command += ["--run-config", str(run_config), "--federation-config", federation_config]
        with subprocess.Popen(
            command,
            env=self.env,
            cwd=app_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as streaming:
            assert streaming.stdout is not None
            for line in streaming.stdout:
                if echo is not None:
                    echo(line.rstrip("\n"))
        if streaming.returncode != 0:
            raise RuntimeError(f"flwr run failed (exit code {streaming.returncode})")
        runs = json.loads(self.flwr("ls", "local", "--format", "json"))["runs"]
        if len(runs) != 1:
            raise RuntimeError(f"expected one run on the simulation SuperLink, found {len(runs)}")
        return str(runs[0]["status"]), str(runs[0].get("status-details", ""))

    def kill_supernode(self, i: int) -> None:
        """SIGKILL SuperNode `i` and the ClientApp processes it started."""
        os.killpg(self.supernodes[i].pid, signal.SIGKILL)
        self.supernodes[i].wait(timeout=30)

    # ----------------------------------------------------------------- stop
    def stop(self) -> None:
        for proc in [*self.supernodes, self.superlink]:
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
                except ProcessLookupError:
                    pass
        for log in self._logs:
            log.close()

    def __enter__(self) -> LocalDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
