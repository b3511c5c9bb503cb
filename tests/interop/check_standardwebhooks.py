#!/usr/bin/env python3
"""Verifies trainerd's webhook requests with the `standardwebhooks` package
from PyPI, the specification's own library (run by tests/chain.rs).

    check_standardwebhooks.py REQUESTS_JSON

REQUESTS_JSON: {"secrets": [S, ...], "requests": [{"headers": {...},
"body_b64": "..."}, ...]}, where each S is {"whsec": "whsec_..."} or
{"raw_b64": "<base64 of a raw key>"}. Checks, failing with one line each:

- every request verifies under every secret (Webhook.verify), and the
  payload it returns is the body's JSON;
- a tampered body is rejected;
- the same message signed by the library itself with a timestamp an hour
  old is rejected for its timestamp.

Prints one JSON line of what it checked.
"""
import base64
import json
import sys
from datetime import datetime, timedelta, timezone

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def fail(what):
    print(f"check_standardwebhooks: {what}", file=sys.stderr)
    sys.exit(1)


def webhook(secret):
    if "whsec" in secret:
        return Webhook(secret["whsec"])
    return Webhook(base64.b64decode(secret["raw_b64"]))


def main():
    spec = json.load(open(sys.argv[1]))
    hooks = [webhook(s) for s in spec["secrets"]]
    checked = 0
    for n, req in enumerate(spec["requests"]):
        headers = req["headers"]
        body = base64.b64decode(req["body_b64"])
        for k, hook in enumerate(hooks):
            try:
                payload = hook.verify(body, headers)
            except WebhookVerificationError as e:
                fail(f"request {n} does not verify under secret {k}: {e}")
            if payload != json.loads(body):
                fail(f"request {n}: verify returned {payload!r}, not the body")
            try:
                hook.verify(body + b" ", headers)
                fail(f"request {n}: a tampered body verified under secret {k}")
            except WebhookVerificationError:
                pass
            old = datetime.now(tz=timezone.utc) - timedelta(hours=1)
            stale = dict(headers)
            stale["webhook-timestamp"] = str(int(old.timestamp()))
            stale["webhook-signature"] = hook.sign(headers["webhook-id"], old, body.decode())
            try:
                hook.verify(body, stale)
                fail(f"request {n}: an hour-old timestamp verified")
            except WebhookVerificationError as e:
                if "old" not in str(e).lower():
                    fail(f"request {n}: the stale message failed for another reason: {e}")
            checked += 1
    if checked == 0:
        fail("no request to check")
    print(json.dumps({"verified": checked, "secrets": len(hooks)}))


main()
