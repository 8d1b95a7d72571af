"""Schemathesis hooks for tests/e2e/schemathesis_test.py: generated requests never carry a
`webhook`: a test gives Kiln no URL outside loopback, and webhooks connect directly."""
import schemathesis

# POST /v1/batches takes JSON Lines; schemathesis sends generated strings for it as plain text.
schemathesis.serializer.alias(
    ["application/jsonl", "application/x-ndjson", "application/x-jsonlines"], "text/plain")


def _drop_webhook(body):
    if isinstance(body, dict):
        body.pop("webhook", None)
    return body


@schemathesis.hook
def map_body(context, body):
    return _drop_webhook(body)


@schemathesis.hook
def map_case(context, case):
    case.body = _drop_webhook(case.body)
    return case
