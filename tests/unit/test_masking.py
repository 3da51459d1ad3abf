"""Secrets stay secret in their common transformations too (issue 11), and values a step
reads from the target can be marked secret (``secret:`` on a step)."""

from __future__ import annotations

import base64
import html
import json
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from kdiag.engine.masking import MASK, MIN_LENGTH, Masker, forms
from tests.unit.capped import ROOT

SECRET = "s3cr3t-T0ken/+=?&\u00e9x"


def _derived(secret: str) -> dict[str, str]:
    data = secret.encode()
    return {
        "as is": secret, "upper": secret.upper(), "lower": secret.lower(),
        "title": secret.title(), "reversed": secret[::-1],
        "base64": base64.b64encode(data).decode(),
        "base64 unpadded": base64.b64encode(data).decode().rstrip("="),
        "base64 url-safe": base64.urlsafe_b64encode(data).decode(),
        "base64 inside basic auth": base64.b64encode(b"user:" + data).decode(),
        "base64 at offset 1": base64.b64encode(b"u" + data + b"!").decode(),
        "url quoted": quote(secret, safe=""), "url quoted, / kept": quote(secret),
        "url quote_plus": quote_plus(secret), "json": json.dumps({"t": secret}),
        "json, unicode kept": json.dumps(secret, ensure_ascii=False),
        "html": html.escape(secret), "shell": shlex.quote(secret + "'"),
        "hex": data.hex(), "repr": repr(secret),
    }


@pytest.mark.parametrize("name", list(_derived(SECRET)))
def test_a_derived_form_is_masked(name: str) -> None:
    text = f"before {_derived(SECRET)[name]} after"
    masked = Masker([SECRET]).text(text)
    assert MASK in masked, masked
    # What is left of the secret's bytes is at most a few base64 characters at the edges.
    assert SECRET[:6] not in masked and SECRET.upper()[:6] not in masked


def test_a_multi_line_secret_is_masked_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END KEY-----"
    masked = Masker([key]).text("cert:\r\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\r\nBKcwggSjAgEAAoIBAQC7\r\n")
    assert "MIIEvQ" not in masked and "BKcwgg" not in masked


def test_short_secrets_are_masked_only_as_whole_values() -> None:
    masker = Masker(["ab", "42", "  "])
    assert masker.text("a cab and 42 apples") == "a cab and 42 apples"
    assert masker.value({"param": "ab", "n": 42, "other": "abc", "blank": ""}) == {
        "param": MASK, "n": MASK, "other": "abc", "blank": ""}
    assert Masker.too_short("abc") and not Masker.too_short("abcd")
    assert all(len(form) >= MIN_LENGTH for form in forms("abcd"))


def test_a_form_cut_between_output_chunks_is_held_back() -> None:
    masker = Masker([SECRET])
    upper = SECRET.upper()
    emitted, held = masker.split("value: " + upper[:7])
    assert emitted == "value: " and held == upper[:7]
    emitted, held = masker.split(held + upper[7:] + " done")
    assert (emitted, held) == (f"{MASK} done", "")


@pytest.mark.parametrize("count", [1, 400])  # form by form, and by the forms' heads
def test_a_file_read_as_a_secret_does_not_hold_back_the_end_of_lines(count: int) -> None:
    """A file's contents end with a newline, so reversed they start with one: the end of
    every output line was held back as a possible secret's start, and a line showed only
    when the step ended (a background redirect's connection lines)."""
    files = [f"key = value-{n}\nother = thing-{n}\n" for n in range(count)]
    masker = Masker(files)
    assert masker.split("connection 1: 10.0.0.1:4242 -> 10.0.0.2:8080\n") == \
        ("connection 1: 10.0.0.1:4242 -> 10.0.0.2:8080\n", "")
    emitted, held = masker.split("seen: key = value-0\nother = thing-0\nend\n")
    assert (emitted, held) == (f"seen: {MASK}\nend\n", ""), emitted


def test_derived_secrets_never_reach_the_reports(tmp_path: Path) -> None:
    secret = "hunter2-Sesame"
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(r"""
params:
  token: {type: string, secret: true}
steps:
  - note: "{{ params.token | upper }} {{ params.token | lower }} {{ params.token | reverse }}"
  - note: "{{ params.token | urlencode }} {{ params.token | to_json }} {{ params.token | e }}"
  - name: encode
    run:
      script: |
        printf %s {{ params.token | quote }} | base64
        printf %s {{ params.token | quote }} | base64 | tr -d =
        printf 'user:%s' {{ params.token | quote }} | base64
        printf %s {{ params.token | quote }} | od -An -tx1 | tr -d ' \n'; echo
  - assert: ["params.token | upper == 'nope'"]
""")
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "kdiag", "run", str(runbook), "--set",
                           f"token={secret}", "--report", f"json={report}", "--artifacts",
                           str(tmp_path / "art")], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    everything = done.stdout + done.stderr + report.read_text() + "".join(
        p.read_text(errors="replace") for p in (tmp_path / "art").rglob("*") if p.is_file())
    for name, form in _derived(secret).items():
        if name not in ("title", "shell", "repr", "json, unicode kept"):
            core = form[3:-3] if name.startswith("base64") else form
            assert core not in everything, name
    assert everything.count(MASK) >= 8


def test_a_step_marked_secret_withholds_its_output_and_masks_what_it_read(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: read token
            run: {script: "echo token-from-the-target-42"}
            register: tok
            secret: true
          - name: read json
            run: {script: "echo '{\\"key\\": \\"api-key-99887766\\", \\"user\\": \\"bob\\"}'"}
            register: creds
            secret: ["(creds.stdout | from_json).key"]
          - name: use them
            run: {script: "echo {{ tok.stdout | trim | upper }} {{ creds.stdout }}"}
            register: used
            assert: ["'bob' in used.stdout", "tok.stdout | trim == 'nope'"]
    """)
    events = repr(outcome.recorder.events)
    assert "token-from-the-target-42" not in events and "TOKEN-FROM-THE-TARGET-42" not in events
    assert "api-key-99887766" not in events
    assert outcome.recorder.output("read token") == outcome.recorder.output("read json") == ""
    used = outcome.recorder.output("use them")
    assert used.startswith(f"{MASK} ") and "bob" in used  # the list form masks only its values
    notes = [e.message for e in outcome.recorder.events if type(e).__name__ == "StepNote"]
    assert "25 characters of output withheld: the step is marked secret" in notes


def test_a_secret_expression_that_fails_fails_the_step(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: read, run: {script: "echo x"}, register: r, secret: ["r.nope.deeper"]}
    """)
    assert outcome.exit_code == 1
    assert outcome.recorder.finished()["read"].message.startswith("secret: ")


def test_a_short_secret_param_is_warned_about(tmp_path: Path) -> None:
    runbook = tmp_path / "rb.yaml"
    runbook.write_text("params:\n  pin: {type: string, secret: true}\nsteps:\n  - note: x\n")
    done = subprocess.run([sys.executable, "-m", "kdiag", "run", str(runbook), "--set", "pin=12",
                           "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "secret param 'pin' is shorter than 4 characters" in done.stderr
