"""bench/chaos.py's `limits` run: the API rate limit and an account's DM cap, held across processes.

It runs on a deployment of its own, started with MKTX_API_RATE_LIMIT=100/minute and MKTX_X_DM_DAILY_LIMIT=300.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.chaos_checks import Api, Verdict, campaign_made, fetch_one, flow_enroll, flow_made
from bench.cluster import Deployment

REQUESTS, LIMIT = 150, 100
DM_CAP, RESERVE = 300, 30  # MKTX_X_DM_DAILY_LIMIT, and the 10% of it left to replies
AUDIENCE, REPLIES = 200, 60  # the merchant's own calls stay under its 100 a minute
SECOND_WAVE = 40  # in the next minute: 30 fill the reserve, 10 are refused
DAILY_CAP_REFUSED = "429 RATE_LIMIT_EXCEEDED daily_quota"  # the account's DM cap, not the API's rate limit


def _rate_limit(d: Deployment, v: Verdict) -> None:
    owner = d.django("chaos_django", "owner", {"name": "Chaos rate limit"})
    api = Api(d.web_urls, owner["token"], owner["merchant"])
    left = 60 - time.time() % 60  # the limit's windows are whole minutes: all 150 go inside one
    if left < 40:
        time.sleep(left + 0.5)

    def one(i: int) -> tuple[str, int, str]:
        url = d.web_urls[i % len(d.web_urls)]
        response = api.call("GET", "/contacts?take=1", url=url)
        code = response.json().get("code", "") if response.status_code != 200 else ""
        return url, response.status_code, str(code)

    started = time.time()
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(one, range(REQUESTS)))
    elapsed = time.time() - started
    by_status = Counter((status, code) for _, status, code in answers)
    by_instance = {url: Counter(status for u, status, _ in answers if u == url) for url in d.web_urls}
    ok, limited = by_status[(200, "")], by_status[(429, "RATE_LIMIT_EXCEEDED")]
    v.figure(
        f"{REQUESTS} requests of one merchant in {elapsed:.1f} s over {len(d.web_urls)} gunicorn instances: "
        f"{ok} answered 200, {limited} 429 RATE_LIMIT_EXCEEDED; by instance "
        f"{[dict(c) for c in by_instance.values()]}"
    )
    v.check(
        ok == LIMIT and limited == REQUESTS - LIMIT and sum(by_status.values()) == REQUESTS,
        f"the rate limit let {ok} through and refused {limited}: {dict(by_status)}",
    )


QUOTA_FLOW = [
    {"id": "s", "type": "send_message", "config": {"content": "Quota flow {{firstName}}"}},
    {"id": "e", "type": "end", "config": {}},
]


def _steady(d: Deployment, shop: dict[str, Any]) -> None:
    """Until the sandbox has seen no new DM of the shop for 15 s."""
    assert d.sandbox is not None
    last, steady_since = -1, time.time()
    while time.time() - steady_since < 15:
        now = len(d.sandbox.dms(shop["id"]))
        if now != last:
            last, steady_since = now, time.time()
        time.sleep(1)


def _replies(
    d: Deployment, api: Api, conversations: list[str], statuses: Counter[str], *, first: int = 0, count: int = REPLIES
) -> None:
    def reply(i: int) -> None:
        body = {"content": f"Staff reply {i}", "type": "text"}
        response = api.call("POST", f"/conversations/{conversations[i]}/messages", body, timeout=60)
        if response.status_code == 200:
            statuses["200"] += 1
            return
        error = response.json()
        statuses[
            f"{response.status_code} {error.get('code', '')} {(error.get('details') or {}).get('reason', '')}"
        ] += 1

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(reply, range(first, min(first + count, len(conversations)))))


def _dm_quota(d: Deployment, v: Verdict) -> None:
    assert d.sandbox is not None
    made, campaign, api = campaign_made(d, "quota", 1, AUDIENCE)
    shop = made[0]
    flow = flow_made(api, "Quota flow", QUOTA_FLOW)
    contact_ids = d.django("chaos_django", "contacts", {"merchant": api.merchant})["contacts"]
    with d.database() as conn:
        conversations = [
            str(r[0])
            for r in conn.execute(
                "SELECT id FROM contacts_conversation WHERE merchant_id = %s ORDER BY id", [api.merchant]
            ).fetchall()
        ]
    statuses: Counter[str] = Counter()
    work = [
        threading.Thread(target=api.ok, args=("POST", f"/campaigns/{campaign}/start")),
        threading.Thread(target=flow_enroll, args=(api, flow, contact_ids)),
        threading.Thread(target=_replies, args=(d, api, conversations, statuses)),
    ]
    for thread in work:
        thread.start()
    for thread in work:
        thread.join()
    _steady(d, shop)
    bulk_stopped_at = len(d.sandbox.dms(shop["id"]))
    # the reserve is the replies' alone: a second wave of replies, in the next rate-limit window, fills the cap
    time.sleep(60 - time.time() % 60 + 0.5)
    late: Counter[str] = Counter()
    _replies(d, api, conversations, late, first=REPLIES, count=SECOND_WAVE)
    _steady(d, shop)
    dms = d.sandbox.dms(shop["id"])
    kinds = Counter(_kind(dm["text"]) for dm in dms)
    with d.database() as conn:
        sent = fetch_one(
            conn,
            "SELECT count(*) FROM contacts_message m JOIN accounts_account a ON a.id = m.account_id "
            "WHERE a.twitter_user_id = %s AND m.direction = 'outbound' AND m.status IN "
            "('sent', 'delivered', 'read')",
            [shop["id"]],
        )[0]
    bulk = kinds["campaign"] + kinds["flow"]
    v.figure(
        f"one account, DM cap {DM_CAP} a day: a campaign to {AUDIENCE}, a flow enrolling the same {AUDIENCE} and "
        f"{REPLIES} staff "
        f"replies at once, from the qcluster processes and both gunicorn instances: the sandbox got "
        f"{bulk_stopped_at} DMs, where campaign and flow stopped (the replies answered {dict(statuses)}); then "
        f"{SECOND_WAVE} more replies answered {dict(late)}; in all {len(dms)} DMs ({dict(kinds)}), and the "
        f"service counts {sent} sent"
    )
    v.check(bulk_stopped_at == DM_CAP - RESERVE, f"campaign and flow stopped at {bulk_stopped_at}")
    v.check(len(dms) == DM_CAP, f"the account sent {len(dms)} DMs against a cap of {DM_CAP}")
    wanted = {"200": DM_CAP - bulk_stopped_at, DAILY_CAP_REFUSED: SECOND_WAVE - (DM_CAP - bulk_stopped_at)}
    v.check(dict(late) == wanted, f"the second wave answered {dict(late)}, not {wanted}")
    v.check(bulk <= DM_CAP - RESERVE, f"campaigns and flows sent {bulk}, above {DM_CAP - RESERVE}")
    v.check(sent == len(dms), f"the service counts {sent} sent, the sandbox {len(dms)}")
    v.check(dict(statuses) == {"200": REPLIES}, f"the first replies answered {dict(statuses)}")


def _kind(text: str) -> str:
    if text.startswith("Staff reply"):
        return "reply"
    if text.startswith("Quota flow"):
        return "flow"
    return "campaign" if "our sale" in text else "other"


def limits(d: Deployment, rng: random.Random, args: argparse.Namespace) -> Verdict:
    v = Verdict("limits")
    _rate_limit(d, v)
    _dm_quota(d, v)
    return v
