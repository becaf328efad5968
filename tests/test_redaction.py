"""Tests of orb_learning.redaction (no database needed).

Secrets are assembled at run time from pieces (vendors' documented example keys where they
exist), so that this file does not trip secret scanners itself.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings, strategies as st

from orb_learning.models import ExecutionRecord, FeedbackRecord
from orb_learning.redaction import (
    PLACEHOLDER_PREFIX,
    count_placeholders,
    redact_feedback,
    redact_json,
    redact_record,
    redact_secrets,
    redaction_kinds,
)

ALNUM = "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xYz"


def chars(n: int, alphabet: str = ALNUM) -> str:
    return (alphabet * (n // len(alphabet) + 1))[:n]


HEX = chars(32, "0123456789abcdef")
AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
GITHUB = "ghp" + "_" + chars(36)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    + ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM_BODY = "MIIEpAIBAAKCAQEA" + chars(60) + "\n" + chars(64) + "\n" + chars(20) + "=="
PEM = f"-----BEGIN RSA PRIVATE{' '}KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE{' '}KEY-----"

# kind -> (text containing one secret, the secret itself: it must not survive)
SAMPLES: dict[str, tuple[str, str]] = {
    "aws_access_key": (f"boto3 failed for key {AWS_KEY_ID} in us-east-1", AWS_KEY_ID),
    "aws_secret_key": (f'aws_secret_access_key = "{AWS_SECRET}"', AWS_SECRET),
    "github_token": (f"git push https://github.com/acme/api?t={GITHUB} rejected", GITHUB),
    "gitlab_token": (f"CI_JOB_TOKEN glpat-{chars(20)} expired", f"glpat-{chars(20)}"),
    "slack_token": (f"SLACK_BOT=xoxb-{'1234567890'}-{'9876543210'}-{chars(24)}", chars(24)),
    "slack_webhook": (
        f"posting to https://hooks.slack.com/services/T{chars(8)}/B{chars(8)}/{chars(24)} failed",
        f"T{chars(8)}/B{chars(8)}",
    ),
    "jwt": (f"cookie session={JWT}; Path=/", JWT[40:]),
    "bearer_token": (f"curl -H 'Authorization: Bearer {chars(32)}' https://api", chars(32)),
    "basic_auth": ("Authorization: Basic " + "ZGVwbG95Omh1bnRlcjI=", "ZGVwbG95Omh1bnRlcjI="),
    "private_key": (f"key file:\n{PEM}\nloaded", PEM_BODY[:16]),
    "url_password": ("psycopg: postgresql://app:" + "s3cr3tPw@db.internal:5432/app", "s3cr3tPw"),
    "url_secret": (f"GET /v1/items?page=2&access_token={chars(30)} 401", chars(30)),
    "stripe_key": ("stripe.api_key = sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjW"),
    "openai_key": ("OPENAI_API_KEY=sk-" + chars(20) + "T3Blbk" + "FJ" + chars(20), "T3BlbkFJ"),
    "anthropic_key": ("x-api-key: sk-" + "ant-api03-" + chars(93) + "AA", chars(93)),
    "google_api_key": ("maps?key=AI" + "za" + "SyD" + chars(32) + "&q=x", "SyD" + chars(32)),
    "npm_token": ("//registry.npmjs.org/:_authToken=npm_" + chars(36), chars(36)),
    "pypi_token": ("password = pypi-AgEIcHlwaS5vcmc" + chars(80), chars(80)),
    "azure_storage_key": (
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=" + chars(86) + "==;x=y",
        chars(86),
    ),
    "sendgrid_key": ("SENDGRID=SG." + chars(22) + "." + chars(43), chars(43)),
    "square_oauth_secret": ("square: sq0csp-" + chars(43), chars(43)),
    "twilio_key": ("twilio sid AC" + HEX + " used", HEX),
    "mailchimp_key": ("mailchimp " + HEX + "-us12 bad", HEX),
    "telegram_token": ("bot 123456789:" + "AAH" + chars(32) + " down", chars(32)),
    "discord_token": ("discord M" + chars(23) + "." + chars(6) + "." + chars(27), chars(27)),
}

NEGATIVES = [
    "Refactor the auth token refresh in api/client.py",
    "the Bearer token is missing from the request",
    "Authorization header missing; use Basic auth or a Bearer token",
    "Authorization: Bearer <token>",
    "headers = {'Authorization': f'Bearer {token}'}",
    "curl -H 'Authorization: Bearer $GITHUB_TOKEN' https://api.github.com",
    "password= is required; the password field must not be empty",
    "set password=<your password> in the config",
    "?token= was empty",
    "run 7f3c2a9e-1b4d-4c8e-9f0a-2d6b5e8c1a7f failed at 3f786850e387550fdab836ed7e6dc881de23001b",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "image sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "md5 d41d8cd98f00b204e9800998ecf8427e for us-east-1",
    "payload SGVsbG8gd29ybGQsIHRoaXMgaXMgbm90IGEgc2VjcmV0IGF0IGFsbA==",
    "https://github.com/acme/api/pull/42?tab=files&diff=split",
    "postgresql://localhost:5432/orb and redis://cache:6379/0",
    "ssh://git@github.com:22/acme/api.git or git@github.com:acme/api.git",
    "mail dev@example.com, host 203.0.113.7:8080, at 2024-01-01T12:00:00Z",
    "the loader rejects files without a BEGIN PRIVATE KEY header",
    "AKIA alone, ghp_ alone, sk- alone, eyJ alone, xoxb- alone, AIza alone",
    "scikit-learn sk-learn task-runner npm_config_cache npm_lifecycle_event",
    "header only eyJhbGciOiJIUzI1NiJ9 and eyJfoo.eyJbar is not a JWT",
    "ACCESS_DENIED TASK_SUCCEEDED SKIPPED ACCOUNT_LOCKED",
    'File "/srv/app/api/client.py", line 142, in fetch\n    resp = self.session.get(url)',
    "at com.example.service.OrderService.process(OrderService.java:42)",
    "aws s3 cp failed: the secret key was wrong; rotate the aws access key",
    "AccountName=devstoreaccount1;EndpointSuffix=core.windows.net",
    "tokenizer.encode(text, max_length=512, truncation=True)",
    "",
    "   ",
    "ünïcödé テキスト 🚀 token",
]


def record(**overrides: Any) -> ExecutionRecord:
    fields: dict[str, Any] = {
        "task_type": "bugfix",
        "task_description": "Retry transient 503s in api/client.py with backoff",
        "repo": "acme/api",
        "model_tier": "sonnet",
        "pool_type": "cpu-small",
        "routing_confidence": 0.8,
        "success": False,
        "duration_seconds": 12.5,
        "cost_estimate": 0.1,
        "actual_cost": 0.12,
        "metadata": {"agent": "claude-code", "files": ["api/client.py"], "attempt": 2},
    }
    fields.update(overrides)
    return ExecutionRecord(**fields)


# --- redact_secrets ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_kind_is_redacted_with_its_placeholder(kind: str) -> None:
    text, secret = SAMPLES[kind]
    out = redact_secrets(text)
    assert f"[REDACTED:{kind}]" in out, out
    assert secret not in out
    assert count_placeholders(out) == 1
    assert redact_secrets(out) == out


def test_every_kind_has_a_sample() -> None:
    assert redaction_kinds() == set(SAMPLES)


@pytest.mark.parametrize("text", NEGATIVES)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert redact_secrets(text) is text  # the very object: callers can test `is`


def test_only_the_secret_part_is_replaced() -> None:
    cases = {
        "git clone https://deploy:" + "hunter2x@example.com/x": (
            "git clone https://deploy:[REDACTED:url_password]@example.com/x"
        ),
        "Authorization: Bearer " + chars(30): "Authorization: Bearer [REDACTED:bearer_token]",
        '{"Authorization": "Basic ' + chars(16) + '"}': (
            '{"Authorization": "Basic [REDACTED:basic_auth]"}'
        ),
        "AWS_SECRET_ACCESS_KEY=" + AWS_SECRET + " next": (
            "AWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_key] next"
        ),
        f"token {JWT}.": "token [REDACTED:jwt].",
        f"Authorization: Bearer {JWT}": "Authorization: Bearer [REDACTED:jwt]",
        "https://x-access-token:" + GITHUB + "@github.com/acme/api.git": (
            "https://x-access-token:[REDACTED:github_token]@github.com/acme/api.git"
        ),
        "AccountKey=" + chars(86) + "==;": "AccountKey=[REDACTED:azure_storage_key];",
        "https://hooks.slack.com/services/T0/B0/" + chars(24): (
            "https://hooks.slack.com/services/[REDACTED:slack_webhook]"
        ),
        f"sent Bearer {chars(24)} to api": "sent Bearer [REDACTED:bearer_token] to api",
    }
    for text, expected in cases.items():
        assert redact_secrets(text) == expected


def test_more_shapes() -> None:
    cases = {
        "github_pat_" + chars(22) + "_" + chars(59): "[REDACTED:github_token]",
        "sk-proj-" + chars(48): "[REDACTED:openai_key]",
        "NPM_TOKEN=npm_" + chars(36): "NPM_TOKEN=[REDACTED:npm_token]",
        "GR1348941" + chars(20): "[REDACTED:gitlab_token]",
        "ASIA" + chars(16, "ABCDEFGHIJ0123456789"): "[REDACTED:aws_access_key]",
        "XOXP-1111-2222-" + chars(10): "[REDACTED:slack_token]",
        "gldt-" + chars(24): "[REDACTED:gitlab_token]",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.": "[REDACTED:jwt].",
        "pypi-AgENdGVzdC5weXBpLm9yZw" + chars(70): "[REDACTED:pypi_token]",
        "SK" + HEX: "[REDACTED:twilio_key]",
        "Proxy-Authorization: basic "
        + chars(12): "Proxy-Authorization: basic [REDACTED:basic_auth]",
        "https://a.blob.core.windows.net/c?sv=2022&sig=" + chars(20) + "%3D&se=1": (
            "https://a.blob.core.windows.net/c?sv=2022&sig=[REDACTED:url_secret]&se=1"
        ),
    }
    for text, expected in cases.items():
        assert redact_secrets(text) == expected, text


def test_private_key_block_and_truncated_key() -> None:
    assert redact_secrets(f"a\n{PEM}\nb") == "a\n[REDACTED:private_key]\nb"
    json_escaped = PEM.replace("\n", "\\n")
    assert redact_secrets(f'{{"private_key": "{json_escaped}"}}') == (
        '{"private_key": "[REDACTED:private_key]"}'
    )
    truncated = PEM.split("-----END")[0]
    assert redact_secrets(f"log: {truncated}... (truncated)") == "log: [REDACTED:private_key]"
    putty = "PuTTY-User-Key-File-" + "2: ssh-rsa\nEncryption: none\nPrivate-Lines: 1\n"
    out = redact_secrets(f"{putty}{chars(40)}\nPrivate-MAC: {HEX}\nend")
    assert out == "[REDACTED:private_key]\nend"


def test_several_secrets_in_one_text() -> None:
    text = " | ".join(sample for sample, _ in SAMPLES.values())
    out = redact_secrets(text)
    assert count_placeholders(out) == len(SAMPLES)
    for _, secret in SAMPLES.values():
        assert secret not in out
    assert redact_secrets(out) == out


def test_long_text_and_pathological_inputs_stay_fast() -> None:
    filler = "Traceback: retrying request to https://api.example.com/v1 (attempt 3)\n" * 20_000
    text = filler + f"key {AWS_KEY_ID}\n" + filler
    started = time.perf_counter()
    out = redact_secrets(text)
    assert out == filler + "key [REDACTED:aws_access_key]\n" + filler
    for piece in ("sk-", "eyJ", "://a:", "//a/:_authToken=", "bearer ", "1234567890:", "?token="):
        redact_secrets(piece * (100_000 // len(piece)) + "T3BlbkFJ")
    assert time.perf_counter() - started < 10


def test_placeholders_are_counted() -> None:
    assert count_placeholders("no secret") == 0
    assert count_placeholders("[REDACTED:jwt] and [REDACTED:aws_access_key] [REDACTED:") == 2
    assert PLACEHOLDER_PREFIX == "[REDACTED:"


SECRETISH = [sample for sample, _ in SAMPLES.values()] + [
    "Authorization: ",
    "Bearer ",
    "://u:",
    "@",
    "?token=",
    "=",
    "-----BEGIN RSA PRIVATE KEY-----",
    "[REDACTED:",
    "]",
    "eyJ",
    ".",
    " ",
    "\n",
]


@settings(max_examples=300, deadline=None)
@given(st.text() | st.lists(st.sampled_from(SECRETISH) | st.text(max_size=5)).map("".join))
def test_redact_secrets_never_raises_and_is_idempotent(text: str) -> None:
    out = redact_secrets(text)
    assert redact_secrets(out) == out
    assert count_placeholders(out) >= count_placeholders(text)


# --- redact_json ---------------------------------------------------------------------------


def test_redact_json_nested_values_and_keys() -> None:
    url = "https://ci:" + "pw12345x@build.example.com"
    value = {
        "auth": {"headers": ["Accept: */*", "Authorization: Bearer " + chars(40)]},
        url: "status 200",
        "steps": [{"env": {"AWS": AWS_KEY_ID}}, 3, 2.5, None, True],
        "pair": ("ok", GITHUB),
    }
    before = copy.deepcopy(value)
    out, n = redact_json(value, redact_secrets)
    assert n == 4
    assert value == before  # not mutated
    assert out["auth"]["headers"] == [
        "Accept: */*",
        "Authorization: Bearer [REDACTED:bearer_token]",
    ]
    assert "https://ci:[REDACTED:url_password]@build.example.com" in out
    assert out["steps"] == [{"env": {"AWS": "[REDACTED:aws_access_key]"}}, 3, 2.5, None, True]
    assert out["pair"] == ("ok", "[REDACTED:github_token]")
    assert out["auth"] is not value["auth"]


def test_redact_json_clean_value_is_returned_itself() -> None:
    value = {"a": [1, "two", {"three": None}], "b": "api/client.py"}
    out, n = redact_json(value, redact_secrets)
    assert (out, n) == (value, 0)
    assert out is value
    assert redact_json("plain", redact_secrets) == ("plain", 0)
    assert redact_json(42, redact_secrets) == (42, 0)


def test_redact_json_keys_that_redact_alike_are_kept_apart() -> None:
    keys = ["AKIA" + chars(16, "ABCDEFGHIJ0123456789"), "ASIA" + chars(16, "KLMNOPQRST0123456789")]
    out, n = redact_json({keys[0]: 1, keys[1]: 2}, redact_secrets)
    assert n == 2
    assert out == {"[REDACTED:aws_access_key]": 1, "[REDACTED:aws_access_key]#2": 2}


def test_redact_json_deep_nesting() -> None:
    deep: Any = GITHUB
    for _ in range(5000):
        deep = [deep]
    out, n = redact_json(deep, redact_secrets)
    assert n == 1
    for _ in range(5000):
        out = out[0]
    assert out == "[REDACTED:github_token]"


# --- redact_record -------------------------------------------------------------------------


def test_clean_record_is_returned_itself() -> None:
    rec = record(swarm_topology="mesh", error_message="timeout after 30s", solution_summary="ok")
    assert redact_record(rec, redact_secrets) is rec
    assert redact_record(rec, lambda s: s) is rec


def test_secrets_in_every_text_field_and_in_metadata() -> None:
    kinds = list(SAMPLES)
    fields = ["task_type", "task_description", "repo", "model_tier", "pool_type"]
    fields += ["swarm_topology", "error_message", "solution_summary"]
    in_fields = dict(zip(fields, kinds, strict=False))
    rec = record(
        **{name: f"{name}: {SAMPLES[kind][0]}" for name, kind in in_fields.items()},
        metadata={
            "agent": "claude-code",
            "env": {"GITHUB_TOKEN": GITHUB, "list": ["x", SAMPLES[kinds[8]][0]]},
            "steps": [{"deep": SAMPLES[kinds[9]][0]}, 3, None],
            "attempt": 2,
        },
    )
    original = rec.model_dump()
    out = redact_record(rec, redact_secrets)
    assert rec.model_dump() == original  # the input is not mutated
    assert out.metadata["redactions"] == len(fields) + 3
    dumped = out.model_dump_json()
    assert GITHUB not in dumped
    for kind in kinds[:10]:
        assert SAMPLES[kind][1] not in dumped, kind
    for name, kind in in_fields.items():
        assert getattr(out, name).startswith(f"{name}: ")
        assert f"[REDACTED:{kind}]" in getattr(out, name)
    assert out.metadata["env"]["GITHUB_TOKEN"] == "[REDACTED:github_token]"
    assert f"[REDACTED:{kinds[9]}]" in out.metadata["steps"][0]["deep"]
    assert (out.metadata["agent"], out.metadata["attempt"]) == ("claude-code", 2)
    assert (out.task_id, out.timestamp, out.success) == (rec.task_id, rec.timestamp, rec.success)
    assert ExecutionRecord.model_validate(out.model_dump()) == out


def test_redaction_is_idempotent_and_adds_to_an_existing_count() -> None:
    rec = record(task_description=f"deploy with {AWS_KEY_ID}", error_message=f"bad {GITHUB}")
    once = redact_record(rec, redact_secrets)
    assert once.metadata["redactions"] == 2
    assert redact_record(once, redact_secrets) is once
    later = once.model_copy(update={"solution_summary": f"rotated {JWT}"})
    assert redact_record(later, redact_secrets).metadata["redactions"] == 3
    noted = record(task_description=GITHUB, metadata={"redactions": "n/a"})
    assert redact_record(noted, redact_secrets).metadata["redactions"] == 1
    flagged = record(task_description=GITHUB, metadata={"redactions": True})
    assert redact_record(flagged, redact_secrets).metadata["redactions"] == 1


def test_a_required_field_that_is_only_a_secret_still_validates() -> None:
    rec = record(task_description=GITHUB, repo=AWS_KEY_ID)
    out = redact_record(rec, redact_secrets)
    assert out.task_description == "[REDACTED:github_token]"
    assert out.repo == "[REDACTED:aws_access_key]"


def test_metadata_of_the_copy_is_not_shared() -> None:
    rec = record(task_description=GITHUB, metadata={"files": ["a.py"]})
    out = redact_record(rec, redact_secrets)
    out.metadata["files"].append("b.py")
    assert rec.metadata == {"files": ["a.py"]}


def test_custom_redactor_composed_with_the_default() -> None:
    def mine(text: str) -> str:
        return text.replace("acme", "[REDACTED:customer]")

    rec = record(task_description=f"fix acme login, key {AWS_KEY_ID}")
    out = redact_record(rec, lambda s: mine(redact_secrets(s)))
    assert out.task_description == "fix [REDACTED:customer] login, key [REDACTED:aws_access_key]"
    assert out.repo == "[REDACTED:customer]/api"
    assert out.metadata["redactions"] == 3


def test_custom_redactor_without_placeholders_and_one_that_blanks() -> None:
    masked = redact_record(record(), lambda s: s.replace("api", "***"))
    assert masked.repo == "acme/***"
    assert masked.metadata["redactions"] == 3  # description, repo, a metadata string
    blank = redact_record(record(error_message="boom"), lambda s: "")
    assert blank.task_type == blank.error_message == "[REDACTED:text]"
    assert blank.metadata["redactions"] == 11  # 6 fields, 3 keys, 2 values
    ExecutionRecord.model_validate(blank.model_dump())


def test_redact_feedback() -> None:
    task_id = uuid4()
    clean = FeedbackRecord(task_id=task_id, feedback_type="thumbs", rating=4, comment="nice")
    assert redact_feedback(clean, redact_secrets) is clean
    leaky = FeedbackRecord(
        task_id=task_id,
        feedback_type="bug",
        rating=2,
        comment=f"it printed aws_secret_access_key={AWS_SECRET} and "
        f"Authorization: Bearer {chars(20)}",
    )
    out = redact_feedback(leaky, redact_secrets)
    assert (
        out.comment is not None and "Authorization: Bearer [REDACTED:bearer_token]" in out.comment
    )
    assert out.feedback_id == leaky.feedback_id
    assert redact_feedback(out, redact_secrets) is out


def test_importing_the_module_does_not_load_detect_secrets() -> None:
    code = (
        "import sys, orb_learning.redaction as r; assert 'detect_secrets' not in sys.modules; "
        "r.redact_secrets('x'); assert 'detect_secrets' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
