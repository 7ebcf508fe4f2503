"""Shared plumbing of the one* CLIs: endpoints, credentials, failover, output formats.

Endpoint: --endpoint (comma-separated front-ends allowed) else $ONE_ENDPOINT else
localhost:2634. Credentials: --token else $ONE_TOKEN (a login token, e.g. from `oneuser
login`), else --user/--password else the `user:password` file named by $ONE_AUTH else
~/.one/one_auth. TLS: --ca else $ONE_CA (the CA that signed the front-ends'
certificates; plaintext without it), and for mutual TLS --cert/--key else $ONE_CERT and
$ONE_KEY. Calls go to the first front-end that answers; on UNAVAILABLE or a connection
failure the next one is tried.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from zones.api.client import Client

DEFAULT_ENDPOINT = "localhost:2634"
DEFAULT_TIMEOUT = 15.0
_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE,)


class CliError(Exception):
    """A user-facing error: printed as `<prog>: error: <message>`, exit code 1."""


def add_global_args(parser: argparse.ArgumentParser, sub: bool = False) -> None:
    """The options every command takes. On subcommand parsers (`sub`) they default to
    SUPPRESS, so `onezone --json show` and `onezone show --json` both work."""
    d = {"default": argparse.SUPPRESS} if sub else {}
    g = parser.add_argument_group("global options")
    g.add_argument("--endpoint", help="front-end gRPC endpoint(s) host:port[,host:port...]", **d)
    g.add_argument("--user", help="user name (default: from ONE_AUTH / ~/.one/one_auth)", **d)
    g.add_argument("--password", help="password (prompted if --user is given without it)", **d)
    g.add_argument(
        "--token", help="a login token (e.g. from `oneuser login`); default $ONE_TOKEN", **d
    )
    g.add_argument("--ca", help="CA certificate (PEM) of the zone's TLS; default $ONE_CA", **d)
    g.add_argument("--cert", help="client certificate (PEM) for mutual TLS; $ONE_CERT", **d)
    g.add_argument("--key", help="its private key (PEM); default $ONE_KEY", **d)
    g.add_argument("-j", "--json", action="store_true", help="print JSON", **d)
    g.add_argument("-y", "--yaml", action="store_true", help="print YAML", **d)
    g.add_argument(
        "--timeout",
        type=float,
        help=f"per-call timeout in seconds (default {DEFAULT_TIMEOUT:g})",
        **({"default": DEFAULT_TIMEOUT} if not sub else d),
    )


def tls_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """Channel credentials from --ca/--cert/--key or $ONE_CA/$ONE_CERT/$ONE_KEY; None for
    plaintext (no CA given)."""

    def pick(option: str, env: str) -> str | None:
        return getattr(args, option, None) or os.environ.get(env) or None

    ca, cert, key = pick("ca", "ONE_CA"), pick("cert", "ONE_CERT"), pick("key", "ONE_KEY")
    if ca is None:
        if cert or key:
            raise CliError("--cert/--key need --ca (or $ONE_CA): the CA of the zone's TLS")
        return None
    if bool(cert) != bool(key):
        raise CliError("mutual TLS needs both --cert and --key ($ONE_CERT and $ONE_KEY)")

    def read(path: str, what: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as e:
            raise CliError(f"cannot read the {what} {path}: {e.strerror}") from None

    return grpc.ssl_channel_credentials(
        root_certificates=read(ca, "CA certificate"),
        private_key=read(key, "client key") if key else None,
        certificate_chain=read(cert, "client certificate") if cert else None,
    )


def endpoints(value: str | None) -> list[str]:
    raw = value or os.environ.get("ONE_ENDPOINT") or DEFAULT_ENDPOINT
    out = []
    for item in raw.split(","):
        item = item.strip()
        for scheme in ("http://", "https://", "grpc://", "dns:///"):
            if item.startswith(scheme):
                item = item[len(scheme) :]
        item = item.rstrip("/")
        if item.endswith("/RPC2"):
            item = item[: -len("/RPC2")]
        if item:
            if ":" not in item:
                raise CliError(f"endpoint {item!r} must be host:port")
            out.append(item)
    if not out:
        raise CliError("no endpoint: use --endpoint or set ONE_ENDPOINT")
    return out


def credentials(user: str | None, password: str | None) -> tuple[str, str]:
    if user:
        if password is None:
            if not sys.stdin.isatty():
                raise CliError("--user given without --password (and no terminal to ask)")
            password = getpass.getpass(f"Password for {user}: ")
        return user, password
    path = os.environ.get("ONE_AUTH") or str(Path.home() / ".one" / "one_auth")
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        raise CliError(
            f"no credentials: {path} does not exist (use --user/--password or set ONE_AUTH)"
        ) from None
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None
    line = text.splitlines()[0].strip() if text else ""
    name, sep, secret = line.partition(":")
    if not sep or not name or not secret:
        raise CliError(f"{path} must contain 'user:password'")
    return name, secret


class Session:
    """A logged-in connection to the zone that fails over between front-ends."""

    def __init__(
        self,
        endpoint_list: Sequence[str],
        user: str | None,
        password: str | None,
        timeout: float,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ):
        self.endpoints = list(endpoint_list)
        self.credentials = credentials
        self.user = user
        self.timeout = timeout
        self._password = password
        self._client: Client | None = None
        self._token: str | None = token or None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Session:
        """A session from the global options; a token (--token, $ONE_TOKEN) wins over
        user/password unless --user is given explicitly."""
        user_opt = getattr(args, "user", None)
        token = getattr(args, "token", None) or (
            None if user_opt else os.environ.get("ONE_TOKEN", "").strip() or None
        )
        tls = tls_credentials(args)
        if token:
            return cls(
                endpoints(args.endpoint), None, None, args.timeout, token=token, credentials=tls
            )
        user, password = credentials(user_opt, getattr(args, "password", None))
        return cls(endpoints(args.endpoint), user, password, args.timeout, credentials=tls)

    @property
    def token(self) -> str | None:
        """The login token in use (given, or obtained by the first call)."""
        return self._token

    @property
    def endpoint(self) -> str | None:
        return self._client.endpoint if self._client else None

    def call(self, fn: Callable[[Client], Any], login: bool = True) -> Any:
        """Run fn(client) on the first front-end that answers (logging in if needed;
        `login=False` for calls that need no token, such as Login itself)."""
        errors = []
        order = self.endpoints
        if self._client is not None:  # the one that worked last time first
            order = [self._client.endpoint] + [e for e in order if e != self._client.endpoint]
        for endpoint in order:
            client = self._connect(endpoint)
            try:
                if login and self._token is None:
                    if self.user is None or self._password is None:
                        raise CliError("no credentials: use --user/--password or --token")
                    client.login(self.user, self._password, timeout=self.timeout)
                    self._token = client.token
                return fn(client)
            except grpc.RpcError as e:
                if e.code() not in _RETRY_CODES:
                    raise
                errors.append(f"{endpoint}: {e.details() or e.code().name}")
                client.close()
                self._client = None
        raise CliError("no front-end answered:\n  " + "\n  ".join(errors))

    def _connect(self, endpoint: str) -> Client:
        if self._client is None or self._client.endpoint != endpoint:
            if self._client is not None:
                self._client.close()
            self._client = Client(endpoint, token=self._token, credentials=self.credentials)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# --- output ---------------------------------------------------------------------------


def message_to_dict(msg) -> dict:
    """A protobuf message as plain Python values (ints stay ints, unlike json_format)."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.message_type is not None:
            if _is_repeated(field):
                out[field.name] = [message_to_dict(v) for v in value]
            else:
                out[field.name] = message_to_dict(value)
        elif _is_repeated(field):
            out[field.name] = list(value)
        elif field.enum_type is not None:
            out[field.name] = field.enum_type.values_by_number[value].name
        elif isinstance(value, bytes):
            out[field.name] = value.decode("utf-8", errors="replace")
        else:
            out[field.name] = value
    return out


def _is_repeated(field) -> bool:
    rep = getattr(field, "is_repeated", None)
    if rep is not None:
        return bool(rep)
    return field.label == field.LABEL_REPEATED


def console(file=None, plain: bool | None = None) -> Console:
    """A rich console: no colours or styles unless writing to a terminal."""
    file = file or sys.stdout
    if plain is None:
        plain = not (hasattr(file, "isatty") and file.isatty())
    if plain:
        return Console(
            file=file, color_system=None, force_terminal=False, width=250, highlight=False
        )
    return Console(file=file, highlight=False)


def table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[str] = ()
) -> Table:
    t = Table(box=None, show_edge=False, pad_edge=False, header_style="bold", padding=(0, 1))
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left", no_wrap=True)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def render(renderables: Sequence[Any], plain: bool = True) -> str:
    """Render rich objects (or strings) to text; ANSI styles only when not `plain`."""
    buf = io.StringIO()
    if plain:
        c = console(buf, plain=True)
    else:
        c = Console(file=buf, force_terminal=True, highlight=False, width=console().width)
    for r in renderables:
        c.print(r)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


def emit(args: argparse.Namespace, data: Any, renderables: Callable[[], Sequence[Any]]) -> None:
    """Print `data` as JSON/YAML when asked, else the human-readable renderables."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=False))
    elif getattr(args, "yaml", False):
        import yaml

        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), end="")
    else:
        print(render(renderables(), plain=not sys.stdout.isatty()))


def run(prog: str, fn: Callable[[], int | None]) -> int:
    """Run a CLI body, turning errors into a message on stderr and an exit code."""
    try:
        return fn() or 0
    except CliError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print(f"{prog}: error: [{e.code().name}] {e.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
