"""The image, built and run for real: ops/Dockerfile built by buildah (ops/build-image.sh, what
`make image` runs) on a base of Debian's packages, then `serve`, `projector` and `worker` run
from it as uid 10001, against the tests' PostgreSQL, Redis and SMTP server, over host networking.

No Docker engine runs on these machines and podman cannot start a container, but buildah with
chroot isolation both builds an image and runs commands in its filesystem. The tests keep a
buildah storage of their own (STORAGE, not the machine's usual one, which `make image` fills): a
stable cache, so a run with the Dockerfile and the packages unchanged rebuilds nothing, and each
build removes what older builds left there. One checkout at a time uses it (a lock, held from the
build to the last container's removal), so no build prunes an image another run is about to use.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import PASSWORD
from tests.servers import PostgresCluster, free_port, wait_for_port
from tests.smtp import ScriptedHandler, SmtpServer

ROOT = Path(__file__).resolve().parents[2]
IMAGE_TAG = "localhost/tessera:test"
STORAGE = Path("/var/tmp/tessera-test-images")
RUNTIME_UID = 10001  # the Dockerfile's `tessera` user
# A cold build (the base from Debian's packages, then the image) takes about 3 minutes on two
# cores; a cached one, seconds.
BUILD_TIMEOUT = 900
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 120)  # the first test to ask builds the image


def buildah(*arguments: str) -> list[str]:
    return ["buildah", "--root", str(STORAGE), "--runroot", str(STORAGE / "run"), *arguments]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image's id, built from this checkout (by id: the tag is only a name for the cache)."""
    work = tmp_path_factory.mktemp("image")
    STORAGE.mkdir(parents=True, exist_ok=True)
    with (STORAGE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Under the lock, every container in this storage is one a killed run left behind.
        subprocess.run(buildah("rm", "--all"), capture_output=True, check=True)
        log = work / "build.log"
        with log.open("wb") as out:
            built = subprocess.run(
                ["sh", "ops/build-image.sh", "--iidfile", str(work / "iid")],
                cwd=ROOT,
                env={
                    **os.environ,
                    "IMAGE": IMAGE_TAG,
                    "STORAGE_ROOT": str(STORAGE),
                    "PYTHON": sys.executable,
                },
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT,
            )
        assert built.returncode == 0, log.read_text()[-4000:]
        yield (work / "iid").read_text().strip()


def session_processes(session: int) -> dict[int, tuple[int, int, str]]:
    """pid -> (parent, uid, command line) of every live process in `session`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # A zombie has exited: only its parent's reaping (init's, once it is orphaned) is left.
        if int(fields[3]) != session or fields[0] == "Z":
            continue
        uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        found[int(entry.name)] = (int(fields[1]), uid, cmdline)
    return found


def left_running(session: int, within: float = 5.0) -> dict[int, tuple[int, int, str]]:
    """What of `session` still runs once the processes it had in hand have had `within` seconds
    to finish exiting (its container's leader was waited for; an orphan may still be on its way
    out)."""
    deadline = time.monotonic() + within
    while (running := session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running


@dataclass
class Container:
    """One process of the image in a buildah working container of its own, as a container
    engine would run it."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tessera_pids(self) -> list[int]:
        """The image's `tessera` process (the one a container engine would signal) and its
        children: what runs the image's code, not buildah's own processes around it."""
        found = session_processes(self.process.pid)
        return [pid for pid, (_, _, cmd) in found.items() if cmd.startswith("/opt/venv/bin/python")]

    def main_pid(self) -> int:
        found = session_processes(self.process.pid)
        ours = set(self.tessera_pids())
        (main,) = [pid for pid in ours if found[pid][0] not in ours]
        return main

    def stop(self) -> int:
        """SIGTERM to the image's process, as `docker stop` sends to a container's: buildah
        answers a signal to `buildah run` by killing its child outright, with no clean exit."""
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(self.main_pid(), signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            raise


@dataclass
class Deployment:
    image: str
    env: dict[str, str]
    directory: Path
    volumes: list[str]
    containers: dict[str, Container] = field(default_factory=dict)

    def run(self, role: str) -> Container:
        name = f"tessera-test-{os.getpid()}-{role}"
        subprocess.run(buildah("rm", name), capture_output=True)  # left by a killed run
        subprocess.run(
            buildah("from", "--pull=never", "--quiet", "--name", name, self.image),
            check=True,
            capture_output=True,
        )
        settings = [f"--env={key}={value}" for key, value in self.env.items()]
        mounts = [f"--volume={volume}" for volume in self.volumes]
        run = buildah("run", "--isolation", "chroot", "--network", "host", *mounts, *settings)
        log = self.directory / f"{role}.log"
        with log.open("wb") as out:
            # The image's USER (10001) is who runs; --user would only hide a Dockerfile that
            # forgot it. A session of its own, to find the process tree and end it.
            process = subprocess.Popen(
                [*run, name, "--", "tessera", role],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.containers[role] = Container(name, process, log)
        return self.containers[role]

    def stop_all(self) -> dict[str, int]:
        codes = {}
        for role, container in self.containers.items():
            codes[role] = container.stop()
        for container in self.containers.values():
            subprocess.run(buildah("rm", container.name), capture_output=True, check=True)
        return codes


@contextlib.contextmanager
def deployed(
    image: str, tmp_path: Path, postgres: PostgresCluster, redis_url: str, smtp: SmtpServer
) -> Iterator[tuple[Deployment, str]]:
    port, metrics_port = free_port(), free_port()
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The containers share nothing but these settings and the servers: no DATA_DIR in common.
    env = {
        **FAST_ARGON2,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": postgres.new_database(),
        "REDIS_URL": redis_url,
        "SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        # As compose gives it: a secret file, readable by the image's user and nobody else.
        "JWT_PRIVATE_KEY_FILE": "/run/secrets/jwt_private_key",
        "PUBLIC_URL": "https://auth.example.test",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp.port),
        "WORKER_METRICS_PORT": str(metrics_port),
    }
    key_file = tmp_path / "jwt_private_key"
    key_file.write_bytes(key)
    os.chown(key_file, RUNTIME_UID, RUNTIME_UID)
    key_file.chmod(0o400)
    deployment = Deployment(image, env, tmp_path, [f"{key_file}:/run/secrets/jwt_private_key:ro"])
    try:
        for role in ("serve", "projector", "worker"):
            deployment.run(role)
        wait_for_port(port, timeout=60)
        wait_for_port(metrics_port, timeout=60)
        yield deployment, f"http://127.0.0.1:{port}"
    finally:
        codes = deployment.stop_all()
        logs = {role: c.log.read_text()[-2000:] for role, c in deployment.containers.items()}
        assert codes == dict.fromkeys(deployment.containers, 0), (codes, logs)


def eventually_one_mail(smtp: SmtpServer, to: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not smtp.handler.to(to) and time.monotonic() < deadline:
        time.sleep(0.1)
    (mail,) = smtp.handler.to(to)
    return mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_the_image_signs_a_person_up_and_the_worker_mails_them(
    image: str, tmp_path: Path, postgres: PostgresCluster, redis_url: str
) -> None:
    with SmtpServer(ScriptedHandler()) as smtp:
        with deployed(image, tmp_path, postgres, redis_url, smtp) as (deployment, base):
            for container in deployment.containers.values():
                assert container.tessera_pids(), container.log.read_text()
                for pid in container.tessera_pids():
                    uid = session_processes(container.process.pid)[pid][1]
                    assert uid == RUNTIME_UID, f"{container.name} runs as uid {uid}"

            with httpx.Client(base_url=base, timeout=10) as http:
                assert http.get("/health/ready").status_code == 200
                registered = http.post(
                    "/api/auth/register",
                    json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
                )
                assert registered.status_code == 201, registered.text
                text = eventually_one_mail(smtp, "ada@example.com")
                link = re.search(
                    r"https://auth\.example\.test/verify-email\?token=([A-Za-z0-9_-]+)", text
                )
                assert link, text
                verified = http.post("/api/auth/verify-email", json={"token": link.group(1)})
                assert verified.status_code == 200, verified.text
                signed_in = http.post(
                    "/api/auth/login", json={"login": "ada", "password": PASSWORD}
                )
                assert signed_in.status_code == 200, signed_in.text

        # Stopped cleanly (exit 0 on SIGTERM, checked as the deployment ends), and nothing left:
        # no process of the image, no working container.
        for container in deployment.containers.values():
            assert not left_running(container.process.pid)
        listed = subprocess.run(
            buildah("containers", "--quiet", "--filter", f"name=tessera-test-{os.getpid()}-"),
            capture_output=True,
            text=True,
            check=True,
        )
        assert listed.stdout.strip() == ""


def test_the_image_keeps_none_of_the_build_secrets(image: str) -> None:
    """pip's settings and the CA bundle went in as build secrets, for one step of the builder
    stage: neither the image's files nor its history hold them. And it runs as 10001, not root."""
    inspected = subprocess.run(
        buildah("inspect", "--type", "image", image), capture_output=True, text=True, check=True
    )
    assert "pip.conf" not in inspected.stdout
    assert "id=ca.crt" not in inspected.stdout
    name = f"tessera-test-{os.getpid()}-files"
    look = "id -u; ls -A /etc/pip.conf /etc/xdg/pip /run/secrets 2>&1; true"
    subprocess.run(buildah("rm", name), capture_output=True)
    subprocess.run(buildah("from", "--pull=never", "--quiet", "--name", name, image), check=True)
    try:
        looked = subprocess.run(
            [*buildah("run", "--isolation", "chroot", name, "--"), "sh", "-c", look],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run(buildah("rm", name), capture_output=True, check=True)
    assert looked.returncode == 0, looked.stderr
    uid, *listing = looked.stdout.splitlines()
    assert uid == str(RUNTIME_UID)
    assert all("No such file or directory" in line for line in listing), listing
