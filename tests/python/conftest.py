"""Fixtures: a real `arca serve` on a free loopback port, and the official SDKs pointed at it.

Every test that takes `kms` runs three times: the current SDK (`alibabacloud-kms20160120`) with
its default V3 signature, the same SDK with `signature_algorithm='v2'` (V1 HMAC-SHA1), and the
legacy `aliyun-python-sdk-kms`. The `Sdk` adapter only maps names; requests and replies go
through each SDK's own generated request classes, signing and parsing, unchanged.
"""

import importlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def arca_bin():
    return os.environ.get("ARCA_BIN", str(ROOT / "target" / "debug" / "arca"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `arca serve`; `kill9()` and `start()` for crash tests."""

    def __init__(self, data_dir, args=(), env=None):
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.env = dict(env or {})
        self.endpoint = f"127.0.0.1:{free_port()}"
        self.proc = None
        self.log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")

    def start(self):
        self.proc = subprocess.Popen(
            [arca_bin(), "serve", "--data-dir", str(self.data_dir), "--listen", self.endpoint, *self.args],
            stdout=subprocess.DEVNULL, stderr=self.log,
            env={**os.environ, "RUST_LOG": "warn", **self.env},
        )
        host, port = self.endpoint.split(":")
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"arca exited with {self.proc.returncode}")
            try:
                socket.create_connection((host, int(port)), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("arca did not start listening")

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    @property
    def credentials(self):
        return json.loads((self.data_dir / "credentials.json").read_text())


@pytest.fixture(scope="session")
def server():
    with tempfile.TemporaryDirectory() as tmp:
        s = Server(Path(tmp) / "data").start()
        yield s
        s.kill9()


@pytest.fixture
def fresh_server():
    with tempfile.TemporaryDirectory() as tmp:
        s = Server(Path(tmp) / "data").start()
        yield s
        s.kill9()


class ApiError(Exception):
    def __init__(self, code, status, message, request_id):
        super().__init__(f"{code} ({status}): {message}")
        self.code, self.status, self.message, self.request_id = code, status, message, request_id


# Field names whose acronyms the SDK's generator did not split.
SNAKE_EXCEPTIONS = {"DKMSInstanceId": "dkmsinstance_id"}


def snake(name):
    if name in SNAKE_EXCEPTIONS:
        return SNAKE_EXCEPTIONS[name]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Sdk:
    """One official SDK in one signing mode, driven by action name and wire parameters."""

    def __init__(self, mode, endpoint, creds):
        self.mode = mode
        self.endpoint = endpoint
        ak, sk, region = creds["access_key_id"], creds["access_key_secret"], creds["region_id"]
        if mode == "legacy":
            from aliyunsdkcore.client import AcsClient
            self.client = AcsClient(ak, sk, region)
        else:
            from alibabacloud_tea_openapi.models import Config
            from alibabacloud_kms20160120.client import Client
            cfg = Config(access_key_id=ak, access_key_secret=sk, endpoint=endpoint,
                         protocol="HTTP", region_id=region)
            if mode == "v2":
                cfg.signature_algorithm = "v2"
            self.client = Client(cfg)

    def __call__(self, action, **params):
        if self.mode == "legacy":
            return self._legacy(action, params)
        return self._new(action, params)

    def _new(self, action, params):
        from alibabacloud_kms20160120 import models
        from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
        method = getattr(self.client, snake(action))
        try:
            request_class = getattr(models, f"{action}Request", None)
            if request_class is None:
                resp = method()
            else:
                resp = method(request_class(**{snake(k): v for k, v in params.items()}))
        except AlibabaCloudException as e:
            raise ApiError(e.code, e.status_code, e.message, e.request_id) from None
        return resp.body.to_map()

    def _legacy(self, action, params):
        from aliyunsdkcore.acs_exception.exceptions import ServerException
        module = importlib.import_module(f"aliyunsdkkms.request.v20160120.{action}Request")
        req = getattr(module, f"{action}Request")()
        req.set_endpoint(self.endpoint)
        req.set_protocol_type("http")
        for k, v in params.items():
            if isinstance(v, dict):
                v = json.dumps(v, separators=(",", ":"))
            getattr(req, f"set_{k}")(v)
        try:
            return json.loads(self.client.do_action_with_exception(req))
        except ServerException as e:
            raise ApiError(e.get_error_code(), e.get_http_status(), e.get_error_msg(), e.get_request_id()) from None


MODES = ["v3", "v2", "legacy"]


@pytest.fixture(params=MODES)
def kms(request, server):
    return Sdk(request.param, server.endpoint, server.credentials)


def sdk(mode, server, creds=None):
    return Sdk(mode, server.endpoint, creds or server.credentials)
