"""Schemathesis hooks for gateway/tests/schemathesis.rs (loaded with SCHEMATHESIS_HOOKS).

- `read_your_writes_timeout`: the only 5xx the configuration allows (504 on the read
  routes) must be a `min_seq` that was not applied in time, with the seq reached in
  the body and in `X-Applied-Seq`.
- `short_min_seq_waits`: a read with `min_seq` beyond the applied seq waits up to
  `timeout_ms` (0..=10000, default 1000) before its 504. Capping a valid wait at
  WAIT_MS_MAX keeps the run's time bounded; it keeps valid input valid and leaves
  invalid input alone, so nothing about what is checked changes.
- `fund_traders` (only with `FOLDBOOK_FUND_URL` set, the run with accounts on):
  before an order of a user not seen yet, deposits `FUND_AMOUNT` of each asset in
  `FOLDBOOK_FUND_ASSETS` for them, so that orders are placed, filled and cancelled
  with money rather than all refused for want of it. Those deposits are requests of
  their own (through the same API); the case itself is left as generated.
"""

import os
import re
import urllib.parse
import urllib.request

import schemathesis

WAIT_MS_MAX = 50


def _is_valid_wait(value):
    text = str(value)
    return text.isascii() and text.isdigit() and int(text) <= 10_000


FUND_URL = os.environ.get("FOLDBOOK_FUND_URL")
FUND_ASSETS = [a for a in os.environ.get("FOLDBOOK_FUND_ASSETS", "").split(",") if a]
FUND_AMOUNT = 10**13
USER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_funded = set()


def _fund(user):
    if user in _funded or len(_funded) >= 5000:
        return
    _funded.add(user)
    for asset in FUND_ASSETS:
        url = f"{FUND_URL}/deposit/{urllib.parse.quote(user, safe='')}/{asset}/{FUND_AMOUNT}"
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10).read()
        except Exception:  # a refused deposit (a total past 10^18) leaves the user as is
            pass


@schemathesis.hook
def before_call(context, case, kwargs):
    params = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    user = params.get("user")
    if FUND_URL and isinstance(user, str) and USER.match(user) and case.method.upper() == "POST":
        _fund(user)
    query = case.query
    if not isinstance(query, dict) or "min_seq" not in query:
        return
    wait = query.get("timeout_ms")
    if wait is None:
        query["timeout_ms"] = WAIT_MS_MAX
    elif _is_valid_wait(wait) and int(str(wait)) > WAIT_MS_MAX:
        query["timeout_ms"] = WAIT_MS_MAX


@schemathesis.check
def read_your_writes_timeout(ctx, response, case):
    if response.status_code != 504:
        return None
    query = case.query if isinstance(case.query, dict) else {}
    body = response.json()
    applied = response.headers.get("x-applied-seq", [None])[0]
    wanted = str(query.get("min_seq", ""))
    assert wanted.isdigit(), f"504 without a valid min_seq: {body}"
    assert set(body) == {"error", "seq"}, f"504 body is not the min_seq timeout: {body}"
    assert str(body["seq"]) == applied, f"504 seq {body['seq']} != X-Applied-Seq {applied}"
    assert body["seq"] < int(wanted), f"504 although seq {body['seq']} >= min_seq {wanted}"
    return None
