"""Apache with Debian's mod_auth_openidc, a relying party nobody here wrote, run by the tests as
a process of its own: its own config, pid file and logs in a temporary folder, on a free loopback
port, and never as root (as root, the tests start it as www-data). It protects /protected/, whose
page prints the claims mod_auth_openidc hands it (server-side includes of OIDC_CLAIM_*)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import wait_for_port

APACHE = "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
SITE_EXAMPLE = Path(__file__).resolve().parent / "examples" / "apache-site.conf"
USER = "www-data"  # Debian's apache2 package makes it

# What the protected page shows: the claims as mod_auth_openidc passes them, one <dd> each.
CLAIMS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Claims</title></head>
<body><h1>Signed in</h1><dl>
<dt>sub</dt><dd id="sub"><!--#echo var="OIDC_CLAIM_sub" --></dd>
<dt>email</dt><dd id="email"><!--#echo var="OIDC_CLAIM_email" --></dd>
<dt>email_verified</dt><dd id="email_verified"><!--#echo var="OIDC_CLAIM_email_verified" --></dd>
<dt>preferred_username</dt>
<dd id="preferred_username"><!--#echo var="OIDC_CLAIM_preferred_username" --></dd>
<dt>amr</dt><dd id="amr"><!--#echo var="OIDC_CLAIM_amr" --></dd>
<dt>acr</dt><dd id="acr"><!--#echo var="OIDC_CLAIM_acr" --></dd>
<dt>iss</dt><dd id="iss"><!--#echo var="OIDC_CLAIM_iss" --></dd>
</dl></body></html>
"""
SIGNED_OUT_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head>
<body><h1>Signed out</h1></body></html>
"""


def site_config(base: str, issuer: str, client_id: str, client_secret: str) -> str:
    """examples/apache-site.conf (what the docs show an operator) for this app and provider."""
    return (
        SITE_EXAMPLE.read_text()
        .replace("https://auth.example.com", issuer)
        .replace("https://wiki.example.com", base)
        .replace("your-client-id", client_id)
        .replace("your-client-secret", client_secret)
        .replace("a-long-random-passphrase", secrets.token_urlsafe(32))
    )


@dataclass
class Apache:
    base: str  # http://127.0.0.1:PORT
    directory: Path

    @property
    def redirect_uri(self) -> str:
        return f"{self.base}/protected/redirect_uri"

    @property
    def signed_out(self) -> str:
        return f"{self.base}/signed-out.html"

    def logout_url(self) -> str:
        """mod_auth_openidc's own logout: it ends its session, then sends the browser to the
        provider's end_session_endpoint with the ID token as hint, to come back to signed_out."""
        return f"{self.redirect_uri}?logout={self.signed_out}"

    def error_log(self) -> str:
        log = self.directory / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""


def _as_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", USER, "--", *command] if os.geteuid() == 0 else command


def _server_config(directory: Path, port: int, site: str) -> str:
    modules = "\n".join(
        f"LoadModule {name}_module {MODULES}/mod_{name}.so"
        for name in (
            "mpm_event",
            "authn_core",
            "authz_core",
            "authz_user",
            "mime",
            "include",
            "auth_openidc",
        )
    )
    return f"""\
ServerRoot {directory}
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {directory}/httpd.pid
ErrorLog {directory}/error.log
LogLevel warn auth_openidc:info
DefaultRuntimeDir {directory}
Mutex file:{directory}
{modules}
DocumentRoot {directory}/htdocs
<Directory {directory}/htdocs>
    Options +Includes
    Require all granted
</Directory>
TypesConfig /etc/mime.types
AddType text/html .shtml .html
AddOutputFilter INCLUDES .shtml
{site}"""


@contextmanager
def apache_site(base_of: str, port: int, site: str) -> Iterator[Apache]:
    """Apache serving `site` (config lines) on 127.0.0.1:PORT, reached at base_of."""
    directory = Path(tempfile.mkdtemp(prefix="tessera-apache-"))
    htdocs = directory / "htdocs"
    (htdocs / "protected").mkdir(parents=True)
    (htdocs / "protected" / "claims.shtml").write_text(CLAIMS_PAGE)
    (htdocs / "signed-out.html").write_text(SIGNED_OUT_PAGE)
    config = directory / "apache2.conf"
    config.write_text(_server_config(directory, port, site))
    if os.geteuid() == 0:
        for path in (directory, *directory.rglob("*")):
            shutil.chown(path, USER, USER)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}
    process = subprocess.Popen(
        _as_user([APACHE, "-f", str(config), "-DFOREGROUND"]),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(directory / "stderr.log").open("wb"),
    )
    made = Apache(base_of, directory)
    try:
        try:
            wait_for_port(port, timeout=15)
        except TimeoutError:
            raise RuntimeError((directory / "stderr.log").read_text() + made.error_log()) from None
        yield made
    finally:
        process.terminate()
        process.wait(timeout=15)
        shutil.rmtree(directory, ignore_errors=True)


def ensure_apache() -> None:
    if not (os.path.exists(APACHE) and (MODULES / "mod_auth_openidc.so").exists()):
        raise RuntimeError(
            "apache2 or mod_auth_openidc is missing: run `make system-deps` (Debian's apache2 "
            "and libapache2-mod-auth-openidc)"
        )
