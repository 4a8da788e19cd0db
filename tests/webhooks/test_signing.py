"""Signatures are Standard Webhooks', checked against the specification's own test vector."""

from __future__ import annotations

import base64
import hmac
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from broker.webhooks import new_secret, secret_key, signature
from broker.webhooks.signing import Signer
from tests.conftest import need_binary
from tests.webhooks.support import doc_snippet, verify

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_reference_vector() -> None:
    got = signature(secret_key(VECTOR_SECRET), VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
    assert got == VECTOR_SIGNATURE


def signed_delivery(secret: str) -> tuple[dict[str, str], bytes]:
    stamp = int(time.time())
    body = b'{"event":{"eventId":"e1"},"eventStoreName":"orders","subscriptionId":"s"}'
    return {
        "webhook-id": "e1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature(secret_key(secret), "e1", stamp, body),
    }, body


def test_the_documented_python_check_accepts_ours_and_refuses_tampering() -> None:
    secret = new_secret()
    headers, body = signed_delivery(secret)
    stamp = int(headers["webhook-timestamp"])
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body.replace(b"orders", b"others"))
    assert not verify(new_secret(), headers, body)
    assert not verify(secret, {**headers, "webhook-timestamp": str(stamp - 3600)}, body)


def test_new_secrets() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)
        assert len(secret_key(secret)) == 32


@pytest.mark.parametrize("bad", ["", "whsec_", "sk_abc", "whsec_!!!", "whsec_c2hvcnQ="])
def test_bad_secrets(bad: str) -> None:
    with pytest.raises(ValueError):
        secret_key(bad)


def test_the_documented_javascript_check(tmp_path: Path) -> None:
    node = need_binary("node")
    script = tmp_path / "verify.cjs"
    script.write_text(
        doc_snippet("js")
        + "\nconst [secret, headers, body] = process.argv.slice(2);\n"
        + "console.log(JSON.stringify(verify(secret, JSON.parse(headers), Buffer.from(body))));\n"
    )
    secret = new_secret()
    headers, body = signed_delivery(secret)
    stale = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 3600)}
    rotated = {**headers, "webhook-signature": "v1,bm9wZQ== " + headers["webhook-signature"]}
    cases = [
        (secret, headers, body, True),
        (secret, rotated, body, True),
        (secret, headers, body + b" ", False),
        (new_secret(), headers, body, False),
        (secret, stale, body, False),
        (secret, {**headers, "webhook-signature": "v2,abc"}, body, False),
    ]
    for key, given, payload, expected in cases:
        done = subprocess.run(
            [node, str(script), key, json.dumps(given), payload.decode()],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) is expected, (given, done.stdout)


def test_a_signer_is_hmac_sha256_for_every_key_length() -> None:
    # Signer hashes the key's padded blocks once; hmac.digest is the reference.
    for length in (1, 24, 32, 63, 64, 65, 200):
        key = bytes(range(length % 256)) * (length // 256) + bytes(range(length % 256))
        for body in (b"", b"{}", b"x" * 1000):
            expected = hmac.digest(key, f"e-{length}.1614265330.".encode() + body, "sha256")
            got = Signer(key)(f"e-{length}", 1614265330, body)
            assert got == "v1," + base64.b64encode(expected).decode(), (length, len(body))
